"""The front door on :8764: who is calling, what LiteLLM may see, and the relay to it."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from memory_proxy.config import warmup
from memory_proxy.config.litellm_checks import FALLBACK_KEYS
from memory_proxy.names import LITELLM_READY_PATH
from memory_proxy.server import headers as h
from memory_proxy.server.errors import error_body, error_response
from memory_proxy.server.holding import ClientLeft, NotHeld
from memory_proxy.server.outcome import Outcome, new_request_id
from memory_proxy.server.relay import (
    BodyTooLarge,
    RelayResponse,
    cancelled_by_stop,
    read_body,
    send_upstream,
    stream_body,
    upstream_failure,
)
from memory_proxy.server.routing import InvalidClientId, Resolution, resolve, split_scope
from memory_proxy.server.runtime import Runtime
from memory_proxy.server.tracing import TRACE_HEADER

log = logging.getLogger("memory_proxy")

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
METHODS = BODY_METHODS | {"GET", "HEAD", "OPTIONS"}
# The proxy's own paths that reach the front door's checks (``GET /health`` is routed before it).
OWN_PATHS = frozenset({"/memory-routing/info", "/health", "/metrics"})
# Claude Code posts its telemetry to the base URL it is given: answered here, never relayed.
TELEMETRY_PREFIX = "/api/event_logging/"
LITELLM_READY = LITELLM_READY_PATH.encode()


def authorized(runtime: Runtime, request: Request) -> bool:
    """Front-door keys, when configured: ``Authorization: Bearer`` or ``x-api-key``."""
    keys = runtime.config.proxy.api_keys
    if not keys:
        return True
    offered = request.headers.get("x-api-key") or ""
    bearer = request.headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        offered = offered or bearer[7:].strip()
    return any(hmac.compare_digest(offered.encode(), key.encode()) for key in keys)


def _raw_upstream_path(request: Request, resolution: Resolution) -> bytes:
    """The path exactly as the client encoded it, without a ``/scope/<id>`` prefix."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    scope, rest = split_scope(raw.decode("latin-1"))
    return rest.encode("latin-1") if scope is not None else raw


@dataclass(frozen=True)
class Admission:
    """A request the front door let in: its id, whose it is, and the headers every answer carries.
    ``refused``: the answer when the door refused it after knowing whose it is (over its rate
    limit), so that the refusal is recorded for its client."""

    request_id: str
    resolution: Resolution
    extra: list[tuple[str, str]]  # x-supermemory-user-id and x-request-id, for the response
    refused: Response | None = None


def admit(runtime: Runtime, request: Request) -> Admission | Response:
    """The front door's checks, shared by binary and SDK mode, in this order: method (405),
    header size (431), front-door key (401), route (404: only model routes and the proxy's
    own), client id (400), ``/memory-routing/info`` and Claude Code's telemetry (answered
    here), per-client rate limit (429). A Response is the final answer. (Host and Origin
    were checked before this, for every path: ``front_door.Guard``.)"""
    request_id = new_request_id()
    if request.method not in METHODS:
        return error_response(405, f"method {request.method} is not supported", headers={"x-request-id": request_id})
    header_bytes = sum(len(n) + len(v) + 4 for n, v in request.scope["headers"])
    if header_bytes > runtime.config.proxy.max_header_bytes:
        return error_response(431, f"request headers are {header_bytes} bytes, over memory_proxy.max_header_bytes",
                              headers={"x-request-id": request_id})
    # The path as sent: a /scope/<id> must be a valid id as it stands (request.url.path would
    # turn /scope/tab%09x into the id "tabx" and /scope/a%2Fb into "a"), and a route is
    # matched as LiteLLM will receive it.
    if not authorized(runtime, request):
        return error_response(401, "missing or wrong memory proxy key (Authorization: Bearer or x-api-key)",
                              headers={"x-request-id": request_id})
    raw_path = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
    _, path = split_scope(raw_path)
    own = path in OWN_PATHS or path.startswith(TELEMETRY_PREFIX)
    if not own and not runtime.door.model_route(path):
        return runtime.door.not_a_model_route(path, {"x-request-id": request_id})
    try:
        resolution = resolve(runtime.config.user_id_mappings, request.headers, raw_path)
    except InvalidClientId as exc:
        return error_response(400, str(exc), code="invalid_client_id", headers={"x-request-id": request_id})
    extra = [(h.USER_ID_HEADER, resolution.user_id), ("x-request-id", request_id)]
    if own:
        if path == "/memory-routing/info":
            return routing_info(runtime, resolution, extra)
        if path.startswith(TELEMETRY_PREFIX):  # accepted and dropped: it is no model traffic
            return JSONResponse({}, headers=dict(extra))
        return error_response(405, f"{path} answers GET only", headers=dict(extra))
    if runtime.limiter is not None and (wait := runtime.limiter.acquire(resolution.user_id)):
        return Admission(request_id, resolution, extra, error_response(
            429, f"client {resolution.user_id} is over memory_proxy.requests_per_minute",
            headers={**dict(extra), "retry-after": runtime.limiter.retry_after(wait)}))
    return Admission(request_id, resolution, extra)


