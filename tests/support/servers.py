"""ASGI apps on real loopback ports inside the test process (a thread each): any app, and
the memory proxy's own in front of a given upstream (``running_proxy``); raw HTTP requests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from memory_proxy.config.model import parse_config
from tests.support.configs import build_config, model

# The keys of running_proxy's memory proxy.
MASTER = "sk-test-master-0123456789"
SECRET = "egress-secret-for-tests"
SM_KEY = "sm-test-supermemory-key"


class _Server(uvicorn.Server):
    """uvicorn's server that notices ``stop()`` at once: its own loop looks at ``should_exit``
    every 0.1 s, and the tests start and stop a few hundred servers."""

    async def main_loop(self) -> None:
        self.loop, self.woken = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), 0.1)

    def stop(self) -> None:
        """From another thread."""
        self.should_exit = True
        if hasattr(self, "woken"):
            self.loop.call_soon_threadsafe(self.woken.set)


class ServerThread:
    """An app served by uvicorn on 127.0.0.1 in a background thread; ``port=0`` picks a free port;
    ``config``: more ``uvicorn.Config`` settings."""

    def __init__(self, app, port: int = 0, **config) -> None:
        self.server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                             lifespan="on", access_log=False, server_header=False, **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.thread.join(timeout=10)


async def receive_body(receive) -> bytes:
    """An ASGI request's whole body, for the small echo apps of the tests."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def proxy_config(emu_url: str, extra: str = ""):
    """The config of ``running_proxy``: one Supermemory-backed model on the emulator at
    ``emu_url``, small limits and timeouts; ``extra`` lines go under ``memory_proxy``."""
    text = build_config(
        [model("mem", "openai/x", f"{emu_url}/v3/http://provider/v1", "k")],
        patterns=[("user-agent", "^OpenAIClientImpl/Java", "pycharm-ai"), ("user-agent", "^claude-cli/", "claude-cli")],
        proxy={"max_body_bytes": 4096, "optional_routes": "[audio]", "timeouts": "{connect: 1, read: 1.5}"},
        supermemory={"base_url": emu_url, "api_key": "os.environ/SM_KEY", "cloudflare_retry_delay": 0.05},
        extra=extra)
    return parse_config(text, Path("test.yaml"), {"SM_KEY": SM_KEY, "FRONT_KEY": "front-door-key-0123456789"})


@contextlib.contextmanager
def running_proxy(emu_url: str, *, state_dir: Path | None = None, litellm_url: str | None = None,
                  extra: str = "") -> Iterator[ServerThread]:
    """The memory proxy's app (binary mode) in this process, in front of ``litellm_url``
    (default: the emulator, standing in for LiteLLM as with ``up --litellm-url``)."""
    from memory_proxy.server.app import create_app

    app = create_app(proxy_config(emu_url, extra), litellm_url=litellm_url or emu_url, master_key=MASTER,
                     egress_secret=SECRET, state_dir=state_dir)
    with ServerThread(app) as server:
        yield server


def raw_http(port: int, request_line: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """Send one HTTP/1.1 request byte for byte (no client-side path normalisation);
    return the status code and the raw answer."""
    head = [request_line, "host: 127.0.0.1", f"content-length: {len(body)}", "connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer
