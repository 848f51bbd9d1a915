"""Serving the memory proxy on its port: one ``serve()`` for binary and SDK mode.

``python -m memory_proxy`` (binary mode, LiteLLM behind it) and ``python -m memory_proxy.sdk``
(LiteLLM's Router in-process) differ only in the app they build; the arguments, the checks
before listening and the server settings are these. The per-run egress secret arrives in the
environment (``MEMORY_PROXY_EGRESS_SECRET``), never on the command line.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from memory_proxy.config.model import Config, ConfigError, is_loopback, load_config
from memory_proxy.names import EGRESS_SECRET_ENV
from memory_proxy.server import log_format
from memory_proxy.state import StateDir, default_state_dir


@dataclass(frozen=True)
class Start:
    """What both modes need before building their app."""

    config: Config
    host: str
    port: int
    state: StateDir
    egress_secret: str
    litellm_url: str | None  # binary mode's --litellm-url


def parse_arguments(prog: str, description: str, argv: list[str] | None, *, litellm_url: bool) -> Start | int:
    """The command line and the config, checked; an exit code when the proxy must not start."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--state-dir", type=Path, default=None)
    if litellm_url:
        parser.add_argument("--litellm-url", default=None,
                            help="default: http://127.0.0.1:<memory_proxy.litellm_port>")
    parser.add_argument("--host", default=None, help="default: memory_proxy.host")
    parser.add_argument("--port", type=int, default=None, help="default: memory_proxy.port")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    proxy = config.proxy
    log_format.setup(proxy.log_format)
    host = args.host or proxy.host
    if not is_loopback(host) and not proxy.api_keys:
        print(f"refusing to listen on {host}: set memory_proxy.api_keys (front-door keys) first", file=sys.stderr)
        return 2
    state = StateDir(args.state_dir or default_state_dir()).ensure()
    return Start(config, host, args.port or proxy.port, state,
                 os.environ.get(EGRESS_SECRET_ENV) or secrets.token_urlsafe(32),
                 getattr(args, "litellm_url", None))


def serve(app, start: Start) -> int:
    """Listen until stopped, with the settings both modes share."""
    import uvicorn

    proxy = start.config.proxy
    # Everything loaded so far lives as long as the process: keep it out of the cyclic garbage
    # collector's full passes (tens of ms each, every few thousand requests).
    gc.freeze()
    # The default young-generation threshold stays: 20,000 instead of 700 saved about 6 % of the
    # CPU of a lone client's request but, with 20 clients in flight, each pass had many more live
    # objects to walk and p99/p50 went from about 2.1 to 3.5.
    # loop/http "auto": uvloop and httptools (dependencies), the fastest uvicorn has, where installable.
    # No X-Forwarded-* rewriting: the proxy is the front door. IDEs keep their connections open.
    from memory_proxy.server.http_protocol import protocol_class

    config = uvicorn.Config(app, host=start.host, port=start.port, log_level="warning",
                            access_log=False, server_header=False, timeout_graceful_shutdown=5,
                            loop="auto", proxy_headers=False, timeout_keep_alive=75,
                            # uvicorn's parser (httptools when installed) with JSON errors and a bounded
                            # request head; no WebSocket upgrades (nothing here serves them).
                            http=protocol_class(proxy.max_header_bytes), ws="none",
                            h11_max_incomplete_event_size=proxy.max_header_bytes + 16 * 1024,
                            **log_format.uvicorn_settings(proxy.log_format))

    class Server(uvicorn.Server):
        """uvicorn's server, telling the app as it starts to stop: it then waits up to 5 s
        (``timeout_graceful_shutdown``) for the requests in flight and cancels the rest; a request
        cancelled that way before it answered got a plain-text 500 and a traceback in the log."""

        async def shutdown(self, sockets=None) -> None:
            _stopping(app)
            await super().shutdown(sockets)

    server = Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # (as uvicorn.run)
        pass
    return 0 if server.started else 3  # 3: uvicorn.run's exit code for a failed start


def _stopping(app) -> None:
    """The server starts to stop: tell the app's runtime (``Runtime.stop``)."""
    runtime = getattr(getattr(app, "state", None), "runtime", None)  # set by the app's lifespan
    if runtime is not None:
        runtime.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m memory_proxy --config ... --state-dir ...``: binary mode's memory proxy."""
    from memory_proxy.server.app import create_app

    start = parse_arguments("python -m memory_proxy", main.__doc__, argv, litellm_url=True)
    if isinstance(start, int):
        return start
    proxy = start.config.proxy
    app = create_app(start.config, litellm_url=start.litellm_url or f"http://127.0.0.1:{proxy.litellm_port}",
                     master_key=start.state.master_key(), egress_secret=start.egress_secret,
                     state_dir=start.state.root)
    return serve(app, start)