def wants_models(request: Request, resolution: Resolution) -> bool:
    """``GET /v1/models`` (or ``/models``): answered by ``model_listing``."""
    return request.method == "GET" and resolution.path.rstrip("/") in ("/v1/models", "/models")


def wants_anthropic_models(request: Request, resolution: Resolution) -> bool:
    """``GET /v1/models`` from a caller that speaks Anthropic (``anthropic-version`` header)."""
    return wants_models(request, resolution) and "anthropic-version" in request.headers


STOPPED_BEFORE_ANSWER = "the memory proxy stopped before LiteLLM answered; retry shortly"


async def handle(request: Request) -> Response:
    runtime: Runtime = request.scope["state"]["runtime"]  # the lifespan's (request.state wraps it per request)
    started = time.perf_counter()
    admitted_at = time.monotonic()
    admitted = admit(runtime, request)
    if isinstance(admitted, Response):  # refused, or answered here (routing info, telemetry: no model traffic)
        return answered(runtime, request, None, started, admitted, refusal=True) \
            if admitted.status_code >= 400 else admitted
    if admitted.refused is not None:
        return answered(runtime, request, admitted, started, admitted.refused, refusal=True)
    request_id, resolution, extra = admitted.request_id, admitted.resolution, admitted.extra
    if wants_models(request, resolution):
        return answered(runtime, request, admitted, started, await model_listing(runtime, request, extra))

    model = None
    try:
        content, data = await _request_content(runtime, request)
    except BodyTooLarge:
        return answered(runtime, request, admitted, started, error_response(
            413, "request body is larger than memory_proxy.max_body_bytes", headers=dict(extra)), refusal=True)
    except ValueError as exc:
        return answered(runtime, request, admitted, started,
                        error_response(400, str(exc), code="invalid_json", headers=dict(extra)), refusal=True)
    except ClientDisconnect:
        return answered(runtime, request, admitted, started, client_gone(resolution, request), completed=False)
    if isinstance(data, dict) and isinstance(data.get("model"), str):
        model = data["model"][:200]

    upstream_headers = h.ingress_request_headers(
        request.headers.items(), custom_header=runtime.config.user_id_mappings.custom_header,
        user_id=resolution.user_id, master_key=runtime.master_key, request_id=request_id)
    span = None
    if runtime.tracing is not None:
        span, upstream_headers = traced(runtime, request, resolution, model, upstream_headers)
    query = request.scope.get("query_string", b"")
    raw_path = _raw_upstream_path(request, resolution)
    url = runtime.litellm_target(raw_path + (b"?" + query if query else b""))
    outgoing = runtime.litellm.build_request(request.method, url, headers=h.as_bytes(upstream_headers),
                                             content=content)
    runtime.expect_report(request_id, resolution.user_id)
    try:
        upstream = await send_upstream(runtime.litellm, outgoing)
    except ClientDisconnect:  # while its body was still streaming in
        return answered(runtime, request, admitted, started, client_gone(resolution, request), model=model,
                        completed=False, span=span)
    except (httpx.HTTPError, BodyTooLarge) as exc:
        upstream, error = await _when_litellm_is_back(runtime, request, outgoing, exc, resolution, extra)
        if isinstance(upstream, Response):
            return answered(runtime, request, admitted, started, upstream, model=model, error=error, span=span)
    except asyncio.CancelledError:
        if not cancelled_by_stop(runtime.stopping):  # not the server's shutdown alone: not ours to answer
            raise
        # The server stops and its grace is over: answer (and record) instead of uvicorn's plain-text 500.
        return answered(runtime, request, admitted, started, error_response(
            503, STOPPED_BEFORE_ANSWER, headers=dict(extra)), model=model, error="stopping", span=span)
    head_at = time.perf_counter()

    if upstream.status_code >= 400 and "json" in upstream.headers.get("content-type", ""):
        return answered(runtime, request, admitted, started, await _error_in_openai_shape(upstream, extra),
                        model=model, ttfb_s=head_at - started, span=span)

    def done(status: int, completed: bool) -> None:
        streamed = relayed.format is not None
        first = relayed.first_chunk_at
        runtime.finish(outcome(request, admitted, started, status, model=model, completed=completed,
                               streamed=streamed, ttfb_s=head_at - started, span=span,
                               first_event_s=first - started if streamed and first is not None else None))

    total = runtime.config.proxy.timeouts.total
    relayed = RelayResponse(upstream, h.response_headers(upstream.headers.multi_items()) + extra,
                            path=resolution.path, on_complete=done, deadline=admitted_at + total, total=total,
                            stopping=lambda: runtime.stopping)
    return relayed


