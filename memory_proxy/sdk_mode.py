"""SDK mode: LiteLLM's Router inside the memory proxy's own process, behind the same front door.

    IDE ──► :8764 front door ──► Router (in-process) ──► provider                        (ordinary model)
    IDE ──► :8764 front door ──► Router ──► :8764 egress ──► Supermemory ──► provider      (Supermemory-backed)

What is shared with binary mode, unchanged:

- The front door: ``ingress.admit`` (method, header size, front-door key, client id, the
  ``/memory-routing/info`` answer, per-client rate limit), ``ingress.clean_json_body``
  (body limit, 400 on bad JSON, body ``extra_headers`` dropped), the Anthropic-shaped
  ``/v1/models`` for ``anthropic-version`` callers, and the proxy's own error shapes.
- The model list: ``build_litellm_config(config, egress_base(port))["model_list"]``, the very
  list the binary's generated config holds, so Supermemory-backed deployments call this
  process's own egress route with the per-run secret in their ``extra_headers``. The
  ``os.environ/`` references are resolved here (the egress secret by value).
- The egress and its one cookie-persistent session with its jar file: the SDK app runs the
  binary app's lifespan (``create_app(...).router.lifespan_context``), so both modes open
  the same sessions the same way and Supermemory's Cloudflare cookies hold in both.

Choices forced by LiteLLM's code (1.108):

- Memory headers travel in the call's ``headers``, never ``extra_headers``: litellm merges
  ``headers`` *under* the deployment's ``extra_headers`` (``headers.update(extra_headers)``
  in ``litellm.main``), while Router spreads a call's ``extra_headers`` *over* the
  deployment's, which would drop the egress secret. ``headers`` is also what the LiteLLM
  proxy's ``forward_client_headers_to_llm_api`` fills, with the same rule applied here:
  every ``x-*`` header except ``x-stainless-*``, plus ``anthropic-beta``, of the request as
  the ingress would have relayed it -- for Supermemory-backed groups only. Ordinary groups
  get none of them.
- ``anthropic-version``/``anthropic-beta`` go to Anthropic-family providers as the proxy
  does it (``provider_specific_header``).
- ``litellm.aclient_session`` is set to the app's cookie-less session (``runtime.litellm``,
  the one binary mode uses towards LiteLLM), so LiteLLM's OpenAI-SDK providers send
  through a session the app opens and closes. LiteLLM's Anthropic handler ignores
  ``aclient_session`` and keeps its own cached httpx handler (which never stores cookies).
  LiteLLM never talks to Supermemory directly here: every Supermemory-backed call passes
  this process's egress, whose session is the cookie-persistent one, exactly as in binary
  mode, so Cloudflare's cookies hold. LiteLLM's own session stays cookie-less like the
  binary's: it speaks to every provider on behalf of every client, and a jar there would
  keep provider cookies across clients and write them into Supermemory's jar file.
- Request checks and error bodies come from LiteLLM's own proxy helpers
  (``is_request_body_safe``, ``raise_if_required_body_param_missing``,
  ``raise_if_mock_testing_params_disallowed``, ``ProxyModelNotFoundError``,
  ``proxy_exception_from_route_error``, ``AnthropicExceptionMapping``), so statuses and
  bodies match what the binary answers; ``/v1/messages`` errors are Anthropic-shaped there
  and here.
- ``litellm_settings`` are applied to the ``litellm`` module (as the LiteLLM proxy does) and
  restored at shutdown, its callbacks through ``litellm_callbacks`` (LiteLLM's own callback
  machinery runs them, as in the binary); ``router_settings`` become Router arguments. LiteLLM is module-global
  state, so one SDK app per process at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import dashboard, egress, ingress, litellm_callbacks, metrics, warmup
from . import headers as h
from .app import AnyMethod, _http_error, create_app
from .config import Config, resolve_env
from .errors import STREAM_SILENT, answer_too_long, error_response, stream_error_event
from .front_door import Guard
from .litellm_config import build_litellm_config, egress_base
from .relay import BodyTooLarge, read_body, upstream_failure
from .routing import SCOPE_PREFIX
from .runtime import Runtime
from .tracing import TRACE_HEADER

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
_UNSET = object()


def _litellm():
    """Import LiteLLM, never fetching its price map (the only outside connection at import)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    return litellm


