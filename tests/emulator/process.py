"""Offline emulator of the outside world, for the tests and the benchmark.

The process entry: ``python -m tests.emulator --host 127.0.0.1 --port 8999 [--port ...]
[--chunk-delay 0.02] [--chunks 5] [--stamp-events] [--reuse-port]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket

from tests.emulator import streaming
from tests.emulator.app import create_app
from tests.emulator.fast import fast_chat_protocol
from tests.emulator.streaming import AbortStream


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append",
                        help="repeatable: every port serves the same app and state (default 8999)")
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--stamp-events", action="store_true", help="add emulator_sent (time.monotonic()) to SSE data")
    parser.add_argument("--reuse-port", action="store_true",
                        help="bind with SO_REUSEPORT, so that several emulator processes share a port (the kernel "
                             "spreads connections over them); each keeps its own state, so only for stateless "
                             "load such as the benchmark's direct path")
    args = parser.parse_args(argv)
    streaming.STAMP_EVENTS = args.stamp_events
    app = create_app(chunk_delay=args.chunk_delay, chunks=args.chunks)
    # A close_mid_stream fault is deliberate: keep its traceback out of the log.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: not (record.exc_info and isinstance(record.exc_info[1], AbortStream)))
    # Several ports, one state: providers on one port and "Supermemory" on another, so that
    # only api_bases starting with the Supermemory port count as Supermemory-backed.
    # server_header=False: the Cloudflare refusal's "server: cloudflare" must be the only Server header.
    servers = [uvicorn.Server(uvicorn.Config(app, http=fast_chat_protocol(app), host=args.host, port=port,
                                             log_level="warning", server_header=False, lifespan="off",
                                             # Providers keep idle connections open for a minute or
                                             # more; uvicorn's 5 s default made LiteLLM (its retries
                                             # off in the fault stack) reuse just-closed ones.
                                             timeout_keep_alive=75))
               for port in args.port or [8999]]

    async def serve_all() -> None:
        def stop_all() -> None:
            for server in servers:
                server.should_exit = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_all)
        # Each server's own signal capture would stop only itself; ours stops all.
        for server in servers:
            server.capture_signals = contextlib.nullcontext
        await asyncio.gather(*(server.serve(sockets=[_reuse_port_socket(args.host, server.config.port)]
                                            if args.reuse_port else None) for server in servers))
    try:
        import uvloop  # a dependency (uvicorn's fast loop), except on Windows
    except ImportError:
        asyncio.run(serve_all())
    else:
        uvloop.run(serve_all())


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
