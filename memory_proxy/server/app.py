"""The memory proxy's ASGI app: an app factory and a lifespan that owns the HTTP sessions."""

from __future__ import annotations

import contextlib
import http.cookiejar
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route, request_response

from memory_proxy.config.litellm import USAGE_CALLBACK_PATH
from memory_proxy.config.model import Config
from memory_proxy.config.warmup import ANSWERS_PREFIX
from memory_proxy.server import dashboard, egress, ingress, metrics, tracing, usage_intake, warmup_answers
from memory_proxy.server.errors import error_response
from memory_proxy.server.front_door import FrontDoor, Guard, is_page
from memory_proxy.server.routing import SCOPE_PREFIX, split_scope
from memory_proxy.server.runtime import Runtime
from memory_proxy.state import StateDir
from memory_proxy.supermemory import cookie_jar
from memory_proxy.upstream.transport import AsyncClient, Transport
from memory_proxy.usage.record import UsageLog


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """LiteLLM answers many clients through one session: never carry a cookie between them."""

    def set_ok(self, cookie, request):
        return False

    def return_ok(self, cookie, request):
        return False


class AnyMethod:
    """A request/response endpoint for every HTTP method (Starlette gives bare functions GET only)."""

    def __init__(self, endpoint) -> None:
        self.app = request_response(endpoint)

    async def __call__(self, scope, receive, send) -> None:
        await self.app(scope, receive, send)


class HotPath:
    """The app as served: a request for LiteLLM goes straight to the ingress relay; the
    lifespan, ``GET /health`` and the egress go through Starlette's router.

    Starlette's middleware, router and endpoint wrappers cost about a tenth of a relayed
    request's CPU (docs/design.md); the relay answers every error itself, so they add
    nothing to it. An exception escaping the relay reaches uvicorn, which logs it and
    answers 500 (or closes a started answer), as Starlette's error middleware would.
    """

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state  # serve.py (and tests) look at app.state.runtime
        self.router = app.router  # SDK mode wraps this app's lifespan

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not _routed(scope):
            response = await ingress.handle(Request(scope, receive, send))
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _routed(scope) -> bool:
    """Paths that the router below serves with something other than the ingress relay."""
    path = scope["path"]
    return path.startswith((egress.EGRESS_PREFIX + "/", ANSWERS_PREFIX + "/")) or path == USAGE_CALLBACK_PATH or (
        path.endswith("/health") and scope["method"] in ("GET", "HEAD") and is_health(path)) or (
        path == "/metrics" and scope["method"] in ("GET", "HEAD")) or is_page(path)


def is_health(path: str) -> bool:
    """``/health``, also as ``/scope/<id>/health`` (a client configured with a scoped base URL)."""
    return path == "/health" or (path.startswith(SCOPE_PREFIX) and split_scope(path)[1] == "/health")


async def _http_error(request: Request, exc: Exception):
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail or "error")


def create_app(
    config: Config,
    *,
    litellm_url: str,
    master_key: str,
    egress_secret: str,
    state_dir: Path | None = None,
    litellm_transport: httpx.AsyncBaseTransport | None = None,
    supermemory_transport: httpx.AsyncBaseTransport | None = None,
    environ: Mapping[str, str] | None = None,
) -> Guard:
    """Build the app. ``state_dir`` keeps the cookie jar across restarts (None: memory only);
    the transports are injectable so tests can run the app against in-process upstreams;
    ``environ`` (default: the process's) holds the OTEL_* variables."""
    door = FrontDoor(config.proxy)
    timeouts = config.proxy.timeouts
    timeout = httpx.Timeout(timeouts.read, connect=timeouts.connect)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200, keepalive_expiry=30)
    # LiteLLM's server (uvicorn) closes idle connections after 5 s: reusing one as it closes
    # would fail the request, so ours are dropped first.
    litellm_limits = httpx.Limits(max_connections=None, max_keepalive_connections=200, keepalive_expiry=4)
    jar_path = StateDir(state_dir).cookie_jar if state_dir is not None else None
    usage_settings = config.proxy.usage
    keeps_usage = usage_settings.enabled and (state_dir is not None or usage_settings.database_url is not None)

    def open_usage(readonly: bool = False):
        from memory_proxy.usage.store import open_store

        return open_store(usage_settings.database_url, state_dir, readonly=readonly)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict]:
        jar = cookie_jar.load(jar_path) if jar_path else http.cookiejar.CookieJar()
        async with (
            AsyncClient(timeout=timeout, transport=litellm_transport or Transport(limits=litellm_limits),
                        cookies=http.cookiejar.CookieJar(_NoCookies()), trust_env=False) as litellm,
            AsyncClient(timeout=timeout, transport=supermemory_transport or Transport(limits=limits),
                        cookies=jar, trust_env=False) as supermemory,
        ):
            runtime = Runtime(config, litellm, supermemory, httpx.URL(litellm_url), master_key, egress_secret,
                              jar_path, door)
            if keeps_usage:
                runtime.usage = UsageLog(open_usage, capacity=usage_settings.queue_size,
                                         backed=runtime.backed,
                                         retention_days=usage_settings.retention_days,
                                         max_bytes=usage_settings.max_mb * 1024 * 1024).start()
                runtime.usage_reader = lambda: open_usage(readonly=True)
                runtime.metrics.inputs.update(usage_queue=runtime.usage.waiting,
                                              usage_dropped=lambda: runtime.usage.dropped)
            if state_dir is not None:  # binary mode's LiteLLM, as the launcher's record counts it
                runtime.metrics.inputs["litellm_restarts"] = lambda: StateDir(state_dir).restarts("litellm")
            if (traced := tracing.settings(config, environ)) is not None:
                runtime.tracing = tracing.Tracing(traced)
            app.state.runtime = runtime  # serve.py tells it the server stops; handlers use request.state
            try:
                yield {"runtime": runtime}
            finally:
                if runtime.memory_api is not None:
                    await runtime.memory_api.aclose()
                egress.save_cookies(runtime)
                if runtime.usage is not None:
                    runtime.usage.stop()
                if runtime.tracing is not None:
                    runtime.tracing.shutdown()  # exports what is queued (bounded by the exporter's timeout)

    routes = [
        Route("/health", ingress.health, methods=["GET"]),
        Route(SCOPE_PREFIX + "{id}/health", ingress.health, methods=["GET"]),
        Route(USAGE_CALLBACK_PATH, usage_intake.litellm_callback, methods=["POST"]),
        *dashboard.routes(),
        Route("/metrics", metrics.endpoint(ingress.litellm_probe), methods=["GET"]),
        Route(egress.EGRESS_PREFIX + "/{rest:path}", AnyMethod(egress.handle)),
        Route(ANSWERS_PREFIX + "/{family}/{rest:path}", warmup_answers.handle, methods=["POST"]),
        Route("/{path:path}", AnyMethod(ingress.handle)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    return Guard(HotPath(app), door)
