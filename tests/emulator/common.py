"""What every emulated service shares: provider names, models, error shapes, and reading a
request (its JSON body, its key, the user texts in it)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse

OPENAI, ANTHROPIC = "openai", "anthropic"
KINDS = ("chat/completions", "messages", "responses", "embeddings", "models")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest", "text-embedding-3-small")


def parse_body(raw: bytes) -> Any:
    """A request body as recorded: parsed JSON, else the text, None when empty."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def state_of(request: Request):
    """The ``EmulatorState`` of the app serving ``request``."""
    return request.app.state.emulator


def error(provider: str, status: int, message: str) -> JSONResponse:
    """An error as OpenAI or Anthropic shape it."""
    if provider == ANTHROPIC:
        etype = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
                 500: "api_error"}.get(status, "invalid_request_error")
        return JSONResponse({"type": "error", "error": {"type": etype, "message": message}}, status)
    etype = {429: "requests", 500: "server_error"}.get(status, "invalid_request_error")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return JSONResponse({"error": {"message": message, "type": etype, "param": None, "code": code}}, status)


def authorized(headers: Headers, provider: str) -> bool:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return True
    return provider == ANTHROPIC and bool(headers.get("x-api-key", "").strip())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text" | "input_text", "text": ...}, ...]
        return " ".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def user_texts(items: Any) -> list[str]:
    if isinstance(items, str):  # Responses API: "input": "hello"
        return [items]
    items = items if isinstance(items, list) else []
    return [_text(m.get("content")) for m in items if isinstance(m, dict) and m.get("role") == "user"]


def tokens(texts: Iterable[str]) -> int:
    return max(1, sum(len(t.split()) for t in texts))
