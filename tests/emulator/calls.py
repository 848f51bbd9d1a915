"""One model call, as the provider answers it or Supermemory's router in front of it does:
the checks of each, a pending fault, the API's handler, then the router's headers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.emulator import anthropic_api, openai_api
from tests.emulator.common import ANTHROPIC, OPENAI, authorized, error, state_of, tokens, user_texts
from tests.emulator.state import STREAM_FAULTS, EmulatorState
from tests.emulator.streaming import broken_json

NO_USER_ID = "[SUPERMEMORY] No user ID found. Provide x-sm-user-id header, user field or userId query parameter"
HANDLERS = {"chat/completions": openai_api.chat_completions, "messages": anthropic_api.messages,
            "responses": openai_api.responses, "embeddings": openai_api.embeddings, "models": openai_api.models}


async def answer(st: EmulatorState, request: Request, kind: str, raw: bytes, *, memory: bool) -> Response:
    """Validate like the real service, apply a pending fault, then run the handler."""
    provider = ANTHROPIC if kind == "messages" else OPENAI
    if memory and not request.headers.get("x-supermemory-api-key"):
        return JSONResponse({"error": {"message": "[SUPERMEMORY] Missing x-supermemory-api-key header",
                                       "type": "authentication_error"}}, 401)
    if memory and not st.key_accepted(request.headers.get("x-supermemory-api-key")):
        return JSONResponse({"error": {"message": "[SUPERMEMORY] Invalid API key",
                                       "type": "authentication_error"}}, 401)
    if not authorized(request.headers, provider):
        return error(provider, 401, "Missing or invalid API key")
    body: Any = {}
    if request.method != "GET":
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error(provider, 400, "Request body is not a valid JSON object")
    user = None
    if memory:
        body_user = body.get("user") if isinstance(body.get("user"), str) else None
        user = request.headers.get("x-sm-user-id") or body_user or request.query_params.get("userId")
        if not user:
            return JSONResponse({"error": {"message": NO_USER_ID, "type": "invalid_request_error"}}, 400)
        if conversation := request.headers.get("x-sm-conversation-id"):
            st.conversations.setdefault(user, []).append(conversation)
        remembered = len(st.memories.get(user, []))  # before this request adds to them
    fault = st.take_fault()
    mode = fault["mode"] if fault else None
    if mode == "slow":
        await asyncio.sleep(fault["delay"])
    elif mode and mode.startswith("error_"):
        return error(provider, int(mode[-3:]), f"Emulated fault: {mode}")
    elif mode == "invalid_json":
        return Response(b"{not json", media_type="application/json")
    elif mode in STREAM_FAULTS and not (kind in ("chat/completions", "messages", "responses")
                                        and body.get("stream") is True):
        return broken_json(st, request, fault)
    response = await HANDLERS[kind](st, request, body, user, fault)
    if mode == "memory_error" and memory:
        # Supermemory still answers when it cannot add memory, and says so in a header only.
        response.headers["x-supermemory-error"] = "Emulated fault: memory store unavailable"
    elif memory:  # the Memory Router's documented diagnostic headers
        texts = user_texts(body.get("messages") or body.get("input"))
        response.headers.update({
            "x-supermemory-context-modified": "true" if remembered else "false",
            "x-supermemory-chunks-retrieved": str(remembered),
            "x-supermemory-chunks-created": str(len([t for t in texts if t])),
            "x-supermemory-tokens-processed": str(tokens(texts)),
            "x-supermemory-conversation-id": request.headers.get("x-sm-conversation-id") or f"conv-{user}"})
    return response


def provider_endpoint(kind: str):
    """A provider's own endpoint for ``kind`` (one of ``common.KINDS``)."""
    async def endpoint(request: Request) -> Response:
        st = state_of(request)
        raw = await st.record(request)
        return await answer(st, request, kind, raw, memory=False)
    return endpoint
