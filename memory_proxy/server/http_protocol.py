"""uvicorn's HTTP/1.1 protocol with the proxy's own answers for what it cannot parse.

uvicorn answers a request its parser rejects (a method token such as ``FOO``, a control
character in a header, broken chunked framing, a request line with a space, ...) with a
plain-text ``400 Invalid HTTP request received.`` before the app sees anything, and with
httptools it buffers a request's head without limit (200 MB of header grew the process
by 350 MB, for good). This subclass keeps uvicorn's parser and flow and changes four things:

- every such refusal is OpenAI-style JSON, naming what the parser disliked;
- a request line plus headers over ``limit`` bytes is refused with 431 as soon as that
  much has arrived, so memory stays bounded whatever a client sends;
- an offer to upgrade the connection (the JDK's ``HttpClient`` offers ``Upgrade: h2c`` on
  every ``http://`` request) is ignored, as RFC 9110 lets a server do: the request is served
  as HTTP/1.1 with its body (see ``_ignore_upgrade``);
- what the app writes in one pass of the event loop goes out in one write (see ``Coalesce``).
"""

from __future__ import annotations

import contextlib
import json
import sys

from memory_proxy.server.errors import error_body

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base

    HTTPTOOLS = True
except ImportError:  # no httptools: uvicorn's h11 protocol, whose own head limit applies
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base

    HTTPTOOLS = False

_REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}
# What an upgrade offer adds to a request; gone, the request is plain HTTP/1.1.
_UPGRADE_HEADERS = frozenset({b"upgrade", b"http2-settings"})


def json_error_bytes(status: int, message: str, code: str | None = None) -> bytes:
    body = json.dumps(error_body(status, message, code)).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, _REASONS[status], len(body))) + body


class Coalesce:
    """A connection's transport whose writes of one event-loop pass leave as one.

    uvicorn writes an answer's head as soon as the app starts it and each body piece as it
    is sent, one system call and one TCP segment each; a relayed answer that arrived whole
    then costs two writes and wakes its client twice. Here a write is held until the end of
    the loop pass it was made in (never longer: the data is not waited for), then sent
    together with whatever followed it; the end of an answer, closing and half-closing send
    what is held at once. Everything else is the transport's own.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport, loop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if data:
            if not self._held:
                self._loop.call_soon(self.flush)
            self._held.append(data)

    def flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held = []
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._held))

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class JsonErrorProtocol(_Base):  # type: ignore[misc, valid-type]
    """Set ``limit`` (bytes of request line plus headers) in a subclass: see ``protocol_class``."""

    limit = 128 * 1024

    def connection_made(self, transport) -> None:
        self._head_bytes = 0
        self._in_head = True
        self._refused = False
        self._completed = False
        self._upgrade_offer = False
        super().connection_made(Coalesce(transport, self.loop))

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered already: drain and drop whatever is still coming
            return
        self._completed = False
        if HTTPTOOLS:
            self._feed(data)
        else:
            super().data_received(data)
        # Count what arrived while a head was (and still is) incomplete. A piece in which a
        # message ended is not counted: it may hold a body; that undercounts by one piece at most.
        if HTTPTOOLS and self._in_head and not self._completed and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limit:
                self._refuse(431, f"the request line and headers are over {self.limit} bytes",
                             "headers_too_large")

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, with upgrade offers ignored instead of taken."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as exc:
            if self._upgrade_offer:
                self._ignore_upgrade(data[exc.args[0]:])
            elif self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _ignore_upgrade(self, rest: bytes) -> None:
        """httptools takes everything after an upgrade offer's head for the new protocol (the
        body too): parse the request again, from a head without the offer, with a new parser."""
        self._upgrade_offer = False
        head = [self._offer_method, b" ", self.url, b" HTTP/", self._offer_version.encode(), b"\r\n"]
        for name, value in self.headers:
            kept = value
            if name == b"connection":  # "Upgrade, HTTP2-Settings" named the offer's own headers
                kept = b", ".join(t.strip() for t in value.split(b",") if t.strip().lower() not in _UPGRADE_HEADERS)
            if kept and name not in _UPGRADE_HEADERS:
                head += [name, b": ", kept, b"\r\n"]
        head.append(b"\r\n")
        self.parser = httptools.HttpRequestParser(self)
        with contextlib.suppress(AttributeError):  # as uvicorn sets up its own (httptools >= 0.6.3)
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._feed(b"".join(head) + rest)

    # httptools' callbacks (h11 has none; the counting above is for httptools only)
    def on_message_begin(self) -> None:
        self._upgrade_offer = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self.parser.should_upgrade() and not self._should_upgrade():
            method = self.parser.get_method()
            if method != b"CONNECT":  # the head is parsed again without the offer: start nothing yet
                self._upgrade_offer = True
                self._offer_method, self._offer_version = method, self.parser.get_http_version()
                return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        # The answer's last piece was just written: send it now, before the app's own
        # bookkeeping (its log line) runs in the rest of this loop pass.
        if isinstance(self.transport, Coalesce):
            self.transport.flush()
        super().on_response_complete()

    def on_message_complete(self) -> None:
        if self._upgrade_offer:
            return
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
        self._completed = True

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn inside its ``except <parser error>`` block: name what failed.
        exc = sys.exc_info()[1]
        detail = f": {exc}" if exc is not None and str(exc) else ""
        self._refuse(400, f"invalid HTTP request{detail} (the proxy speaks HTTP/1.1 with "
                          "standard methods and printable ASCII headers)", "invalid_http")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer, then half-close: a client still sending (a huge header) gets to read the
        answer instead of a reset; the connection is closed for good a second later."""
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(json_error_bytes(status, message, code))
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except (OSError, RuntimeError):
            pass
        self.loop.call_later(1.0, self.transport.close)


def protocol_class(max_header_bytes: int) -> type:
    """The protocol for ``uvicorn.run(http=...)``: heads are cut off a little above the app's
    own 431 check (``memory_proxy.max_header_bytes``), leaving room for the request line."""
    return type("MemoryProxyHttpProtocol", (JsonErrorProtocol,), {"limit": max_header_bytes + 16 * 1024})
