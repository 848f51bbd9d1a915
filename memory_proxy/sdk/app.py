"""The SDK-mode app: binary mode's app (lifespan, sessions, egress, dashboard) with the Router in
place of the relay to LiteLLM."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from memory_proxy.config import warmup
from memory_proxy.config.hosts import url_host
from memory_proxy.config.litellm import egress_base
from memory_proxy.config.model import Config
from memory_proxy.sdk.backend import SdkBackend, load_litellm, sdk_settings, warm_up
from memory_proxy.sdk.handler import handle
from memory_proxy.server import dashboard, egress, ingress, metrics
from memory_proxy.server.app import AnyMethod, _http_error, create_app
from memory_proxy.server.front_door import Guard
from memory_proxy.server.routing import SCOPE_PREFIX
from memory_proxy.server.runtime import Runtime

log = logging.getLogger("memory_proxy")



async def _in_process(runtime: Runtime) -> tuple[bool, bool]:
    return True, True  # LiteLLM runs in this process: up and ready whenever we answer


async def health(request: Request) -> JSONResponse:
    """The proxy's own state; LiteLLM runs in this process, so it is ready whenever we answer."""
    runtime: Runtime = request.state.runtime
    sdk: SdkBackend = request.state.sdk
    return JSONResponse({
        "status": "ok",
        "memory_proxy": ingress.proxy_status(runtime),
        "litellm": {"ready": True, "backend": "sdk", "version": sdk.version,
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
    egress_url = egress_base(port, url_host(host))
    settings = sdk_settings(config, egress_url, egress_secret, environ)
    # The binary app's lifespan opens the sessions (and loads/saves the cookie jar) for both modes.
    base = create_app(config, litellm_url=f"http://{url_host(host)}:{port}", master_key=master_key,
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
        Route(egress.EGRESS_PREFIX + "/{rest:path}", AnyMethod(egress.handle)),
        *dashboard.routes(),
        Route("/{path:path}", AnyMethod(handle)),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
    return Guard(app, base.door)


def main(argv: list[str] | None = None) -> int:
    """``python -m memory_proxy.sdk --config ... --state-dir ... [--port P]``: the memory proxy in
    SDK mode, alone (no LiteLLM process)."""
    from memory_proxy.server.serve import parse_arguments, serve

    start = parse_arguments("python -m memory_proxy.sdk", main.__doc__, argv, litellm_url=False)
    if isinstance(start, int):
        return start
    app = create_sdk_app(start.config, master_key=start.state.master_key(), port=start.port, host=start.host,
                         state_dir=start.state.root, egress_secret=start.egress_secret)
    return serve(app, start)
