"""OpenAI's API: chat completions, the Responses API, embeddings and the model list.

Each handler takes (state, request, body, user id or None, fault or None); a user id means
the call came through Supermemory's router, whose memory the reply then uses."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import JSONResponse, Response

from tests.emulator.common import MODELS, tokens, user_texts
from tests.emulator.streaming import paced, pieces, sse, stream


def chat(st, body: dict, user: str | None) -> tuple[dict, str, dict]:
    """(id/created/model, reply text, usage) of one chat completion."""
    texts = user_texts(body.get("messages"))
    text = st.store.converse(texts, user)
    p, c = tokens(texts), tokens([text])
    head = {"id": f"chatcmpl-emu{next(st.ids)}", "created": int(time.time()), "model": body.get("model") or MODELS[0]}
    return head, text, {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def chat_json(head: dict, text: str, usage: dict) -> JSONResponse:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


async def chat_completions(st, request, body, user, fault) -> Response:
    head, text, usage = chat(st, body, user)
    if body.get("stream") is not True:
        return chat_json(head, text, usage)

    def chunk(delta: dict, finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse(None, {**head, "object": "chat.completion.chunk", "choices": [choice]})

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in paced(*pieces(st, text, fault)):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield sse(None, {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"
    return stream(st, request, events())


async def responses(st, request, body, user, fault) -> Response:
    texts = user_texts(body.get("input"))
    text = st.store.converse(texts, user)
    n = next(st.ids)
    p, c = tokens(texts), tokens([text])
    part = {"type": "output_text", "text": text, "annotations": []}
    item = {"type": "message", "id": f"msg_emu{n}", "status": "completed", "role": "assistant", "content": [part]}

    def response(status: str, output: list) -> dict:
        usage = {"input_tokens": p, "output_tokens": c, "total_tokens": p + c} if status == "completed" else None
        return {"id": f"resp_emu{n}", "object": "response", "created_at": int(time.time()), "status": status,
                "model": body.get("model") or MODELS[0], "output": output, "usage": usage, "error": None,
                "incomplete_details": None, "instructions": body.get("instructions"),
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    if body.get("stream") is not True:
        return JSONResponse(response("completed", [item]))

    async def events() -> AsyncIterator[str]:
        seq = itertools.count()
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}

        def event(name: str, **fields: Any) -> str:
            return sse(name, {"type": name, "sequence_number": next(seq), **fields})
        yield event("response.created", response=response("in_progress", []))
        yield event("response.output_item.added", output_index=0,
                    item={**item, "status": "in_progress", "content": []})
        yield event("response.content_part.added", **where, part={**part, "text": ""})
        async for piece in paced(*pieces(st, text, fault)):
            yield event("response.output_text.delta", **where, delta=piece)
        yield event("response.output_text.done", **where, text=text)
        yield event("response.content_part.done", **where, part=part)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=response("completed", [item]))
    return stream(st, request, events())


async def embeddings(st, request, body, user, fault) -> Response:
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])

    def vector(text: str) -> list[float]:  # deterministic, 8 floats in [-1, 1]
        return [round(b / 127.5 - 1, 4) for b in hashlib.sha256(text.encode()).digest()[:8]]
    data = [{"object": "embedding", "index": i, "embedding": vector(str(x))} for i, x in enumerate(inputs)]
    count = tokens(str(x) for x in inputs)
    return JSONResponse({"object": "list", "data": data, "model": body.get("model") or MODELS[3],
                         "usage": {"prompt_tokens": count, "total_tokens": count}})


async def models(st, request, body, user, fault) -> Response:
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "emulator"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data})
