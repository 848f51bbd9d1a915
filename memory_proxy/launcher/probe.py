"""Health probes over a plain socket (httptools reads the answers): importing http.client
costs ``status`` about 25 ms."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit


def http_get(url: str, timeout: float = 2.0) -> tuple[int | None, bytes]:
    """(status, body) of a plain GET, or (None, b"") when nothing answered in time.
    No proxies from the environment, no redirects, no LiteLLM imports.

    Plain http (every probe of a process started here) is spoken over a socket and read by
    httptools, the parser ``transport.py`` uses: importing ``http.client`` (email parsing,
    ssl) cost ``status`` about 25 ms. https, for a LiteLLM given with ``--litellm-url``, goes
    through ``http.client``."""
    import httptools  # only where something runs to be asked; `status` of nothing skips it

    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        return _https_get(parts.hostname, parts.port, path, timeout)
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: */*\r\n"
               "Connection: close\r\n\r\n").encode("latin-1")
    deadline = time.monotonic() + timeout
    answer = _ProbeAnswer()
    parser = httptools.HttpResponseParser(answer)
    received = 0
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
            sock.sendall(request)
            while not answer.complete and received < _PROBE_LIMIT:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                piece = sock.recv(65536)
                if not piece:
                    break
                received += len(piece)
                parser.feed_data(piece)
    except (OSError, TypeError, httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None, b""  # refused, timed out, reset; no HTTP answer
    if not (answer.complete or answer.ends_with_close()):
        return None, b""  # cut short
    return parser.get_status_code(), b"".join(answer.body)[:65536]


_PROBE_LIMIT = 1024 * 1024  # a probe's answer is a few hundred bytes; past this it is not one


class _ProbeAnswer:
    """httptools' callbacks for one probe's answer."""

    def __init__(self) -> None:
        self.names: set[bytes] = set()
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.names.add(name.lower())

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def ends_with_close(self) -> bool:
        """An answer with neither length nor chunking ends when the server closes. httptools
        has no call for the close; ``transport.py``'s ``connection_lost`` decides the same way."""
        return self.headers_done and not self.names & {b"content-length", b"transfer-encoding"}


def _https_get(host: str | None, port: int | None, path: str, timeout: float) -> tuple[int | None, bytes]:
    import http.client  # (and ssl): only for an https LiteLLM

    conn = http.client.HTTPSConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(65536)
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    return http_get(url, timeout)[0]