def load_litellm() -> None:
    """Import LiteLLM and the parts of its proxy package SDK mode calls (about 8 s and 200 MB
    on a small machine). ``create_sdk_app`` does it, so the app's startup only builds the Router."""
    _litellm()
    import litellm.anthropic_interface.exceptions  # noqa: F401
    import litellm.proxy.anthropic_endpoints.streaming_model_restamp  # noqa: F401
    import litellm.proxy.auth.auth_utils  # noqa: F401
    import litellm.proxy.common_request_processing  # noqa: F401
    import litellm.proxy.route_llm_request  # noqa: F401
    import litellm.proxy.utils  # noqa: F401


def connect_host(host: str) -> str:
    """Where this process reaches its own listening socket (for the egress URL)."""
    if host in ("", "0.0.0.0", "::", "[::]", "localhost"):
        return "127.0.0.1"
    return host


@dataclass
class SdkSettings:
    """What the Router is built from: the generated LiteLLM config, resolved."""

    model_list: list[dict]
    litellm_settings: dict
    router_settings: dict
    general_settings: dict
    backed_groups: frozenset[str]
    callback_settings: dict = field(default_factory=dict)  # the top-level section, for named generic_api sinks


def sdk_settings(config: Config, egress_url: str, egress_secret: str,
                 environ: Mapping[str, str] | None = None) -> SdkSettings:
    """The generated config binary mode hands LiteLLM, with ``os.environ/`` resolved."""
    environ = os.environ if environ is None else environ
    generated = build_litellm_config(config, egress_url, environ, usage_callback=False)
    model_list = []
    for model in generated.get("model_list") or []:
        model = dict(model)
        params = dict(model["litellm_params"])
        extra = params.get("extra_headers")
        if isinstance(extra, dict) and h.EGRESS_SECRET_HEADER in extra:
            params["extra_headers"] = {**extra, h.EGRESS_SECRET_HEADER: egress_secret}
        model["litellm_params"] = resolve_env(params, environ)
        model_list.append(model)
    settings = dict(resolve_env(generated.get("litellm_settings") or {}, environ))
    settings.pop("model_group_settings", None)  # header forwarding is done per call here
    general = dict(resolve_env(generated.get("general_settings") or {}, environ))
    general.pop("master_key", None)
    return SdkSettings(model_list, settings, dict(resolve_env(generated.get("router_settings") or {}, environ)),
                       general, frozenset(config.supermemory_groups),
                       dict(resolve_env(generated.get("callback_settings") or {}, environ)))


