"""Send one request upstream and stream its answer back, for both the ingress and the egress.

The answer is relayed as raw bytes, chunk by chunk, while a watcher listens for the client
going away: a disconnect cancels the copy and closes the upstream connection at once, so
the upstream sees its request end too. A failure after the status line was sent becomes an
error event in the stream's own format (SSE) and the stream then ends cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from memory_proxy.server.errors import STREAM_SILENT, answer_too_long, error_response, stream_error_event
from memory_proxy.upstream.transport import arrived_body

log = logging.getLogger("memory_proxy")


class BodyTooLarge(Exception):
    pass


class AnswerTooLong(Exception):
    """The answer ran past ``memory_proxy.timeouts.total`` (a never-ending stream)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refusing (without reading further) past ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def stream_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body as it arrives, for bodies the proxy need not look at."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        if chunk:
            yield chunk


def upstream_failure(exc: Exception, what: str, timeout: float) -> Response:
    """Map a failed upstream exchange (before any answer byte) to the design's error table."""
    if isinstance(exc, BodyTooLarge):
        return error_response(413, "request body is larger than memory_proxy.max_body_bytes")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return error_response(503, f"{what} is not reachable (starting or restarting?); retry shortly")
    if isinstance(exc, httpx.TimeoutException):
        return error_response(504, f"{what} did not answer within {timeout:g} s")
    if closed_without_answer(exc):  # even after one retry on a fresh connection: it died under us
        return error_response(503, f"{what} closed the connection without answering (crashed or "
                                   "restarting?); retry shortly", code="upstream_disconnected")
    return error_response(502, f"{what} broke the protocol: {type(exc).__name__}")


def closed_without_answer(exc: Exception) -> bool:
    """The upstream closed or reset the connection before sending a byte of an answer."""
    return isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.CloseError)) or (
        isinstance(exc, httpx.RemoteProtocolError) and "disconnect" in str(exc).lower())


async def send_upstream(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send with the body still streaming in; a too-large body surfaces as BodyTooLarge.

    A kept-alive connection the upstream has just closed (uvicorn closes one after an
    unhandled exception, without ``Connection: close``) fails before any answer byte; a
    request whose body is in memory is then sent once more, on a fresh connection. A dead
    upstream refuses that second connection, so this never delays a 503."""
    try:
        try:
            return await client.send(request, stream=True)
        except httpx.TransportError as exc:
            if not (closed_without_answer(exc) and isinstance(request.stream, httpx.ByteStream)):
                raise
            log.info("%s %s: the connection closed before an answer (%s); sending once more",
                     request.method, request.url.path, exc)
            try:
                return await client.send(request, stream=True)
            except httpx.ConnectError:  # it went away meanwhile, maybe with the request: never held
                raise exc from None
    except httpx.TransportError as exc:  # httpx wraps errors raised by our body iterator
        cause = exc.__context__ or exc.__cause__
        if isinstance(cause, BodyTooLarge):
            raise cause from None
        raise


def stream_format(path: str, content_type: str) -> str | None:
    """``"anthropic"`` or ``"openai"`` for an SSE answer, None for anything else."""
    if not content_type.startswith("text/event-stream"):
        return None
    return "anthropic" if path.rstrip("/").endswith("/messages") else "openai"


STOPPED_MID_STREAM = "the memory proxy is stopping; the answer was cut"


def cancelled_by_stop(stopping: bool) -> bool:
    """Inside ``except CancelledError``: whether the cancellation is the server's shutdown alone
    (``stopping``: ``Runtime.stopping``; uvicorn cancels what is left after its grace). It is then
    taken back, so the request can still answer; otherwise it must be let through."""
    return stopping and asyncio.current_task().uncancel() == 0


async def end_stopped(send: Send, stream_format: str | None, unsent_head: Response | None = None) -> None:
    """End an answer the memory proxy's shutdown cut (both backends): the head of
    ``unsent_head`` if it was not sent yet, an error event in the stream's format (after a blank
    line, which ends a half-sent event), then the end of the body."""
    if unsent_head is not None:
        await send({"type": "http.response.start", "status": unsent_head.status_code,
                    "headers": unsent_head.raw_headers})
    if stream_format:
        event = stream_error_event(stream_format, STOPPED_MID_STREAM, 503)
        await send({"type": "http.response.body", "body": b"\n\n" + event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class RelayResponse(Response):
    """An upstream answer relayed unbuffered, with disconnect-driven cancellation."""

    def __init__(self, upstream: httpx.Response, headers: list[tuple[str, str]], *, path: str,
                 on_complete: Callable[[int, bool], None] | None = None,
                 deadline: float | None = None, total: float | None = None,
                 stopping: Callable[[], bool] | None = None) -> None:
        self.upstream = upstream
        self.stopping = stopping  # () -> the server is stopping (Runtime.stopping): its cancel ends the stream
        self.deadline = deadline  # time.monotonic() past which the answer is cut (timeouts.total)
        self.total = total
        self.status_code = upstream.status_code
        self.raw_headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
        self.background = None
        self.format = stream_format(path, upstream.headers.get("content-type", ""))
        self.on_complete = on_complete
        self.first_chunk_at: float | None = None  # time.perf_counter() when the first body chunk went out
        self.head_sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = arrived_body(self.upstream)
        if body is not None:  # the whole answer is here: nothing to watch or cancel
            try:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
            finally:
                await self.upstream.aclose()
                if self.on_complete:
                    self.on_complete(self.status_code, True)
            return
        # A plain asyncio task watches for the disconnect and cancels this one (an anyio task
        # group per response cost more than the rest of the relay; see docs/design.md).
        task = asyncio.current_task()
        gone = False

        async def watch_disconnect() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch_disconnect())
        completed = False
        try:
            completed = await self._copy(send)
        except asyncio.CancelledError:
            if not gone and cancelled_by_stop(self.stopping is not None and self.stopping()):
                # the server's shutdown, past its grace: end the stream cleanly
                await end_stopped(send, self.format, None if self.head_sent else self)
            elif not gone or task.uncancel() > 0:  # cancelled by someone else too: let it through
                raise
        finally:
            watcher.cancel()
            await self.upstream.aclose()  # never suspends for long: closing, not reading
            if self.on_complete:
                self.on_complete(self.status_code, completed)

    async def _copy(self, send: Send) -> bool:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        self.head_sent = True
        tail = b"\n\n"
        deadline = self.deadline
        try:
            async for chunk in self.upstream.aiter_raw():
                if chunk:
                    if self.first_chunk_at is None:
                        self.first_chunk_at = time.perf_counter()
                    tail = (tail + chunk)[-2:]
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    if deadline is not None and time.monotonic() > deadline:
                        raise AnswerTooLong
        except OSError:  # the client went away while we were sending
            return False
        except (httpx.HTTPError, anyio.BrokenResourceError, AnswerTooLong) as exc:
            log.warning("upstream stream broke after the answer started: %s", type(exc).__name__)
            if self.format:
                if isinstance(exc, AnswerTooLong):
                    status, message = 504, answer_too_long(self.total)
                elif isinstance(exc, httpx.TimeoutException):
                    status, message = 504, STREAM_SILENT
                else:
                    status, message = 502, f"the upstream stream broke: {type(exc).__name__}"
                event = stream_error_event(self.format, message, status)
                prefix = b"" if tail == b"\n\n" else b"\n\n"  # end a half-sent event first
                await send({"type": "http.response.body", "body": prefix + event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return False
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True
