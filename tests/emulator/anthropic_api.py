"""Anthropic's Messages API, with its prompt-cache token counts. The handler takes the same
arguments as those of ``openai_api``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.emulator.common import MODELS, tokens, user_texts
from tests.emulator.streaming import paced, pieces, sse, stream

CACHE_WRITE, CACHE_READ = 5, 7  # prompt-cache tokens reported for a request with cache_control


def _cache_usage(body: dict) -> dict:
    """Anthropic's prompt-cache counts, apart from ``input_tokens``, when a block of the request
    asks for caching (``cache_control``): fixed figures, so tests know what to expect."""
    return {"cache_creation_input_tokens": CACHE_WRITE, "cache_read_input_tokens": CACHE_READ} \
        if '"cache_control"' in json.dumps(body.get("system")) + json.dumps(body.get("messages")) else {}


async def messages(st, request, body, user, fault) -> Response:
    texts = user_texts(body.get("messages"))
    text = st.store.converse(texts, user)
    p, c = tokens(texts), tokens([text])
    cache = _cache_usage(body)
    message = {"id": f"msg_emu{next(st.ids)}", "type": "message", "role": "assistant",
               "model": body.get("model") or MODELS[2], "stop_sequence": None}
    if body.get("stream") is not True:
        return JSONResponse({**message, "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                             "usage": {"input_tokens": p, "output_tokens": c, **cache}})

    def event(name: str, **fields: Any) -> str:
        return sse(name, {"type": name, **fields})

    async def events() -> AsyncIterator[str]:
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": p, "output_tokens": 1, **cache}}
        yield event("message_start", message=start)
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield event("ping")
        async for piece in paced(*pieces(st, text, fault)):
            yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        yield event("content_block_stop", index=0)
        yield event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                    usage={"output_tokens": c})
        yield event("message_stop")
    return stream(st, request, events())