@dataclass
class SdkBackend:
    """The in-process LiteLLM of one running app (created in its lifespan)."""

    router: Any
    settings: SdkSettings
    version: str
    started_s: float
    restore: dict[str, object] = field(default_factory=dict)
    restore_callbacks: dict[str, object] = field(default_factory=dict)

    @classmethod
    def start(cls, settings: SdkSettings, runtime: Runtime) -> SdkBackend:
        started = time.perf_counter()
        litellm = _litellm()
        from litellm import Router

        restore: dict[str, object] = {}

        def set_global(name: str, value: object) -> None:
            restore.setdefault(name, getattr(litellm, name, _UNSET))
            setattr(litellm, name, value)

        set_global("aclient_session", runtime.litellm)
        set_global("suppress_debug_info", True)
        # LiteLLM's report of each call (tokens, cost), in-process: binary mode's generic_api callback
        set_global("callbacks", [*litellm.callbacks, _report_logger(runtime)])
        for name, value in settings.litellm_settings.items():
            if name in litellm_callbacks.CALLBACK_KEYS:
                continue  # installed below, as the LiteLLM proxy installs them
            if name.endswith("callbacks") or name in ("cache", "cache_params"):
                log.warning("SDK mode ignores litellm_settings.%s", name)
                continue
            set_global(name, value)
        _flush_client_cache(litellm)
        restore_callbacks = litellm_callbacks.install(litellm, settings.litellm_settings, settings.callback_settings,
                                                      runtime.config.path)
        accepted = set(inspect.signature(Router.__init__).parameters)
        router_kwargs = {k: v for k, v in settings.router_settings.items() if k in accepted}
        for name in set(settings.router_settings) - accepted:
            log.warning("SDK mode ignores router_settings.%s (not a Router argument)", name)
        router = Router(model_list=settings.model_list, **router_kwargs)
        try:
            from importlib.metadata import version
            litellm_version = version("litellm")
        except Exception:  # noqa: BLE001
            litellm_version = "unknown"
        return cls(router, settings, litellm_version, time.perf_counter() - started, restore, restore_callbacks)

    async def stop(self) -> None:
        litellm = _litellm()
        try:
            from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
            await close_litellm_async_clients()
        except Exception as exc:  # noqa: BLE001
            log.debug("closing LiteLLM's cached clients: %s", exc)
        _flush_client_cache(litellm)
        litellm_callbacks.restore(litellm, self.restore_callbacks)
        for name, value in self.restore.items():
            if value is _UNSET:
                with contextlib.suppress(AttributeError):
                    delattr(litellm, name)
            else:
                setattr(litellm, name, value)

    # --- what a request needs ----------------------------------------------------------

    def group_of(self, model: object) -> str | None:
        """The model group a requested name routes to (aliases resolved), if any."""
        if not isinstance(model, str):
            return None
        if model in self.router.model_names:
            return model
        alias = (self.router.model_group_alias or {}).get(model)
        target = alias.get("model") if isinstance(alias, dict) else alias
        return target if isinstance(target, str) and target in self.router.model_names else None

    def route_kwargs(self, route_type: str, data: dict) -> dict:
        """The model check of LiteLLM's proxy (route_llm_request): known groups and aliases,
        wildcard routes, then deployment names; anything else is a 400."""
        from litellm.proxy.route_llm_request import ROUTE_ENDPOINT_MAPPING, ProxyModelNotFoundError

        model = data.get("model")
        router = self.router
        if isinstance(model, str):
            if model in router.model_names or router.is_recognized_model(model):
                return {}
            if router.default_deployment is not None or len(router.pattern_router.patterns) > 0:
                return {}
            if model in router.deployment_names:
                return {"specific_deployment": True}
        raise ProxyModelNotFoundError(route=ROUTE_ENDPOINT_MAPPING.get(route_type, route_type), model_name=model)

    def model_listing(self) -> dict:
        """``/v1/models`` in OpenAI's shape, built the way the LiteLLM proxy builds it."""
        from litellm.proxy.utils import create_model_info_response

        data = []
        for name in self.router.get_model_names():
            if warmup.is_warmup(name):  # hidden, as the binary mode's front door hides them
                continue
            info = create_model_info_response(model_id=name, provider="openai", llm_router=self.router)
            info["id"] = name
            data.append(dict(info))
        return {"data": data, "object": "list"}


def _flush_client_cache(litellm) -> None:
    cache = getattr(litellm, "in_memory_llm_clients_cache", None)
    if cache is not None:
        with contextlib.suppress(Exception):
            cache.flush_cache()


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


def _error_answer(route_type: str, exc: Exception, admitted: ingress.Admission) -> Response:
    """A LiteLLM exception as the LiteLLM proxy answers it: OpenAI's shape, Anthropic's on /v1/messages."""
    from litellm.proxy._types import ProxyException
    from litellm.proxy.common_request_processing import proxy_exception_from_route_error

    proxy_exc = exc if isinstance(exc, ProxyException) else proxy_exception_from_route_error(exc)
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
    if isinstance(admitted, Response):  # as binary mode: refusals are recorded, own answers are not
        return ingress.answered(runtime, request, None, started, admitted, backend="sdk") \
            if admitted.status_code >= 400 else admitted
    resolution, extra = admitted.resolution, dict(admitted.extra)
    path = resolution.path

    def answer(response: Response, **known) -> Response:
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
        _, data = ingress.clean_json_body(await read_body(request, runtime.config.proxy.max_body_bytes))
    except BodyTooLarge:
        return answer(error_response(413, "request body is larger than memory_proxy.max_body_bytes", headers=extra))
    except ValueError as exc:
        return answer(error_response(400, str(exc), code="invalid_json", headers=extra))
    except ClientDisconnect:
        return answer(ingress.client_gone(resolution, request), completed=False)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return answer(error_response(400, "request body must be a JSON object", code="invalid_json",
                                     headers=extra))

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
    # Binary mode's ingress gives LiteLLM timeouts.read to start answering (504 otherwise); same here.
    with anyio.move_on_after(read_timeout) as deadline:
        try:
            kwargs, strip_usage = _call_kwargs(sdk, route_type, data, request, runtime, admitted, trace)
            result = await getattr(sdk.router, route_type)(**kwargs)
            if stream:
                stream_answer = SseAnswer(result, route_type, requested, strip_usage=strip_usage)
                first = await stream_answer.first()
                first_event_s = time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 -- every LiteLLM failure becomes the proxy's answer
            response = _error_answer(route_type, exc, admitted)
            done(response.status_code, error=type(exc).__name__)
            return response
    if deadline.cancelled_caught:
        if result is not None:
            await _close(result)
        response = upstream_failure(httpx.ReadTimeout("no answer"), "LiteLLM", read_timeout)
        response.headers.update(extra)
        done(response.status_code)
        return response
    if stream:
        total = runtime.config.proxy.timeouts.total
        return StreamingResponse(stream_answer.body(first, read_timeout, done, admitted_at + total, total), 200,
                                 headers={**extra, "cache-control": "no-cache"},
                                 media_type="text/event-stream; charset=utf-8")
    done(200)
    return JSONResponse(_jsonable(result, route_type, requested), headers=extra)


