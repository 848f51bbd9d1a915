"""Run ASGI apps on real loopback ports inside the test process (a thread each)."""

from __future__ import annotations

import threading
import time

import uvicorn


class ServerThread:
    """An app served by uvicorn on 127.0.0.1 in a background thread; ``port=0`` picks a free port;
    ``config``: more ``uvicorn.Config`` settings."""

    def __init__(self, app, port: int = 0, **config) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    lifespan="on", access_log=False,
                                                    server_header=False, **config))
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
        self.server.should_exit = True
        self.thread.join(timeout=10)


def until(predicate, what: str, timeout: float = 20.0):
    """Polls ``predicate`` until it returns something true (a bound against hangs, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)
    return value


async def receive_body(receive) -> bytes:
    """An ASGI request's whole body, for the small echo apps of the tests."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def raw_http(port: int, request_line: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    """Send one HTTP/1.1 request byte for byte (no client-side path normalisation);
    return the status code and the raw answer."""
    import socket

    head = [request_line, "host: 127.0.0.1", f"content-length: {len(body)}", "connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer
