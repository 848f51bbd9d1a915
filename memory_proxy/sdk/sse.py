"""LiteLLM's stream objects as server-sent events, in the client's API shape."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from memory_proxy.server.errors import STREAM_SILENT, answer_too_long, stream_error_event
from memory_proxy.server.relay import cancelled_by_stop, end_stopped

log = logging.getLogger("memory_proxy")



def _injected_usage_chunk(chunk: Any) -> bool:
    """The usage-only chunk a stream ends with when ``include_usage`` was asked for on the
    client's behalf (the LiteLLM proxy's ``_is_injected_stream_usage_artifact``)."""
    choices = getattr(chunk, "choices", None)
    if choices is None or getattr(chunk, "provider_specific_fields", None) is not None:
        return False
    for choice in choices:
        if choice.finish_reason is not None or getattr(choice, "logprobs", None) is not None:
            return False
        delta = getattr(choice, "delta", None)
        if delta is not None and any(v is not None for v in delta.model_dump().values()):
            return False
    return True


class SseAnswer:
    """A LiteLLM stream as SSE in the stream's own format, as the LiteLLM proxy writes it:
    chat chunks as ``data: {...}`` ending in ``data: [DONE]``, Anthropic events passed on
    with ``message_start`` restamped to the requested model name. The first event is awaited
    before answering, so a failure before any byte is still a JSON error with its status."""

    def __init__(self, result: Any, route_type: str, requested: str | None, *, strip_usage: bool = False,
                 logging_obj: Any = None) -> None:
        self.result = result
        # LiteLLM's logging object of the call (the handler made it); chat streams carry it too
        self.logging_obj = logging_obj if logging_obj is not None else getattr(result, "logging_obj", None)
        self.strip_usage = strip_usage
        self.format = "anthropic" if route_type == "anthropic_messages" else "openai"
        self.requested = requested
        self.iterator = result.__aiter__()
        self.restamper = None
        if self.format == "anthropic" and requested:
            from litellm.proxy.anthropic_endpoints.streaming_model_restamp import AnthropicStreamModelRestamper

            self.restamper = AnthropicStreamModelRestamper(requested)

    async def first(self) -> bytes | None:
        """The first event's bytes; None for a stream without any."""
        try:
            return self.encode(await self.iterator.__anext__())
        except StopAsyncIteration:
            return None

    def encode(self, chunk: Any) -> bytes:
        if self.strip_usage and _injected_usage_chunk(chunk):
            return b""
        if self.restamper is not None:
            chunk = self.restamper.process(chunk)
        if self.format == "openai" and hasattr(chunk, "model_dump_json"):
            if self.requested and getattr(chunk, "model", None) is not None:
                chunk.model = self.requested  # the public name, as the proxy restamps it
            return b"data: " + chunk.model_dump_json(exclude_none=True, exclude_unset=True).encode() + b"\n\n"
        if isinstance(chunk, dict):
            if self.format == "anthropic":
                return f"event: {chunk.get('type')}\ndata: {json.dumps(chunk)}\n\n".encode()
            return f"data: {json.dumps(chunk)}\n\n".encode()
        if isinstance(chunk, str):
            chunk = chunk.encode()
        return bytes(chunk)

    def error_event(self, exc: Exception) -> bytes:
        """A failure after the answer started, in the frame the LiteLLM proxy sends for it."""
        if self.format == "anthropic":
            from litellm.anthropic_interface.exceptions import anthropic_error_sse_frame

            status = getattr(exc, "status_code", 500)
            return str(anthropic_error_sse_frame(status if isinstance(status, int) else 500,
                                                 getattr(exc, "message", str(exc)))).encode()
        from litellm.proxy._types import ProxyException

        error = ProxyException(message=getattr(exc, "message", str(exc)), type=getattr(exc, "type", "None"),
                               param=getattr(exc, "param", "None"), code=getattr(exc, "status_code", 500))
        return f"data: {json.dumps({'error': error.to_dict()})}\n\n".encode()

    async def body(self, first: bytes | None, read_timeout: float, done, deadline: float,
                   total: float) -> AsyncIterator[bytes]:
        """The events; cut with an error event after ``read_timeout`` of silence or past
        ``deadline`` (``timeouts.total`` after admission), as binary mode's relay does."""
        completed = broke = False
        try:
            if first is None:
                completed = True
            else:
                yield first
                while True:
                    with anyio.move_on_after(read_timeout) as gap:
                        try:
                            chunk = await self.iterator.__anext__()
                        except StopAsyncIteration:
                            break
                        except Exception as exc:  # LiteLLM's stream wrapper has logged the failure itself
                            # The LiteLLM proxy ends such a stream with an error event and counts it
                            # complete (binary mode's relay sees a stream that ended): so does this.
                            broke = completed = True
                            log.warning("LiteLLM stream broke after the answer started: %s", type(exc).__name__)
                            yield self.error_event(exc)
                            return
                    if gap.cancelled_caught:  # as binary mode's relay reports a read timeout
                        yield stream_error_event(self.format, STREAM_SILENT, 504)
                        return
                    if piece := self.encode(chunk):
                        yield piece
                    if time.monotonic() > deadline:
                        yield stream_error_event(self.format, answer_too_long(total), 504)
                        return
                if self.restamper is not None and (held := self.restamper.flush()):
                    yield held
                completed = True
            if self.format == "openai":
                yield b"data: [DONE]\n\n"
        finally:
            done(200, completed)
            if broke or not completed:  # the client went away, the stream was cut or broke: close its upstream now
                await self.end_unfinished(cut=not broke)

    async def end_unfinished(self, *, cut: bool) -> None:
        """End a stream that did not finish as the LiteLLM proxy ends one
        (``finalize_streaming_generator_cleanup``), then close its upstream. ``cut``: the client
        went away, or the proxy cut the stream (binary mode's relay closing its connection to
        LiteLLM looks the same to LiteLLM): LiteLLM's callbacks get the call with error code 499
        and what was streamed until then (its partial-spend billing), as they do in binary mode;
        without this no callback hears of it at all."""
        try:
            from litellm.proxy.common_request_processing import ProxyBaseLLMRequestProcessing

            finalize = ProxyBaseLLMRequestProcessing.finalize_streaming_generator_cleanup
        except (ImportError, AttributeError):
            await close_result(self.result)
            return
        request_data = {"litellm_logging_obj": self.logging_obj}
        with anyio.CancelScope(shield=True):
            try:
                await finalize(request=None, request_data=request_data, response=self.result,
                               stream_completed=not cut, client_disconnected=cut)
            except Exception as exc:
                log.warning("ending an unfinished LiteLLM stream failed: %s", type(exc).__name__)
                await close_result(self.result)


async def close_result(result: Any) -> None:
    close = getattr(result, "aclose", None)
    if close is not None:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await close()


class SseResponse(StreamingResponse):
    """An ``SseAnswer``'s events as Starlette streams them. When the server's shutdown cancels
    the stream past its grace (``stopping()``: ``Runtime.stopping``), the stream ends with an
    error event in its format and a clean end, as binary mode's relay ends it, instead of a cut
    and a traceback; ``SseAnswer.body`` has recorded it (not completed) and closed LiteLLM's call."""

    def __init__(self, events: AsyncIterator[bytes], stream_format: str, stopping: Callable[[], bool],
                 headers: dict[str, str]) -> None:
        super().__init__(events, 200, headers=headers, media_type="text/event-stream; charset=utf-8")
        self.stream_format = stream_format
        self.stopping = stopping
        self.head_sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            self.head_sent = self.head_sent or message["type"] == "http.response.start"
            await send(message)

        try:
            await super().__call__(scope, receive, sending)
        except asyncio.CancelledError:
            # (A client that left ends Starlette's stream without a cancellation reaching here.)
            if not cancelled_by_stop(self.stopping()):
                raise
            await end_stopped(send, self.stream_format, None if self.head_sent else self)
