"""The HTTP/1.1 client under httpx: httpx stays the client API, this moves the bytes.

httpx's own transport (httpcore) scans every pooled connection on each request and costs
the proxy more than everything else it does; aiohttp (through httpx-aiohttp) is a few times
cheaper, and this one, a keep-alive connection pool on asyncio protocols with the httptools
parser (the C parser uvicorn uses), is cheaper still (see docs/design.md).

It relays, so it changes nothing: the request goes out as httpx built it (raw path, headers
in order, no header added), the answer's bytes come back undecoded, each piece handed on as
soon as it arrives (reading pauses past 256 KB not yet taken). Cookies stay httpx's business
(the egress session's jar). A connection is reused only after a complete answer that allows
it, and idle ones are dropped after ``keepalive_expiry`` seconds; an answer cut short (client
gone) closes its connection, so the upstream sees the request end. Errors are the httpx
exceptions the relay maps: ConnectError, ConnectTimeout, ReadTimeout, RemoteProtocolError.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import ssl
import time
from collections.abc import AsyncIterator

import httptools
import httpx
from httpx import USE_CLIENT_DEFAULT

_httpx_log = logging.getLogger("httpx")

_HIGH_WATER = 256 * 1024  # buffered response bytes before reading from the socket pauses


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one exchange at a time."""

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future | None = None
        self._write_waiter: asyncio.Future | None = None
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.complete = False
        self.error: Exception | None = None
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.head = False
        self.informational = False
        self.keep_alive = False
        self.delimited = True  # content-length or chunked (else the body ends with the connection)

    # -- asyncio.Protocol --
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols, which is not supported"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream broke HTTP/1.1: {exc}"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and not self.delimited and self.error is None:
            self.complete = True  # a body without length ends with the connection
        elif not self.complete and self.error is None:  # httpcore's wording, which callers may look for
            self.error = httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body"
                if self.headers_done else "Server disconnected without sending a response.")
        self._wake()
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    def pause_writing(self) -> None:
        if self._write_waiter is None or self._write_waiter.done():
            self._write_waiter = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            self._write_waiter.set_result(None)

    # -- httptools callbacks --
    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # 100 Continue and friends: not the answer
            self.informational = True
            self.headers, self.reason = [], b""
            return
        self.status = status
        self.headers_done = True
        names = {n.lower() for n, _ in self.headers}
        self.delimited = b"content-length" in names or b"transfer-encoding" in names or status in (204, 304)
        if self.head:
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
            return
        self.keep_alive = self.parser.should_keep_alive()  # only meaningful inside the callback
        self.complete = True
        self._wake()

    # -- helpers --
    def _fail(self, error: Exception) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> None:
        if not self.closed:  # a write after the upstream hung up is moot: the answer tells
            self.transport.write(data)

    async def wait(self, timeout: float | None) -> None:
        """Until something happens (headers, body, end, error), at most ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = loop.call_later(timeout, self._timed_out, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _timed_out(self, waiter: asyncio.Future) -> None:
        if not waiter.done():
            waiter.set_exception(httpx.ReadTimeout("the upstream did not answer in time"))

    async def drain(self) -> None:
        if self._write_waiter is not None and not self._write_waiter.done():
            await self._write_waiter

    def take_body(self) -> bytes:
        data = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.buffered = 0
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()
        return data

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None and not self.head


class _ResponseStream(httpx.AsyncByteStream):
    """The answer's body, piece by piece as it arrives; closing hands the connection back."""

    def __init__(self, pool: Transport, conn: _Connection, read_timeout: float | None) -> None:
        self.pool = pool
        self.conn = conn
        self.read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        while True:
            if conn.body:
                yield conn.take_body()
            elif conn.complete:
                return
            elif conn.error is not None:
                raise conn.error
            else:
                await conn.wait(self.read_timeout)

    async def aclose(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.release(conn)


def arrived_body(response: httpx.Response) -> bytes | None:
    """The raw body of an answer from this transport that has arrived whole (a JSON answer
    usually comes in the same read as its head), taken at once; None while any is to come.
    A relay then sends it without a disconnect watcher: there is nothing left to cancel."""
    stream = response.stream
    stream = stream._stream if isinstance(stream, _Bound) else stream
    conn = stream.conn if isinstance(stream, _ResponseStream) else None
    if conn is None or not conn.complete or conn.error is not None:
        return None
    return conn.take_body() if conn.body else b""


class Transport(httpx.AsyncBaseTransport):
    """A pool of HTTP/1.1 keep-alive connections (http and https), one exchange per connection
    at a time, no limit on how many; ``limits.keepalive_expiry`` bounds how long one idles."""

    def __init__(self, *, limits: httpx.Limits | None = None, verify: bool = True) -> None:
        limits = limits or httpx.Limits()
        self.keepalive = limits.keepalive_expiry if limits.keepalive_expiry is not None else 5.0
        self.max_idle = limits.max_keepalive_connections or 100
        self.verify = verify
        self._ssl: ssl.SSLContext | None = None
        self.idle: dict[tuple, list[_Connection]] = {}
        self.closing = False

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context(verify=self.verify)
        return self._ssl

    async def _connect(self, key: tuple, timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        conn = _Connection(key)
        tls = scheme == "https"
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(lambda: conn, host, port, ssl=self._context() if tls else None,
                                             server_hostname=host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} within {timeout:g} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        return conn

    def _pooled(self, key: tuple) -> _Connection | None:
        conns = self.idle.get(key)
        now = time.monotonic()
        while conns:
            conn = conns.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    def release(self, conn: _Connection) -> None:
        if conn.reusable and not self.closing:
            conn._reset()
            conn.idle_since = now = time.monotonic()
            conns = self.idle.setdefault(conn.key, [])
            while conns and (conns[0].closed or now - conns[0].idle_since >= self.keepalive):
                conns.pop(0).close()  # the least recently used end: expired ones go
            if len(conns) < self.max_idle:
                conns.append(conn)
                return
        conn.close()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout") or {}
        read_timeout = timeouts.get("read")
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name or b":" in name:
                raise httpx.LocalProtocolError(f"invalid header {name!r}")
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        try:
            body = request.content
            stream = None
        except httpx.RequestNotRead:
            body, stream = b"", request.stream

        chunked = stream is not None and request.headers.get("transfer-encoding", "").lower() == "chunked"

        conn = self._pooled(key) or await self._connect(key, timeouts.get("connect"))
        conn.head = request.method == "HEAD"
        try:
            conn.send(b"".join(head) + body if len(body) < 65536 else b"".join(head))
            if len(body) >= 65536:
                conn.send(body)
            if stream is not None:  # chunked, or as is when httpx knew the length (multipart)
                async for chunk in stream:
                    if chunk:
                        conn.send(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                        await conn.drain()
                    if conn.closed:
                        break
                if chunked:
                    conn.send(b"0\r\n\r\n")
            await conn.drain()
            while not conn.headers_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read_timeout)
        except BaseException:
            conn.close()
            raise
        return httpx.Response(conn.status, headers=conn.headers, stream=_ResponseStream(self, conn, read_timeout),
                              request=request, extensions={"http_version": b"HTTP/1.1",
                                                           "reason_phrase": conn.reason.strip()})

    async def aclose(self) -> None:
        self.closing = True
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


class _Cookies(httpx.Cookies):
    """httpx's cookie store, minus the work when an answer sets no cookie: httpx builds a
    urllib request and response to show the jar on every answer (about 0.1 ms)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers:  # the jar reads nothing else (RFC 2965's Set-Cookie2 is off)
            super().extract_cookies(response)


class AsyncClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` for relaying: the cheaper cookie store above (a ``CookieJar``
    passed in is used as is, with its cookie policy), no default headers, and a short way
    through ``build_request`` and ``send`` for what a relay asks of them.

    The short way applies when httpx's extras have nothing to do: no base URL, params,
    per-request cookies, auth, redirects to follow, event hooks or mounts; it gives the
    same request and response (cookies extracted, ``elapsed`` set on close) without the
    generators and copies that cost about a tenth of the proxy's time per request. It does
    not fill ``response.next_request`` for an unfollowed redirect; nothing here reads it.
    """

    def __init__(self, *, cookies=None, transport: httpx.AsyncBaseTransport | None = None, **kwargs) -> None:
        plain = not ({"base_url", "params", "headers", "auth", "event_hooks", "mounts", "proxy"} & kwargs.keys()
                     or kwargs.get("follow_redirects") or kwargs.get("trust_env", True))
        super().__init__(transport=transport, **kwargs)
        self.cookies = cookies
        # No headers of its own (httpx would add accept, accept-encoding, connection and
        # user-agent): a proxy sends what it was given. It also saves a merge per request.
        self.headers.clear()
        self._direct = transport if plain and transport is not None else None

    @property
    def cookies(self) -> httpx.Cookies:
        return self._proxy_cookies

    @cookies.setter
    def cookies(self, cookies) -> None:
        self._proxy_cookies = _Cookies(httpx.Cookies(cookies).jar)

    def _short_way(self) -> bool:
        return (self._direct is not None and not self.headers and not self.params and self.auth is None
                and not self.follow_redirects and not any(self.event_hooks.values()))

    def build_request(self, method: str, url, *, content=None, data=None, files=None, json=None, params=None,
                      headers=None, cookies=None, timeout=USE_CLIENT_DEFAULT, extensions=None) -> httpx.Request:
        if params is not None or cookies is not None or not self._short_way() or self.cookies:
            return super().build_request(method, url, content=content, data=data, files=files, json=json,
                                         params=params, headers=headers, cookies=cookies, timeout=timeout,
                                         extensions=extensions)
        extensions = {} if extensions is None else extensions
        if "timeout" not in extensions:
            timeout = self.timeout if timeout is USE_CLIENT_DEFAULT else httpx.Timeout(timeout)
            extensions = {**extensions, "timeout": timeout.as_dict()}
        if isinstance(url, httpx.URL) and isinstance(headers, list) and data is None and files is None and json is None:
            request = _relay_request(method, url, headers, content, extensions)
            if request is not None:
                return request
        return httpx.Request(method, url, content=content, data=data, files=files, json=json, headers=headers,
                             extensions=extensions)

    async def send(self, request: httpx.Request, *, stream: bool = False, auth=USE_CLIENT_DEFAULT,
                   follow_redirects=USE_CLIENT_DEFAULT) -> httpx.Response:
        if (auth is not USE_CLIENT_DEFAULT or follow_redirects is not USE_CLIENT_DEFAULT or self.is_closed
                or not self._short_way()):
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        if "timeout" not in request.extensions:
            request.extensions = {**request.extensions, "timeout": self.timeout.as_dict()}
        start = time.perf_counter()
        try:
            response = await self._direct.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        response.stream = _Bound(response.stream, response, start)
        self.cookies.extract_cookies(response)
        if _httpx_log.isEnabledFor(logging.INFO):
            _httpx_log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url, response.http_version,
                            response.status_code, response.reason_phrase)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response


_FRAMING = (b"host", b"content-length", b"transfer-encoding")


def _relay_request(method: str, url: httpx.URL, headers: list, content, extensions: dict) -> httpx.Request | None:
    """What ``httpx.Request(method, url, headers=headers, content=content)`` builds, for a
    relay's headers (byte pairs, no Host or framing header) and a body in memory (or none),
    in one pass over the headers instead of httpx's three (about 50 us a request).
    None for anything else: httpx builds those."""
    method = method.upper()
    if content is None or content == b"":  # httpx: no Content-Length of its own, only the default one
        content = b""
        head = [(b"Host", url.netloc)] + ([(b"Content-Length", b"0")] if method in ("POST", "PUT", "PATCH") else [])
        tail = []
    elif isinstance(content, bytes):
        head, tail = [(b"Host", url.netloc)], [(b"Content-Length", b"%d" % len(content))]
    else:
        return None
    for name, value in headers:
        if not (isinstance(name, bytes) and isinstance(value, bytes)) or name.lower() in _FRAMING:
            return None
    request = httpx.Request(method, url, headers=head + headers + tail, stream=httpx.ByteStream(content),
                            extensions=extensions)
    request.read()  # as httpx does for a body in memory: request.content is then set
    return request


class _Bound(httpx.AsyncByteStream):
    """httpx's own wrapper for a sent response's stream: ``elapsed`` is set on close."""

    def __init__(self, stream: httpx.AsyncByteStream, response: httpx.Response, start: float) -> None:
        self._stream = stream
        self._response = response
        self._start = start

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        self._response.elapsed = datetime.timedelta(seconds=time.perf_counter() - self._start)
        await self._stream.aclose()