def outcome(request: Request, admitted: Admission | None, started: float, status: int, *,
            model: str | None = None, backend: str = "binary", **known) -> Outcome:
    """The request's ``Outcome`` (``started``: its ``time.perf_counter()`` on arrival); ``admitted``
    None: refused before a client id was resolved."""
    duration = time.perf_counter() - started
    if admitted is None:  # the path as sent, still percent-encoded: a decoded %0a would forge a log line
        raw = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")[:512]
        return Outcome(new_request_id(), "", "refused", request.method, raw, model, status, duration, backend,
                       **known)
    resolution = admitted.resolution
    session = request.headers.get(h.CLAUDE_SESSION_HEADER)
    return Outcome(admitted.request_id, resolution.user_id, resolution.source, request.method, resolution.path,
                   model, status, duration, backend, session_id=session[:128] if session else None, **known)


def answered(runtime: Runtime, request: Request, admitted: Admission | None, started: float, response: Response,
             *, refusal: bool = False, **known) -> Response:
    """An answer the proxy gives itself (or LiteLLM's error in one shape), its outcome finished;
    ``refusal``: the front door's (counted by reason for ``/metrics``)."""
    code = None
    if response.status_code >= 400 and isinstance(response, JSONResponse):
        try:
            code = json.loads(response.body)["error"].get("code")
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    if refusal:
        runtime.door.count_refusal(code)
    ended = outcome(request, admitted, started, response.status_code,
                    error_code=code if isinstance(code, str) else None, **known)
    if admitted is None and response.headers.get("x-request-id"):
        ended.request_id = response.headers["x-request-id"]
    runtime.finish(ended)
    return response


