"""SDK mode's request handler: the front door's checks, then the call to LiteLLM's Router with the
body and headers binary mode's LiteLLM proxy would build."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import anyio
import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from memory_proxy.sdk import otel
from memory_proxy.sdk.backend import SdkBackend
from memory_proxy.sdk.sse import SseAnswer, SseResponse, close_result
from memory_proxy.server import headers as h
from memory_proxy.server import ingress
from memory_proxy.server.errors import error_response
from memory_proxy.server.relay import BodyTooLarge, cancelled_by_stop, read_body, upstream_failure
from memory_proxy.server.runtime import Runtime
from memory_proxy.server.tracing import TRACE_HEADER

log = logging.getLogger("memory_proxy")



ROUTES = {  # path (after any /scope/<id> prefix) -> LiteLLM route type
    "/v1/chat/completions": "acompletion",
    "/chat/completions": "acompletion",
    "/v1/messages": "anthropic_messages",
    "/v1/embeddings": "aembedding",
    "/embeddings": "aembedding",
}
MODELS_PATHS = ("/v1/models", "/models")
# The LiteLLM proxy hands anthropic-version/-beta to these providers (litellm_pre_call_utils).
ANTHROPIC_FAMILY = "anthropic,bedrock,bedrock_mantle,vertex_ai"
ANTHROPIC_API_HEADERS = ("anthropic-version", "anthropic-beta")
# Call controls a client body must never set in-process (Python objects, our own headers,
# LiteLLM's bookkeeping); the rest of the body is passed on as the LiteLLM proxy does.
INTERNAL_KWARGS = frozenset({
    "headers", "extra_headers", "provider_specific_header", "client", "litellm_logging_obj", "logger_fn",
    "litellm_call_id", "proxy_server_request", "secret_fields", "specific_deployment", "model_list",
    "litellm_metadata", "callbacks", "success_callback", "failure_callback", "shared_session",
    "_litellm_strip_stream_usage",
})


# --- requests ------------------------------------------------------------------------------


def forwarded_headers(request: Request, runtime: Runtime, admitted: ingress.Admission,
                      trace: str | None = None) -> dict[str, str]:
    """The headers binary mode's LiteLLM forwards to a Supermemory-backed group: the ingress's
    relayed headers (memory id, conversation id, request id, the client's own ``x-*``), filtered
    by the LiteLLM proxy's rule (``x-*`` but ``x-stainless-*``, plus ``anthropic-beta``)."""
    relayed = h.ingress_request_headers(
        request.headers.items(), custom_header=runtime.config.user_id_mappings.custom_header,
        user_id=admitted.resolution.user_id, master_key=runtime.master_key, request_id=admitted.request_id)
    if trace is not None:  # the egress's parent span, as the ingress hands it in binary mode
        relayed.append((TRACE_HEADER, trace))
    return {n: v for n, v in relayed
            if (n.startswith("x-") and not n.startswith("x-stainless")) or n.startswith("anthropic-beta")}


def provider_specific_header(request: Request) -> dict | None:
    """``anthropic-version``/``anthropic-beta`` for Anthropic-family providers, as the proxy sends them."""
    found = {n: request.headers[n] for n in ANTHROPIC_API_HEADERS if n in request.headers}
    return {"custom_llm_provider": ANTHROPIC_FAMILY, "extra_headers": found} if found else None


def _untrusted_fields() -> frozenset[str]:
    """Body fields the LiteLLM proxy strips before calling the Router (``mock_response``,
    routing state, callbacks, ...); private in LiteLLM, so fall back to the known core."""
    try:
        from litellm.proxy.litellm_pre_call_utils import _UNTRUSTED_ROOT_CONTROL_FIELDS
        return frozenset(_UNTRUSTED_ROOT_CONTROL_FIELDS)
    except ImportError:
        return frozenset({"mock_response", "mock_tool_calls", "callbacks", "service_callback", "logger_fn",
                          "litellm_disabled_callbacks", "proxy_server_request", "secret_fields"})


def _reject_url_destinations(data: dict) -> None:
    """URL-valued ``model``/``file_id`` are refused as by the LiteLLM proxy (SSRF)."""
    try:
        from litellm.proxy.litellm_pre_call_utils import _reject_url_valued_destinations
    except ImportError:
        return
    _reject_url_valued_destinations(data)


def _auth_error(exc: Exception):
    """A request body LiteLLM's proxy refuses at authentication (``is_request_body_safe``)."""
    from litellm.proxy._types import ProxyException

    return ProxyException(message=f"Authentication Error, {exc}", type="auth_error",
                          param=getattr(exc, "param", "None"), code=401)


def _attribute_error_in_chain(exc: Exception) -> bool:
    """A body of the wrong shape LiteLLM tripped over (``'str' object has no attribute 'get'``)
    anywhere in the exception chain (LiteLLM's private check; without it, no such 400)."""
    try:
        from litellm.proxy.common_request_processing import _has_attribute_error_in_chain
    except ImportError:
        return False
    return _has_attribute_error_in_chain(exc)


def _route_error(exc: Exception):
    """A LiteLLM exception as the LiteLLM proxy's model routes turn it into a ``ProxyException``
    (``handle_llm_api_exception``): a request of the wrong shape is a 400, not a 500."""
    from litellm.proxy._types import ProxyException
    from litellm.proxy.common_request_processing import proxy_exception_from_route_error

    if isinstance(exc, ProxyException):
        return exc
    if _attribute_error_in_chain(exc):
        return ProxyException(message=f"Invalid request format: {exc}", type="invalid_request_error", param=None,
                              code=400)
    return proxy_exception_from_route_error(exc)


def _error_answer(route_type: str, exc: Exception, admitted: ingress.Admission) -> Response:
    """A LiteLLM exception as the LiteLLM proxy answers it: OpenAI's shape, Anthropic's on /v1/messages."""
    proxy_exc = _route_error(exc)
    status = int(proxy_exc.code) if str(proxy_exc.code).isdigit() else 500
    if route_type == "anthropic_messages":
        from litellm.anthropic_interface.exceptions import AnthropicExceptionMapping

        body = dict(AnthropicExceptionMapping.transform_to_anthropic_error(
            status_code=status, raw_message=proxy_exc.message, request_id=admitted.request_id))
        if proxy_exc.provider_specific_fields:
            body["error"] = {**body["error"], "provider_specific_fields": proxy_exc.provider_specific_fields}
    else:
        body = {"error": proxy_exc.to_dict()}
    headers = dict(admitted.extra)
    if status == 503:
        headers.setdefault("retry-after", "2")
    return JSONResponse(body, status, headers=headers)


def _jsonable(result: Any, route_type: str, requested_model: str | None) -> Any:
    """The answer body as the LiteLLM proxy serializes it (chat: unset and None fields left out)."""
    if route_type == "acompletion" and hasattr(result, "model_dump"):
        from litellm.proxy.utils import model_dump_with_preserved_fields

        data = json.loads(json.dumps(model_dump_with_preserved_fields(result, exclude_unset=True), default=str))
    elif hasattr(result, "model_dump"):
        data = result.model_dump(mode="json")
    else:
        data = {k: v for k, v in dict(result).items() if not k.startswith("_")}
    if requested_model and isinstance(data, dict) and "model" in data:
        data["model"] = requested_model  # the public name, as the LiteLLM proxy restamps it
    return data


async def handle(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    sdk: SdkBackend = request.state.sdk
    started = time.perf_counter()
    admitted_at = time.monotonic()
    admitted = ingress.admit(runtime, request)
    if isinstance(admitted, Response):  # as binary mode: refusals are recorded and counted, own answers are not
        return ingress.answered(runtime, request, None, started, admitted, backend="sdk", refusal=True) \
            if admitted.status_code >= 400 else admitted
    if admitted.refused is not None:
        return ingress.answered(runtime, request, admitted, started, admitted.refused, backend="sdk", refusal=True)
    resolution, extra = admitted.resolution, dict(admitted.extra)
    path = resolution.path

    def answer(response: Response, **known) -> Response:
        """(``refusal=True``: only where binary mode's ingress refuses the same request; the
        answers that are LiteLLM's in binary mode, 404/405 on routes, are not refusals.)"""
        return ingress.answered(runtime, request, admitted, started, response, backend="sdk", **known)

    if path in MODELS_PATHS:
        if request.method != "GET":
            return answer(error_response(405, "Method Not Allowed", headers=extra))
        listing = sdk.model_listing()
        if ingress.wants_anthropic_models(request, resolution):
            listing = ingress.anthropic_model_listing(listing)
        return answer(JSONResponse(listing, headers=extra))
    route_type = ROUTES.get(path)
    if route_type is None:
        return answer(error_response(404, f"{path[:200]} is not served in SDK mode (chat/completions, messages, "
                                          "embeddings and models are); binary mode's LiteLLM serves it",
                                     code="route_not_served", headers=extra))
    if request.method != "POST":
        return answer(error_response(405, "Method Not Allowed", headers=extra))
    try:
        body, data = ingress.clean_json_body(await read_body(request, runtime.config.proxy.max_body_bytes),
                                             runtime.backed)
        ingress.require_object(body, data)
    except BodyTooLarge:
        return answer(error_response(413, "request body is larger than memory_proxy.max_body_bytes", headers=extra),
                      refusal=True)
    except ValueError as exc:
        return answer(error_response(400, str(exc), code="invalid_json", headers=extra), refusal=True)
    except ClientDisconnect:
        return answer(ingress.client_gone(resolution, request), completed=False)
    if data is None:  # an empty body: LiteLLM's checks answer it
        data = {}

    requested = data.get("model") if isinstance(data.get("model"), str) else None
    stream = data.get("stream") is True and route_type != "aembedding"
    first_event_s = None
    span = trace = None
    if runtime.tracing is not None:
        span = runtime.tracing.start_request(request.method, path, request.headers, requested)
        trace = runtime.tracing.traceparent(span)
    runtime.expect_report(admitted.request_id, resolution.user_id)

    def done(status: int, completed: bool = True, error: str | None = None) -> None:
        streamed = stream and status < 400
        runtime.finish(ingress.outcome(request, admitted, started, status, model=requested, backend="sdk",
                                       completed=completed, error=error, span=span, streamed=streamed,
                                       first_event_s=first_event_s if streamed else None,
                                       ttfb_s=first_event_s if streamed else time.perf_counter() - started))

    read_timeout = runtime.config.proxy.timeouts.read
    result = first = None
    stopped = False
    # Binary mode's ingress gives LiteLLM timeouts.read to start answering (504 otherwise); same here.
    with anyio.move_on_after(read_timeout) as deadline:
        try:
            kwargs, strip_usage = _call_kwargs(sdk, route_type, data, request, runtime, admitted, trace)
            result = await getattr(sdk.router, route_type)(**kwargs)
            if stream:
                stream_answer = SseAnswer(result, route_type, requested, strip_usage=strip_usage,
                                          logging_obj=kwargs.get("litellm_logging_obj"))
                first = await stream_answer.first()
                first_event_s = time.perf_counter() - started
        except Exception as exc:
            response = _error_answer(route_type, exc, admitted)
            done(response.status_code, error=type(exc).__name__)
            return response
        except asyncio.CancelledError:
            # The server stops and its grace is over: a 503 (and a record) as binary mode's ingress
            # answers it, instead of uvicorn's plain-text 500. Any other cancellation propagates.
            if not cancelled_by_stop(runtime.stopping):
                raise
            stopped = True
    if stopped:
        if result is not None:
            await close_result(result)
        return answer(error_response(503, ingress.STOPPED_BEFORE_ANSWER, headers=extra), model=requested,
                      error="stopping", span=span)
    if deadline.cancelled_caught:
        if result is not None:
            await close_result(result)
        response = upstream_failure(httpx.ReadTimeout("no answer"), "LiteLLM", read_timeout)
        response.headers.update(extra)
        done(response.status_code)
        return response
    if stream:
        total = runtime.config.proxy.timeouts.total
        return SseResponse(stream_answer.body(first, read_timeout, done, admitted_at + total, total),
                           stream_answer.format, lambda: runtime.stopping, {**extra, "cache-control": "no-cache"})
    done(200)
    return JSONResponse(_jsonable(result, route_type, requested), headers=extra)


def _call_kwargs(sdk: SdkBackend, route_type: str, data: dict, request: Request, runtime: Runtime,
                 admitted: ingress.Admission, trace: str | None = None) -> tuple[dict, bool]:
    """Checks in the LiteLLM proxy's order (body safety, required params, mock params, model),
    then the call's arguments and whether to drop an injected usage chunk from the stream."""
    from litellm.proxy.auth.auth_utils import is_request_body_safe
    from litellm.proxy.route_llm_request import (
        MOCK_TESTING_CONFIG_KEY,
        raise_if_mock_testing_params_disallowed,
        raise_if_required_body_param_missing,
    )

    general = sdk.settings.general_settings
    try:
        is_request_body_safe(request_body=data, general_settings=general, llm_router=sdk.router,
                             model=str(data.get("model") or ""))
    except ValueError as exc:
        raise _auth_error(exc) from None
    if data.get("model") is not None and not isinstance(data["model"], str):  # as common_processing_pre_call_logic
        from litellm.proxy._types import ProxyErrorTypes, ProxyException

        raise ProxyException(message="'model' must be a string.", type=ProxyErrorTypes.bad_request_error,
                             param="model", code=400)
    kwargs = {k: v for k, v in data.items() if k not in INTERNAL_KWARGS and k not in _untrusted_fields()}
    if isinstance(kwargs.get("metadata"), dict):  # the proxy drops spoofable auth metadata the same way
        kwargs["metadata"] = {k: v for k, v in kwargs["metadata"].items() if not k.startswith("user_api_key_")}
    _reject_url_destinations(kwargs)
    kwargs.setdefault("model", None)
    raise_if_required_body_param_missing(route_type=route_type, data=kwargs, llm_router=sdk.router)
    raise_if_mock_testing_params_disallowed(kwargs, allowed=general.get(MOCK_TESTING_CONFIG_KEY) is True)
    kwargs.update(sdk.route_kwargs(route_type, kwargs))
    kwargs["litellm_call_id"] = admitted.request_id  # joins LiteLLM's usage figures to our record
    if trace is not None:  # LiteLLM's otel logger parents its spans on the proxy's server span
        kwargs.update(otel.call_context(trace))
    group = sdk.group_of(kwargs.get("model"))
    if group is not None and group in sdk.settings.backed_groups:
        kwargs["headers"] = forwarded_headers(request, runtime, admitted, trace)
    if (specific := provider_specific_header(request)) is not None:
        kwargs["provider_specific_header"] = specific
    strip_usage = False
    if route_type == "acompletion":
        # Like the proxy, ask for the usage chunk on streams and drop it again if the client did not.
        from litellm.proxy.common_request_processing import (
            model_deployments_support_stream_options,
            stream_usage_tracking_updates,
        )

        updates = dict(stream_usage_tracking_updates(
            kwargs, general, route_type,
            lambda: model_deployments_support_stream_options(kwargs.get("model"), sdk.router, None)))
        strip_usage = updates.pop("_litellm_strip_stream_usage", False) is True
        kwargs.update(updates)
    return with_logging_obj(route_type, kwargs), strip_usage


def with_logging_obj(route_type: str, kwargs: dict) -> dict:
    """The call's arguments with LiteLLM's logging object for it, made before the call as the
    LiteLLM proxy makes it (``function_setup``, then ``litellm_logging_obj``): LiteLLM's call uses
    it instead of making its own, so the handler can reach it when the client leaves a stream
    (``SseAnswer.end_unfinished``) even where the stream does not carry it (``/v1/messages``)."""
    from datetime import datetime

    from litellm.utils import Rules, function_setup

    logging_obj, kwargs = function_setup(route_type, Rules(), datetime.now(), **kwargs)
    return {**kwargs, "litellm_logging_obj": logging_obj}
