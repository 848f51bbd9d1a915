"""The egress side: LiteLLM's requests for Supermemory-backed models, on their way out.

Only the generated LiteLLM config knows this address and the per-run secret it must carry,
so the egress is no open relay for the Supermemory key. Requests leave through one
long-lived cookie-persistent session so Cloudflare's clearance cookies are kept.
"""

from __future__ import annotations

import hmac
import logging
import time
from urllib.parse import parse_qsl, unquote, urlencode

import anyio
import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from memory_proxy.config.litellm import EGRESS_PREFIX
from memory_proxy.server import headers as h
from memory_proxy.server.errors import error_response
from memory_proxy.server.relay import BodyTooLarge, RelayResponse, read_body, send_upstream, upstream_failure
from memory_proxy.server.routing import valid_id
from memory_proxy.server.runtime import Runtime
from memory_proxy.supermemory import cookie_jar
from memory_proxy.usage import record as usage

log = logging.getLogger("memory_proxy")


def target_url(base_url: str, raw_rest: bytes, query: bytes) -> httpx.URL | None:
    """Supermemory's URL for the path after the egress prefix, or None if it would
    leave the configured host (dot segments, another authority, backslashes)."""
    rest = raw_rest.decode("latin-1")
    decoded = unquote(rest)  # servers may decode %2e%2e into ".." before routing
    if not rest.startswith("/") or "\\" in decoded or any(part in (".", "..") for part in decoded.split("/")):
        return None
    if any(c in rest for c in "\r\n\t #?"):  # a "?" here would smuggle a query past the userId filter
        return None
    base = httpx.URL(base_url)
    params = [(k, v) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k != "userId"]
    raw_path = base.raw_path.rstrip(b"/") + raw_rest + (b"?" + urlencode(params).encode() if params else b"")
    url = base.copy_with(raw_path=raw_path)
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return None
    return url


async def _is_cloudflare_refusal(response: httpx.Response) -> bool:
    if response.status_code != 503 or "cloudflare" not in response.headers.get("server", "").lower():
        return False
    await response.aread()
    return b"error code: 1200" in response.content


async def handle(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    started = time.monotonic()
    offered = request.headers.get(h.EGRESS_SECRET_HEADER, "")
    if not hmac.compare_digest(offered.encode(), runtime.egress_secret.encode()):
        return error_response(403, "the egress only serves the memory proxy's own LiteLLM", code="forbidden")
    user_id = request.headers.get(h.USER_ID_HEADER, "")
    if not valid_id(user_id):
        # Fail closed: without the header Supermemory would take the scope from the body.
        return error_response(400, "no valid client id reached the egress (is header forwarding on for "
                                   "this model group?)", code="missing_client_id")
    raw = request.scope.get("raw_path") or request.url.path.encode()
    url = target_url(runtime.config.proxy.supermemory.base_url, raw[len(EGRESS_PREFIX):],
                     request.scope.get("query_string", b""))
    if url is None:
        return error_response(400, "egress path would leave the configured Supermemory host", code="bad_path")
    try:
        body = await read_body(request, runtime.config.proxy.max_body_bytes)
    except BodyTooLarge:
        return error_response(413, "request body is larger than memory_proxy.max_body_bytes")
    except ClientDisconnect:
        return error_response(400, "LiteLLM closed the connection while sending the body", code="client_gone")
    headers = h.as_bytes(h.egress_request_headers(request.headers.items(), user_id=user_id,
                                                  api_key=runtime.config.proxy.supermemory.api_key))
    client = runtime.supermemory
    timeout = runtime.config.proxy.timeouts.read
    new_cookies = retried = False
    tracing = runtime.tracing
    span = tracing.start_egress(request.headers, request.method, url) if tracing is not None else None
    try:
        upstream = await send_upstream(client, client.build_request(request.method, url, headers=headers,
                                                                    content=body))
        if await _is_cloudflare_refusal(upstream):
            # Refused at Cloudflare's edge, so it never reached the origin: safe to retry once.
            log.warning("client=%s Supermemory: Cloudflare refusal (1200), retrying once", user_id)
            runtime.cloudflare_retries += 1
            await upstream.aclose()
            new_cookies = "set-cookie" in upstream.headers  # the refusal's fresh cookies: keep them too
            retried = True
            await anyio.sleep(runtime.config.proxy.supermemory.cloudflare_retry_delay)
            upstream = await send_upstream(client, client.build_request(request.method, url, headers=headers,
                                                                        content=body))
            if await _is_cloudflare_refusal(upstream):
                await upstream.aclose()
                save_cookies(runtime)
                _record(runtime, request, {"x-supermemory-error": usage.CLOUDFLARE_REFUSED}, 1)
                if span is not None:
                    tracing.end_egress(span, 503, client_id=user_id, cloudflare_retried=True, error="cloudflare_1200")
                return error_response(503, "Supermemory's Cloudflare edge refused the request twice "
                                           "(error code: 1200, rate limited); retry in a few seconds",
                                      code="cloudflare_1200")
    except httpx.HTTPError as exc:
        log.warning("client=%s Supermemory exchange failed: %s", user_id, type(exc).__name__)
        _record(runtime, request, {"x-supermemory-error": f"{usage.UNREACHABLE}: {type(exc).__name__}"},
                1 if retried else 0)
        response = upstream_failure(exc, "Supermemory", timeout)
        if span is not None:
            tracing.end_egress(span, response.status_code, client_id=user_id, cloudflare_retried=retried,
                               error=type(exc).__name__)
        return response
    if new_cookies or "set-cookie" in upstream.headers:
        save_cookies(runtime)
    _record(runtime, request, upstream.headers, 1 if retried else 0)
    memory_error = upstream.headers.get("x-supermemory-error")
    if memory_error is not None:
        runtime.supermemory_errors += 1
        log.warning("client=%s Supermemory could not add memory: %s", user_id, memory_error[:200])
    # The session's jar keeps Supermemory's cookies; LiteLLM would hand them to clients as llm_provider-set-cookie.
    relayed = [(n, v) for n, v in h.response_headers(upstream.headers.multi_items()) if n != "set-cookie"]
    done = None
    if span is not None:
        def done(status: int, completed: bool) -> None:
            tracing.end_egress(span, status, client_id=user_id, supermemory_error=memory_error,
                               cloudflare_retried=retried, error=None if completed else "stream_cut")
    if upstream.is_stream_consumed:  # read above to look for a Cloudflare refusal
        await upstream.aclose()
        if done is not None:
            done(upstream.status_code, True)
        return _plain(upstream, relayed)
    total = runtime.config.proxy.timeouts.total
    return RelayResponse(upstream, relayed, path=url.path, on_complete=done, deadline=started + total, total=total)


def _record(runtime: Runtime, request: Request, answer_headers, cloudflare_retries: int) -> None:
    """Supermemory's signals for the usage record of the request LiteLLM is making for us."""
    request_id = request.headers.get("x-request-id")
    if runtime.usage is not None and request_id:
        runtime.usage.put(usage.from_supermemory(request_id[:64], answer_headers, cloudflare_retries))


def _plain(upstream: httpx.Response, headers: list[tuple[str, str]]) -> Response:
    response = Response(upstream.content, upstream.status_code)
    response.raw_headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers
                            if n != "content-length"] + [(b"content-length", str(len(upstream.content)).encode())]
    return response


def save_cookies(runtime: Runtime) -> None:
    if runtime.cookie_jar_path is not None:
        try:
            cookie_jar.save(runtime.supermemory.cookies.jar, runtime.cookie_jar_path)
        except OSError as exc:
            log.warning("could not save the cookie jar: %s", exc.strerror)