async def _when_litellm_is_back(runtime: Runtime, request: Request, outgoing: httpx.Request, exc: Exception,
                                resolution: Resolution, extra: list[tuple[str, str]],
                                ) -> tuple[httpx.Response | Response, str | None]:
    """A failed send: LiteLLM's answer once it is back when the request can wait for it
    (``holding.py``), else the error answer (503 with Retry-After past either bound) and the
    failure's name."""
    holding = runtime.holding
    if holding.refused(exc) and not isinstance(outgoing.stream, httpx.ByteStream):
        try:  # a streamed body LiteLLM never saw: read it now, then it waits like a JSON one
            outgoing = await _in_memory(runtime, request, outgoing)
        except ClientDisconnect:
            return client_gone(resolution, request), None
        except BodyTooLarge as too_large:
            exc = too_large  # 413, as when it streams past the limit
    if holding.takes(exc, outgoing):
        started = time.monotonic()
        try:
            upstream = await holding.send(runtime.litellm, outgoing, request.receive)
        except ClientLeft:
            log.info("client=%s %s %s: the client went away while waiting for LiteLLM", resolution.user_id,
                     request.method, resolution.path)
            return error_response(503, "the client went away while waiting for LiteLLM", code="client_gone"), None
        except NotHeld as refused:
            log.info("client=%s %s %s: not held (%s)", resolution.user_id, request.method, resolution.path,
                     refused.message)
            return error_response(503, refused.message, headers=dict(extra)), "NotHeld"
        except (httpx.HTTPError, BodyTooLarge) as again:
            exc = again
        else:
            log.info("client=%s %s %s: waited %.1f s for LiteLLM", resolution.user_id, request.method,
                     resolution.path, time.monotonic() - started)
            return upstream, None
    response = upstream_failure(exc, "LiteLLM", runtime.config.proxy.timeouts.read)
    response.headers.update(dict(extra))
    return response, type(exc).__name__


async def _in_memory(runtime: Runtime, request: Request, outgoing: httpx.Request) -> httpx.Request:
    """``outgoing`` with its body read (bounded by ``max_body_bytes``) instead of streamed: its
    stream was never started, because LiteLLM's port refused the connection."""
    body = await read_body(request, runtime.config.proxy.max_body_bytes)
    headers = [(name, value) for name, value in outgoing.headers.raw if name.lower() != b"transfer-encoding"]
    return runtime.litellm.build_request(outgoing.method, outgoing.url, headers=headers, content=body)


def traced(runtime: Runtime, request: Request, resolution: Resolution, model: str | None,
           headers: list[tuple[str, str]]) -> tuple[object, list[tuple[str, str]]]:
    """Tracing on: the request's server span, and the headers for LiteLLM with its
    ``traceparent`` (replacing a client's) and the egress's copy of it."""
    tracing = runtime.tracing
    span = tracing.start_request(request.method, resolution.path, request.headers, model)
    parent = tracing.traceparent(span)
    headers = [(n, v) for n, v in headers if n not in ("traceparent", "tracestate")]
    headers += [("traceparent", parent), (TRACE_HEADER, parent)]
    return span, headers


def client_gone(resolution: Resolution, request: Request) -> Response:
    """The client went away while sending its body: nothing to relay, nobody to answer."""
    log.info("client=%s %s %s: the client went away while sending the body", resolution.user_id,
             request.method, resolution.path)
    return error_response(400, "the client closed the connection while sending the body", code="client_gone")


async def _error_in_openai_shape(upstream: httpx.Response, extra: list[tuple[str, str]]) -> Response:
    """LiteLLM answers some errors FastAPI-style (``{"detail": ...}``); give clients one shape.
    Bodies that already carry an ``error`` object (OpenAI's or Anthropic's) pass unchanged."""
    try:
        await upstream.aread()
    finally:
        await upstream.aclose()
    headers = [(n, v) for n, v in h.response_headers(upstream.headers.multi_items()) if n != "content-length"]
    try:
        data = json.loads(upstream.content)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        body = upstream.content
    else:
        detail = data.get("detail") if isinstance(data, dict) else None
        message = detail if isinstance(detail, str) else json.dumps(detail) if detail else "upstream error"
        body = json.dumps(error_body(upstream.status_code, message)).encode()
    response = Response(body, upstream.status_code)
    response.raw_headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers + extra] + [
        (b"content-length", str(len(body)).encode())]
    return response


