"""The HTTP/1.1 transport under the proxy's httpx clients (memory_proxy/upstream/transport.py),
against scripted servers on loopback: framing, keep-alive, streaming both ways, errors."""

from __future__ import annotations

import asyncio
import http.cookiejar
import time

import httpx
import pytest

from memory_proxy.upstream.transport import AsyncClient, Transport


class Server:
    """A loopback server whose connection handler is the test's; counts connections."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Server:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(self, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        body = b""
        lower = head.lower()
        if b"content-length:" in lower:
            length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
        elif b"transfer-encoding: chunked" in lower:
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                body += (await reader.readexactly(size + 2))[:-2]
                if size == 0:
                    break
        self.requests.append(head + body)
        return head + body


def answer(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%b\r\n%b" % (len(body), extra, body)


async def keep_answering(server: Server, reader, writer) -> None:
    while True:
        await server.read_request(reader)
        writer.write(answer(b"hello"))
        await writer.drain()


def run(coro):
    return asyncio.run(coro)


def client(**kwargs) -> AsyncClient:
    return AsyncClient(transport=Transport(limits=kwargs.pop("limits", None)), trust_env=False,
                       timeout=kwargs.pop("timeout", 5), **kwargs)


def test_keep_alive_reuses_one_connection_and_keeps_the_raw_path():
    async def main():
        async with Server(keep_answering) as server, client() as c:
            for _ in range(3):
                r = await c.post(server.url + "/v3/http://x//y%2Fz?a=%2F&b", content=b"{}")
                assert (r.status_code, r.content) == (200, b"hello")
            assert server.connections == 1
            assert server.requests[0].startswith(b"POST /v3/http://x//y%2Fz?a=%2F&b HTTP/1.1\r\n")
    run(main())


def test_no_header_is_added_and_order_is_kept():
    async def main():
        async with Server(keep_answering) as server, client() as c:
            await c.post(server.url + "/x", content=b"abc", headers=[("x-b", "1"), ("x-a", "2"), ("x-b", "3")])
            head = server.requests[0].split(b"\r\n\r\n")[0].lower().split(b"\r\n")[1:]
            names = [line.split(b":")[0] for line in head]
            assert names == [b"host", b"x-b", b"x-a", b"x-b", b"content-length"]  # as httpx built them
    run(main())


def test_chunks_are_handed_on_as_they_arrive():
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n")
        for i in range(3):
            writer.write(b"%x\r\ndata: %d\n\n\r\n" % (len(b"data: 0\n\n"), i))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")

    async def main():
        async with Server(handler) as server, client() as c:
            start, seen = time.monotonic(), []
            async with c.stream("GET", server.url + "/s") as r:
                async for chunk in r.aiter_raw():
                    seen.append((round(time.monotonic() - start, 1), chunk))
            assert [c for _, c in seen] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]
            assert seen[0][0] < 0.05 and seen[2][0] >= 0.2  # not buffered to the end
    run(main())


def test_body_until_close_and_connection_close_are_not_reused():
    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    async def main():
        async with Server(handler) as server, client() as c:
            assert (await c.get(server.url + "/a")).content == b"all of it"
            assert (await c.get(server.url + "/b")).content == b"all of it"
            assert server.connections == 2
    run(main())


def test_upstream_closing_without_answer_or_mid_body_is_a_protocol_error():
    async def silent(server, reader, writer):
        await server.read_request(reader)

    async def cut(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
        await writer.drain()

    async def main():
        async with Server(silent) as server, client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected"):
                await c.get(server.url + "/")
        async with Server(cut) as server, client() as c:
            with pytest.raises(httpx.RemoteProtocolError, match="peer closed"):
                await c.get(server.url + "/")
    run(main())


def test_timeouts_and_refused_connections():
    async def slow(server, reader, writer):
        await server.read_request(reader)
        await asyncio.sleep(2)

    async def main():
        async with Server(slow) as server, client(timeout=httpx.Timeout(0.2)) as c:
            start = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await c.get(server.url + "/")
            assert time.monotonic() - start < 1
        server_gone = server.port
        async with client() as c:
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://127.0.0.1:{server_gone}/")
    run(main())


def test_streamed_request_body_goes_out_chunked_and_its_errors_surface_as_they_are():
    class Refused(Exception):
        pass

    async def main():
        async with Server(keep_answering) as server, client() as c:
            async def parts():
                yield b"first "
                await asyncio.sleep(0.01)
                yield b"second"
            r = await c.post(server.url + "/upload", content=parts())
            assert r.status_code == 200
            assert server.requests[0].endswith(b"\r\n\r\nfirst second")
            assert b"transfer-encoding: chunked" in server.requests[0].lower()

            r = await c.post(server.url + "/form", files={"f": ("a.txt", b"file data")})  # length known: as is
            assert r.status_code == 200 and b"file data" in server.requests[1]
            assert b"transfer-encoding" not in server.requests[1].lower()

            async def too_big():
                yield b"x"
                raise Refused
            with pytest.raises(Refused):
                await c.post(server.url + "/upload", content=too_big())
    run(main())


def test_informational_answers_are_skipped_and_head_does_not_wait_for_a_body():
    async def handler(server, reader, writer):
        while True:
            request = await server.read_request(reader)
            if request.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"after 100"))
            await writer.drain()

    async def main():
        async with Server(handler) as server, client() as c:
            assert (await c.post(server.url + "/", content=b"x")).content == b"after 100"
            r = await c.head(server.url + "/")
            assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "1234"
    run(main())


def test_a_stream_closed_early_closes_its_connection():
    closed = asyncio.Event()

    async def handler(server, reader, writer):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await reader.read()  # until the client closes
        closed.set()

    async def main():
        async with Server(handler) as server, client() as c:
            async with c.stream("GET", server.url + "/") as r:
                async for _ in r.aiter_raw():
                    break
            await asyncio.wait_for(closed.wait(), 2)  # the upstream saw the request end
    run(main())


def test_idle_connections_expire_and_crlf_in_headers_is_refused():
    async def main():
        async with Server(keep_answering) as server, client(limits=httpx.Limits(keepalive_expiry=0.1)) as c:
            await c.get(server.url + "/")
            await asyncio.sleep(0.3)
            await c.get(server.url + "/")
            assert server.connections == 2
            with pytest.raises(httpx.LocalProtocolError):
                request = httpx.Request("GET", server.url + "/", headers={"x-evil": "a"})
                request.headers._list.append((b"x-evil", b"x-evil", b"a\r\nx-injected: 1"))
                await c.send(request)
    run(main())


def test_cookies_go_through_httpx_jar_with_its_policy():
    async def handler(server, reader, writer):
        while True:
            await server.read_request(reader)
            writer.write(answer(b"c", extra=b"set-cookie: cf_clearance=abc; Path=/\r\n"))
            await writer.drain()

    class NoCookies(http.cookiejar.DefaultCookiePolicy):
        def set_ok(self, cookie, request):
            return False

    async def main():
        async with Server(handler) as server:
            async with client(cookies=http.cookiejar.CookieJar()) as c:
                await c.get(server.url + "/")
                await c.get(server.url + "/")
                assert b"cookie: cf_clearance=abc" in server.requests[1].lower()
                assert {cookie.name for cookie in c.cookies.jar} == {"cf_clearance"}
            async with client(cookies=http.cookiejar.CookieJar(NoCookies())) as c:
                await c.get(server.url + "/")
                await c.get(server.url + "/")
                assert b"cookie:" not in server.requests[3].lower()
                assert not list(c.cookies.jar)
    run(main())


def test_short_way_builds_the_request_httpx_builds():
    c = client()
    url = httpx.URL("http://127.0.0.1:8765/v1/chat/completions?a=%2F")
    headers = [(b"content-type", b"application/json"), (b"user-agent", b"Jos\xe9"), (b"x-b", b"1"), (b"x-b", b"2")]
    for method, content in [("POST", b'{"a": 1}'), ("POST", None), ("GET", None), ("DELETE", None), ("put", b""),
                            ("DELETE", b"x")]:
        ours = c.build_request(method, url, headers=list(headers), content=content)
        theirs = httpx.Request(method, url, headers=list(headers), content=content,
                               extensions={"timeout": c.timeout.as_dict()})
        assert (ours.method, ours.url, ours.headers.raw, ours.content, ours.extensions) == (
            theirs.method, theirs.url, theirs.headers.raw, theirs.content, theirs.extensions)
    # A caller's own Host or framing header: httpx's way, which keeps it.
    built = c.build_request("POST", url, headers=[(b"host", b"elsewhere")], content=b"x")
    assert built.headers.raw[0] == (b"host", b"elsewhere")


def test_an_answer_that_arrived_whole_is_taken_at_once():
    from memory_proxy.upstream.transport import arrived_body

    async def whole_then_slow(server: Server, reader, writer) -> None:
        await server.read_request(reader)
        writer.write(answer(b"all here"))
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.write(b"cd")
        await server.read_request(reader)

    async def main():
        async with Server(whole_then_slow) as server, client() as c:
            r = await c.send(c.build_request("GET", httpx.URL(server.url + "/a")), stream=True)
            assert arrived_body(r) == b"all here"
            await r.aclose()
            r = await c.send(c.build_request("GET", httpx.URL(server.url + "/b")), stream=True)
            assert arrived_body(r) is None  # half of it is still to come: streamed as usual
            assert b"".join([chunk async for chunk in r.aiter_raw()]) == b"abcd"
            await r.aclose()
            assert server.connections == 1
    run(main())


def test_coalesce_sends_one_loop_pass_of_writes_as_one():
    from memory_proxy.server.http_protocol import Coalesce

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def get_write_buffer_size(self) -> int:
            return 0

        def close(self) -> None:
            self.closed = True

        def get_extra_info(self, name: str):
            return ("127.0.0.1", 1) if name == "peername" else None

    async def main():
        raw = Recorder()
        t = Coalesce(raw, asyncio.get_running_loop())
        t.write(b"head")
        t.write(b"")
        t.write(b"body")
        assert raw.writes == [] and t.get_write_buffer_size() == 8
        await asyncio.sleep(0)
        assert raw.writes == [b"headbody"]
        t.write(b"last")
        t.close()  # what is held goes first
        assert raw.writes == [b"headbody", b"last"] and raw.closed
        await asyncio.sleep(0)
        assert raw.writes == [b"headbody", b"last"]
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
    run(main())