async def _close(result: Any) -> None:
    close = getattr(result, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await close()


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
    kwargs = {k: v for k, v in data.items() if k not in INTERNAL_KWARGS and k not in _untrusted_fields()}
    if isinstance(kwargs.get("metadata"), dict):  # the proxy drops spoofable auth metadata the same way
        kwargs["metadata"] = {k: v for k, v in kwargs["metadata"].items() if not k.startswith("user_api_key_")}
    _reject_url_destinations(kwargs)
    kwargs.setdefault("model", None)
    raise_if_required_body_param_missing(route_type=route_type, data=kwargs, llm_router=sdk.router)
    raise_if_mock_testing_params_disallowed(kwargs, allowed=general.get(MOCK_TESTING_CONFIG_KEY) is True)
    kwargs.update(sdk.route_kwargs(route_type, kwargs))
    kwargs["litellm_call_id"] = admitted.request_id  # joins LiteLLM's usage figures to our record
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
    return kwargs, strip_usage


def _report_logger(runtime: Runtime) -> Any:
    """A LiteLLM callback handing each call's standard logging payload to
    ``Runtime.litellm_report`` (what binary mode's ``generic_api`` callback posts to
    ``usage_intake``)."""
    from litellm.integrations.custom_logger import CustomLogger

    class ReportLogger(CustomLogger):
        def __init__(self) -> None:
            super().__init__()
            # LiteLLM keeps one logger per class name and public attributes: this one is this app's
            self.app_id = os.urandom(8).hex()

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
            runtime.litellm_report(kwargs.get("standard_logging_object"))

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
            runtime.litellm_report(kwargs.get("standard_logging_object"))

    return ReportLogger()


def _injected_usage_chunk(chunk: Any) -> bool:
    """The usage-only chunk a stream ends with when ``include_usage`` was asked for on the
    client's behalf (the LiteLLM proxy's ``_is_injected_stream_usage_artifact``)."""
    choices = getattr(chunk, "choices", None)
    if choices is None or getattr(chunk, "provider_specific_fields", None) is not None:
        return False
    for choice in choices:
        if choice.finish_reason is not None or getattr(choice, "logprobs", None) is not None:
            return False
        delta = getattr(choice, "delta", None)
        if delta is not None and any(v is not None for v in delta.model_dump().values()):
            return False
    return True


class SseAnswer:
    """A LiteLLM stream as SSE in the stream's own format, as the LiteLLM proxy writes it:
    chat chunks as ``data: {...}`` ending in ``data: [DONE]``, Anthropic events passed on
    with ``message_start`` restamped to the requested model name. The first event is awaited
    before answering, so a failure before any byte is still a JSON error with its status."""

    def __init__(self, result: Any, route_type: str, requested: str | None, *, strip_usage: bool = False) -> None:
        self.result = result
        self.strip_usage = strip_usage
        self.format = "anthropic" if route_type == "anthropic_messages" else "openai"
        self.requested = requested
        self.iterator = result.__aiter__()
        self.restamper = None
        if self.format == "anthropic" and requested:
            from litellm.proxy.anthropic_endpoints.streaming_model_restamp import AnthropicStreamModelRestamper

            self.restamper = AnthropicStreamModelRestamper(requested)

    async def first(self) -> bytes | None:
        """The first event's bytes; None for a stream without any."""
        try:
            return self.encode(await self.iterator.__anext__())
        except StopAsyncIteration:
            return None

    def encode(self, chunk: Any) -> bytes:
        if self.strip_usage and _injected_usage_chunk(chunk):
            return b""
        if self.restamper is not None:
            chunk = self.restamper.process(chunk)
        if self.format == "openai" and hasattr(chunk, "model_dump_json"):
            if self.requested and getattr(chunk, "model", None) is not None:
                chunk.model = self.requested  # the public name, as the proxy restamps it
            return b"data: " + chunk.model_dump_json(exclude_none=True, exclude_unset=True).encode() + b"\n\n"
        if isinstance(chunk, dict):
            if self.format == "anthropic":
                return f"event: {chunk.get('type')}\ndata: {json.dumps(chunk)}\n\n".encode()
            return f"data: {json.dumps(chunk)}\n\n".encode()
        if isinstance(chunk, str):
            chunk = chunk.encode()
        return bytes(chunk)

    def error_event(self, exc: Exception) -> bytes:
        """A failure after the answer started, in the frame the LiteLLM proxy sends for it."""
        if self.format == "anthropic":
            from litellm.anthropic_interface.exceptions import anthropic_error_sse_frame

            status = getattr(exc, "status_code", 500)
            return str(anthropic_error_sse_frame(status if isinstance(status, int) else 500,
                                                 getattr(exc, "message", str(exc)))).encode()
        from litellm.proxy._types import ProxyException

        error = ProxyException(message=getattr(exc, "message", str(exc)), type=getattr(exc, "type", "None"),
                               param=getattr(exc, "param", "None"), code=getattr(exc, "status_code", 500))
        return f"data: {json.dumps({'error': error.to_dict()})}\n\n".encode()

    async def body(self, first: bytes | None, read_timeout: float, done, deadline: float,
                   total: float) -> AsyncIterator[bytes]:
        """The events; cut with an error event after ``read_timeout`` of silence or past
        ``deadline`` (``timeouts.total`` after admission), as binary mode's relay does."""
        completed = False
        try:
            if first is None:
                completed = True
            else:
                yield first
                while True:
                    with anyio.move_on_after(read_timeout) as gap:
                        try:
                            chunk = await self.iterator.__anext__()
                        except StopAsyncIteration:
                            break
                        except Exception as exc:  # noqa: BLE001
                            log.warning("LiteLLM stream broke after the answer started: %s", type(exc).__name__)
                            yield self.error_event(exc)
                            return
                    if gap.cancelled_caught:  # as binary mode's relay reports a read timeout
                        yield stream_error_event(self.format, STREAM_SILENT, 504)
                        return
                    if piece := self.encode(chunk):
                        yield piece
                    if time.monotonic() > deadline:
                        yield stream_error_event(self.format, answer_too_long(total), 504)
                        return
                if self.restamper is not None and (held := self.restamper.flush()):
                    yield held
                completed = True
            if self.format == "openai":
                yield b"data: [DONE]\n\n"
        finally:
            done(200, completed)
            if not completed:  # the client went away or the stream broke: close LiteLLM's upstream now
                await _close(self.result)


async def warm_up(sdk: SdkBackend) -> list[warmup.Warmed]:
    """The binary mode's warm-up (``warmup.py``) in-process: every API shape through the Router
    on the hidden warm-up groups, which LiteLLM answers itself (no provider is called)."""
    started = time.monotonic()
    groups = [m["model_name"] for m in sdk.settings.model_list if warmup.is_warmup(m.get("model_name"))]

    async def one(group: str, path: str, stream: bool, body: dict) -> warmup.Warmed:
        began = time.monotonic()
        route = "anthropic_messages" if path == "/v1/messages" else "acompletion"
        status, error = 200, ""
        try:
            result = await getattr(sdk.router, route)(**body)
            if hasattr(result, "__aiter__"):
                async for _ in result:
                    pass
        except Exception as exc:  # noqa: BLE001 -- reported, never fatal
            status, error = None, type(exc).__name__
        return warmup.Warmed(group, path, stream, status, (time.monotonic() - began) * 1000, error)

    outcomes = list(await asyncio.gather(*(one(*r) for r in warmup.requests(groups))))
    log.info("SDK mode: %s", warmup.summary(outcomes, time.monotonic() - started))
    return outcomes


async def _in_process(runtime: Runtime) -> tuple[bool, bool]:
    return True, True  # LiteLLM runs in this process: up and ready whenever we answer


async def health(request: Request) -> JSONResponse:
    """The proxy's own state; LiteLLM runs in this process, so it is ready whenever we answer."""
    runtime: Runtime = request.state.runtime
    sdk: SdkBackend = request.state.sdk
    return JSONResponse({
        "status": "ok",
        "memory_proxy": ingress.proxy_status(runtime),
        "litellm": {"ready": True, "mode": "sdk", "version": sdk.version,
                    "models": sum(1 for name in sdk.router.get_model_names() if not warmup.is_warmup(name)),
                    "startup_s": round(sdk.started_s, 2)},
    })


def create_sdk_app(
    config: Config,
    *,
    master_key: str,
    egress_secret: str,
    port: int,
    host: str = "127.0.0.1",
    state_dir=None,
    environ: Mapping[str, str] | None = None,
    litellm_transport: httpx.AsyncBaseTransport | None = None,
    supermemory_transport: httpx.AsyncBaseTransport | None = None,
) -> Guard:
    """The memory proxy with LiteLLM in-process. ``port``/``host`` are where this app will
    listen: LiteLLM reaches the egress there. ``master_key`` only fills the runtime (no
    LiteLLM process needs it). The transports are injectable as in ``create_app``."""
    load_litellm()
    egress_url = egress_base(port, connect_host(host))
    settings = sdk_settings(config, egress_url, egress_secret, environ)
    # The binary app's lifespan opens the sessions (and loads/saves the cookie jar) for both modes.
    base = create_app(config, litellm_url=f"http://{connect_host(host)}:{port}", master_key=master_key,
                      egress_secret=egress_secret, state_dir=state_dir, litellm_transport=litellm_transport,
                      supermemory_transport=supermemory_transport, environ=environ)
    base_lifespan = base.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict]:
        async with base_lifespan(app) as state:
            runtime: Runtime = state["runtime"]
            backend = SdkBackend.start(settings, runtime)
            log.info("SDK mode: LiteLLM %s Router with %d deployments ready in %.1f s", backend.version,
                     len(settings.model_list), backend.started_s)
            await warm_up(backend)  # before the server listens: `up` sees /health only after it
            app.state.sdk = backend
            try:
                yield {**state, "sdk": backend}
            finally:
                await backend.stop()

    routes = [
        Route("/health", health, methods=["GET"]),
        Route(SCOPE_PREFIX + "{id}/health", health, methods=["GET"]),
        Route("/metrics", metrics.endpoint(_in_process), methods=["GET"]),
        Route(egress.EGRESS_PREFIX + "/{rest:path}", AnyMethod(egress.relay)),
        *dashboard.routes(),
        Route("/{path:path}", AnyMethod(handle)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    return Guard(app, base.door)


def main(argv: list[str] | None = None) -> int:
    """``python -m memory_proxy.sdk_mode --config ... --state-dir ... [--port P]``: the memory
    proxy in SDK mode, alone (no LiteLLM process). The egress secret comes from
    ``MEMORY_PROXY_EGRESS_SECRET`` when set (else a fresh one: nothing outside needs it)."""
    import argparse
    import secrets
    import sys
    from pathlib import Path

    import uvicorn

    from . import log_format
    from .config import ConfigError, is_loopback, load_config
    from .http_protocol import protocol_class
    from .litellm_config import EGRESS_SECRET_ENV
    from .state import StateDir, default_state_dir

    parser = argparse.ArgumentParser(prog="python -m memory_proxy.sdk_mode", description=main.__doc__)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--host", default=None, help="default: memory_proxy.host")
    parser.add_argument("--port", type=int, default=None, help="default: memory_proxy.port")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    log_format.setup(config.proxy.log_format)
    host = args.host or config.proxy.host
    port = args.port or config.proxy.port
    if not is_loopback(host) and not config.proxy.api_keys:
        print(f"refusing to listen on {host}: set memory_proxy.api_keys (front-door keys) first", file=sys.stderr)
        return 2
    state = StateDir(args.state_dir or default_state_dir()).ensure()
    app = create_sdk_app(config, master_key=state.master_key(), port=port, host=host, state_dir=state.root,
                         egress_secret=os.environ.get(EGRESS_SECRET_ENV) or secrets.token_urlsafe(32))
    # The same server settings as binary mode's memory proxy (memory_proxy/__main__.py): JSON
    # errors from the HTTP parser and a bounded request head.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
                timeout_graceful_shutdown=5, loop="auto", proxy_headers=False, timeout_keep_alive=75,
                http=protocol_class(config.proxy.max_header_bytes), ws="none",
                h11_max_incomplete_event_size=config.proxy.max_header_bytes + 16 * 1024,
                **log_format.uvicorn_settings(config.proxy.log_format))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
