"""The fast protocol: ordinary chat completions answered inside uvicorn's HTTP protocol."""

from __future__ import annotations

import functools
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tests.emulator.common import OPENAI, authorized, parse_body
from tests.emulator.openai_api import chat, chat_json
from tests.emulator.state import EmulatorState


class FastChatProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, answering an ordinary chat completion itself.

    An ordinary chat completion (POST /v1/chat/completions with a bearer key and a JSON object,
    not streamed, no fault pending) is answered here, from the parsed request, without an ASGI
    request cycle, a task or Starlette; uvicorn's per-request machinery costs more than the
    answer itself. It is what lets the benchmark's direct path run several times faster than
    anything proxied, as the load generator's headroom must show. Same answer bytes, same record
    (the same functions build both; ``tests/unit/test_emulator.py`` compares both ways); anything
    else, or a request that turns out not to be ordinary once its body is in, goes through
    ``app`` as usual. Every emulator server runs it, behind a proxy as well as directly.
    """

    def __init__(self, *args: Any, emulator: EmulatorState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.emulator = emulator
        self.fast_body: list[bytes] | None = None  # the body so far, while a request may be answered here

    def on_headers_complete(self) -> None:
        path = self.url.partition(b"?")[0]
        if (path == b"/v1/chat/completions" and self.parser.get_method() == b"POST" and self.emulator.fault is None
                and not self.expect_100_continue and not self.parser.should_upgrade()
                and (self.cycle is None or self.cycle.response_complete)):
            self.fast_body = []
        else:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self.fast_body is None:
            return super().on_body(body)
        self.fast_body.append(body)

    def on_message_complete(self) -> None:
        if self.fast_body is None:
            return super().on_message_complete()
        raw = b"".join(self.fast_body)
        body = parse_body(raw)
        scope = {"method": "POST", "path": "/v1/chat/completions", "query_string": self.url.partition(b"?")[2],
                 "headers": self.headers}
        st = self.emulator
        self.fast_body = None
        if not isinstance(body, dict) or body.get("stream") is True or st.fault is not None \
                or not authorized(Headers(scope=scope), OPENAI):
            super().on_headers_complete()  # the app's turn after all, with the body as read
            self.cycle.body = raw
            return super().on_message_complete()
        st.log(scope, raw)
        response = chat_json(*chat(st, body, None))
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        head = [b"HTTP/1.1 200 OK\r\n"]
        for name, value in [*self.server_state.default_headers, *response.raw_headers]:
            head += [name, b": ", value, b"\r\n"]
        head.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + response.body)
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # uvicorn's bookkeeping: keep-alive timer, reading resumed


def fast_chat_protocol(app: Starlette):
    """The ``http`` protocol factory for ``uvicorn.Config`` serving ``app`` (see FastChatProtocol)."""
    return functools.partial(FastChatProtocol, emulator=app.state.emulator)
