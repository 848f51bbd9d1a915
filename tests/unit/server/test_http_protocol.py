"""The uvicorn protocol subclass byte for byte, without sockets: bytes in through
``data_received``, bytes out of a transport that records what it is given."""

from __future__ import annotations

import asyncio
import json

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from memory_proxy.server.http_protocol import Coalesce, protocol_class
from tests.support.servers import receive_body

LIMIT = 4096  # memory_proxy.max_header_bytes of these tests


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = self.eof = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8764)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def echo(scope, receive, send):
    body = await receive_body(receive)
    names = sorted(n.decode() for n, _ in scope["headers"])
    text = json.dumps({"method": scope["method"], "path": scope["path"], "body": body.decode(),
                       "headers": names}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


async def exchange(*pieces: bytes) -> tuple[bytes, RecordingTransport, list[bytes]]:
    """Feed ``pieces`` one loop pass apart; return everything written, the transport and the writes."""
    loop = asyncio.get_running_loop()
    cls = protocol_class(LIMIT)
    config = Config(app=echo, http=cls, ws="none", lifespan="off", log_level="critical")
    config.load()
    protocol = cls(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    for piece in pieces:
        protocol.data_received(piece)
        for _ in range(5):
            await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    return b"".join(transport.written), transport, transport.written


def answers(raw: bytes) -> list[dict]:
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        found.append(json.loads(rest[:length]))
        raw = rest[length:]
    return found


def offer(body: bytes, connection: str = "Upgrade, HTTP2-Settings") -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n"
            f"Content-Length: {len(body)}\r\nHTTP2-Settings: AAMAAABkAARAAAAA\r\nUpgrade: h2c\r\n"
            "Content-Type: application/json\r\n\r\n").encode()


@pytest.mark.parametrize("cut", [None, "after head", 10, 150])
def test_an_h2c_offer_is_served_as_http11_with_its_body(cut):
    body = b'{"model": "m", "messages": []}'
    data = offer(body) + body
    position = {None: len(data), "after head": len(offer(body))}.get(cut, cut)
    raw, transport, _ = asyncio.run(exchange(*filter(None, (data[:position], data[position:]))))
    [got] = answers(raw)
    assert got["body"] == body.decode() and got["method"] == "POST"
    assert "upgrade" not in got["headers"] and "http2-settings" not in got["headers"]
    assert "connection" not in got["headers"] and not transport.closed  # kept alive


def test_the_connection_header_keeps_its_other_tokens():
    raw, _, _ = asyncio.run(exchange(offer(b"{}", "keep-alive, Upgrade, HTTP2-Settings") + b"{}"))
    [got] = answers(raw)
    assert "connection" in got["headers"] and got["body"] == "{}"


def test_offers_and_plain_requests_in_one_piece():
    plain = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    raw, _, _ = asyncio.run(exchange(offer(b"[1]") + b"[1]" + plain + offer(b"[2]") + b"[2]"))
    assert [(a["path"], a["body"]) for a in answers(raw)] == [
        ("/v1/chat/completions", "[1]"), ("/v1/models", ""), ("/v1/chat/completions", "[2]")]


def test_an_unparsable_request_gets_a_json_400_and_a_half_close():
    raw, transport, _ = asyncio.run(exchange(b"GET /v1/mo dels HTTP/1.1\r\nHost: x\r\n\r\n"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "invalid_http"
    assert transport.eof


def test_a_head_over_the_limit_is_431_as_soon_as_it_is_over():
    head = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 30_000
    raw, _, _ = asyncio.run(exchange(head[:10_000], head[10_000:]))
    status, _, body = raw.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431") and json.loads(body)["error"]["code"] == "headers_too_large"


def test_an_answer_that_arrived_whole_leaves_in_one_write():
    _, _, writes = asyncio.run(exchange(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
    assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200")


def test_coalesce_holds_writes_until_the_end_of_the_loop_pass():
    async def scenario():
        transport = RecordingTransport()
        held = Coalesce(transport, asyncio.get_running_loop())
        held.write(b"a")
        held.write(b"b")
        before = list(transport.written)
        await asyncio.sleep(0)
        return before, transport.written

    before, after = asyncio.run(scenario())
    assert before == [] and after == [b"ab"]
