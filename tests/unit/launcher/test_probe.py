"""The launcher's health probe (a raw-socket HTTP GET) against one-connection servers."""

import socket
import threading
import time

from memory_proxy.launcher.probe import http_get


def _serve_once(answer: bytes | None, *pieces_delay: float) -> str:
    """A one-connection server on loopback that reads the request, then sends ``answer`` in
    two halves (``pieces_delay`` s apart) and closes; ``None``: never answers."""
    server = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = server.accept()
        with conn, server:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            assert request.startswith(b"GET /health?x=1 HTTP/1.1\r\n")
            if answer is None:
                conn.recv(1)  # until the client gives up
                return
            half = len(answer) // 2
            conn.sendall(answer[:half])
            threading.Event().wait(pieces_delay[0] if pieces_delay else 0)
            conn.sendall(answer[half:])

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/health?x=1"


def test_health_probe_reads_every_framing_and_gives_up_cleanly():
    body = b'{"status": "ok"}'
    length = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body), body)
    assert http_get(_serve_once(length, 0.05)) == (200, body)
    chunked = (b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"sta\r\nb;x=y\r\ntus\": \"ok\"}\r\n0\r\n\r\n")
    assert http_get(_serve_once(chunked, 0.05)) == (503, body)
    assert http_get(_serve_once(b"HTTP/1.0 200 OK\r\n\r\n" + body)) == (200, body)  # ended by the close
    assert http_get(_serve_once(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) == (None, b"")  # no HTTP answer
    assert http_get(_serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n{")) == (None, b"")  # cut short
    silent = _serve_once(None)
    started = time.monotonic()
    assert http_get(silent, timeout=0.3) == (None, b"")
    assert time.monotonic() - started < 2.0  # the timeout holds for the whole answer
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert http_get(f"http://127.0.0.1:{port}/health") == (None, b"")  # refused
