"""Streamed answers: server-sent events, paced chunks, the stream faults, and counting the
streams that are open and the clients that walked away from one."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse

STAMP_EVENTS = False  # --stamp-events: the benchmark times each chunk from the moment it was sent


class AbortStream(Exception):
    """Raised inside a body generator: the server then drops the connection mid-response."""


def sse(event: str | None, data: Any) -> str:
    if STAMP_EVENTS and isinstance(data, dict):
        data = {**data, "emulator_sent": time.monotonic()}  # CLOCK_MONOTONIC: one clock per machine
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def _then_abort(pieces: list[str]) -> Iterable[str]:
    yield from pieces
    raise AbortStream("emulated connection drop")


def pieces(st, text: str, fault: dict | None) -> tuple[Iterable[str], float]:
    """Content pieces of a streamed reply and the pause between them, as shaped by a fault."""
    mode = fault["mode"] if fault else None
    if mode == "endless_stream":
        return itertools.repeat("tick "), fault["delay"]
    parts = _split(text, st.chunks)
    if mode == "close_mid_stream":
        return _then_abort(parts[:2]), st.chunk_delay
    return parts, st.chunk_delay


async def paced(parts: Iterable[str], delay: float) -> AsyncIterator[str]:
    for i, piece in enumerate(parts):
        if i:
            await asyncio.sleep(delay)
        yield piece


async def _track(st, request: Request, body: AsyncIterator[str]) -> AsyncIterator[str]:
    """Count a streaming body as active and notice when its client goes away.

    Under uvicorn, Starlette cancels the body when the client disconnects (CancelledError
    here); the is_disconnected() check between items covers servers that do not.
    """
    st.active_streams += 1
    try:
        async for item in body:
            if await request.is_disconnected():
                st.client_disconnects += 1
                return
            yield item
    except (asyncio.CancelledError, GeneratorExit, OSError):
        st.client_disconnects += 1
        raise
    finally:
        st.active_streams -= 1


def stream(st, request: Request, events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_track(st, request, events), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


def broken_json(st, request: Request, fault: dict) -> StreamingResponse:
    """A JSON answer that never completes: cut off, or padded with whitespace forever."""
    async def body() -> AsyncIterator[str]:
        yield '{"id": "emulated", '
        if fault["mode"] == "close_mid_stream":
            raise AbortStream("emulated connection drop")
        while True:
            await asyncio.sleep(fault["delay"])
            yield " "
    return StreamingResponse(_track(st, request, body()), media_type="application/json")