# The bodies LiteLLM (1.108, ``read_request_body``) does not parse as JSON: forms and protobuf.
# Every other body is JSON to it, whatever its content-type says, so it is checked and cleaned here.
NOT_JSON = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "application/x-protobuf",
                      "application/protobuf"})


async def _request_content(runtime: Runtime, request: Request):
    """(body to send on, parsed JSON or None): JSON bodies are read (bounded) and cleaned, others streamed."""
    limit = runtime.config.proxy.max_body_bytes
    if request.method not in BODY_METHODS:
        return None, None
    if h.media_type(request.headers.get("content-type", "")) in NOT_JSON:
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        return (stream_body(request, limit) if has_body else None), None
    body, data = clean_json_body(await read_body(request, limit), runtime.backed)
    require_object(body, data)
    return body, data


def require_object(body: bytes, data: object) -> None:
    """A non-empty JSON body must be an object (LiteLLM answers some others with a crash, 500):
    ValueError, a 400 ``invalid_json``, in both backends."""
    if body.strip() and not isinstance(data, dict):
        kind = "null" if data is None else type(data).__name__
        raise ValueError(f"request body must be a JSON object, got a JSON {kind}")


def clean_json_body(body: bytes, backed: Collection[str] = ()) -> tuple[bytes, object]:
    """A JSON request body checked and cleaned for LiteLLM: (bytes to send on, parsed value).

    Raises ValueError (-> 400) when it does not parse. LiteLLM sends a body's
    ``extra_headers`` upstream verbatim, overriding the memory headers, so they are dropped;
    so are the fallbacks a request to a Supermemory-backed group (``backed``) names: LiteLLM
    makes the fallback call with the same forwarded headers, and an ordinary model's provider
    would get the memory headers. An empty body is passed on as it is (parsed: None)."""
    if not body.strip():
        return body, None
    try:
        data = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))  # as json.loads
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("request body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        return body, data
    model = data.get("model")
    to_backed = isinstance(model, str) and model in backed  # a list or a mapping is LiteLLM's to refuse
    dropped = [k for k in (*FALLBACK_KEYS, "extra_headers") if k in data and (k == "extra_headers" or to_backed)]
    if not dropped:
        return body, data
    for key in dropped:
        del data[key]
    return json.dumps(data).encode(), data


def _not_json(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: Python reads it as inf, which LiteLLM cannot write on (500)
        raise ValueError(f"{text[:40]} is out of range for a number")
    return value


# A constant, like a compiled pattern: json.loads(parse_constant=...) builds a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def routing_info(runtime: Runtime, resolution: Resolution, extra: list[tuple[str, str]]) -> JSONResponse:
    mappings = runtime.config.user_id_mappings
    return JSONResponse({
        "user_id": resolution.user_id,
        "source": resolution.source,
        "reason": resolution.detail,
        "custom_header": mappings.custom_header,
        "scope_path": "/scope/<id>/v1",
        "header_patterns": [{"header": p.header, "pattern": p.pattern, "user_id": p.user_id}
                            for p in mappings.header_patterns],
        "default_user_id": mappings.default_user_id,
        "supermemory_backed_models": runtime.config.supermemory_groups,
    }, headers=dict(extra))


async def model_listing(runtime: Runtime, request: Request, extra: list[tuple[str, str]]) -> Response:
    """``GET /v1/models``, answered here: without LiteLLM's hidden warm-up groups
    (``warmup.py``), and in Anthropic's shape for a caller that speaks Anthropic (Claude Code
    asks it so; LiteLLM does not give it). LiteLLM's other shapes (Codex's ``client_version``
    catalog) keep their shape, minus the warm-up groups."""
    anthropic = "anthropic-version" in request.headers
    query = request.scope.get("query_string", b"")
    raw = b"/v1/models" + (b"?" + query if query and not anthropic else b"")
    outgoing = runtime.litellm.build_request("GET", runtime.litellm_target(raw),
                                             headers={"authorization": f"Bearer {runtime.master_key}"})
    try:
        try:
            answer = await runtime.litellm.send(outgoing)
        except httpx.ConnectError as exc:  # Claude Code asks this first: wait for a starting LiteLLM too
            if not runtime.holding.takes(exc, outgoing):
                raise
            answer = await runtime.holding.send(runtime.litellm, outgoing, request.receive)
            await answer.aread()
        listing = answer.json() if answer.status_code == 200 else None
    except ClientLeft:
        return error_response(503, "the client went away while waiting for LiteLLM", code="client_gone")
    except NotHeld as refused:
        return error_response(503, refused.message, headers=dict(extra))
    except (httpx.HTTPError, ValueError) as exc:
        response = upstream_failure(exc, "LiteLLM", runtime.config.proxy.timeouts.read)
        response.headers.update(dict(extra))
        return response
    if not isinstance(listing, dict):
        return Response(answer.content, answer.status_code, headers=dict(extra),
                        media_type=answer.headers.get("content-type"))
    listing = without_warmup_groups(listing)
    return JSONResponse(anthropic_model_listing(listing) if anthropic else listing, headers=dict(extra))


def without_warmup_groups(listing: dict) -> dict:
    """A ``/v1/models`` answer (any of LiteLLM's shapes) without the warm-up groups."""
    def visible(entry: object) -> bool:
        return not (isinstance(entry, dict) and any(warmup.is_warmup(entry.get(k)) for k in ("id", "slug", "name")))
    return {k: [e for e in v if visible(e)] if k in ("data", "models") and isinstance(v, list) else v
            for k, v in listing.items()}


def anthropic_model_listing(listing: dict) -> dict:
    """An OpenAI-shaped ``/v1/models`` listing in Anthropic's shape."""
    data = []
    for model in listing.get("data", []):
        created = datetime.fromtimestamp(model.get("created") or 0, tz=UTC)
        data.append({"type": "model", "id": model["id"], "display_name": model["id"],
                     "created_at": created.isoformat().replace("+00:00", "Z")})
    return {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def proxy_status(runtime: Runtime) -> dict:
    """The memory proxy's own part of ``/health`` (both modes)."""
    return {"status": "ok", "pid": runtime.pid, "uptime_s": round(time.time() - runtime.started, 1),
            "supermemory_errors": runtime.supermemory_errors,
            "waiting_for_litellm": runtime.holding.waiting,  # requests held while LiteLLM (re)starts
            "usage": runtime.usage.status() if runtime.usage is not None else {"enabled": False},
            "tasks": len(asyncio.all_tasks())}  # a leak of cancelled relays would show here


async def litellm_probe(runtime: Runtime) -> tuple[bool, bool]:
    """Whether LiteLLM answers its readiness probe at all, and with 200 (for ``/metrics``)."""
    try:
        answer = await runtime.litellm.get(runtime.litellm_target(LITELLM_READY), timeout=2.0)
    except httpx.HTTPError:
        return False, False
    await answer.aclose()
    return True, answer.status_code == 200


async def health(request: Request) -> JSONResponse:
    """The proxy's own state and, asked fresh each time, whether LiteLLM is ready."""
    runtime: Runtime = request.state.runtime
    litellm = {"ready": False}
    try:
        answer = await runtime.litellm.get(runtime.litellm_target(LITELLM_READY),
                                           timeout=2.0)
        litellm["ready"] = answer.status_code == 200
        litellm["status_code"] = answer.status_code
        if answer.status_code == 200:
            litellm["version"] = answer.json().get("litellm_version")
    except (httpx.HTTPError, ValueError) as exc:
        litellm["error"] = type(exc).__name__
    ready = litellm["ready"]
    return JSONResponse({
        "status": "ok" if ready else "degraded",
        "memory_proxy": proxy_status(runtime),
        "litellm": litellm,
    }, status_code=200 if ready else 503)
