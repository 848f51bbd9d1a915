"""Offline emulator of the outside world, for the tests and the benchmark.

One Starlette app plays OpenAI, Anthropic, the Supermemory Memory Router and the slice of
Supermemory's Memory API (v5, ``/ns/{namespace}/...``) that ``start_proxies.py memory`` uses,
over one per-user-id memory store, with Cloudflare in front of both; it records every request
and can inject faults, so the real ``litellm`` binary and the memory proxy can run without
network access.

    python -m tests.emulator --host 127.0.0.1 --port 8999 [--chunk-delay 0.02]
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import json
import logging
import marshal
import re
import secrets
import signal
import socket
import time
from array import array
from collections.abc import AsyncIterator, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

OPENAI, ANTHROPIC = "openai", "anthropic"
KINDS = ("chat/completions", "messages", "responses", "embeddings", "models")
STREAM_FAULTS = ("close_mid_stream", "endless_stream")
FAULT_MODES = ("slow", "error_500", "error_429", "error_400", "invalid_json", "memory_error") + STREAM_FAULTS
DEFAULT_FAULT_DELAY = {"slow": 1.0, "endless_stream": 0.05}
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku-latest", "text-embedding-3-small")
CACHE_WRITE, CACHE_READ = 5, 7  # prompt-cache tokens reported for a request with cache_control
NO_USER_ID = "[SUPERMEMORY] No user ID found. Provide x-sm-user-id header, user field or userId query parameter"
ASKS_NAME = re.compile(r"what is my name", re.I)
TELLS_NAME = re.compile(r"my name is (\w+)", re.I)


class AbortStream(Exception):
    """Raised inside a body generator: the server then drops the connection mid-response."""


class RequestLog:
    """Every request an emulator process received, as raw tuples packed into one buffer.

    A list of records, however plain, makes each full garbage collection touch every record
    (the list is traversed element by element): after a few hundred thousand requests that is
    a pause of 20-50 ms, which the benchmark then measured as the tail latency of whatever
    sits in front of the emulator. A ``bytearray`` and an ``array`` hold no Python objects,
    so there is nothing per record for the collector to visit, and they take a fraction of the
    memory."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._data = bytearray()
        self._ends = array("Q")

    def append(self, record: tuple) -> None:
        self._data += marshal.dumps(record)
        self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def since(self, first: int) -> Iterable[tuple]:
        data, ends = self._data, self._ends
        start = ends[first - 1] if 0 < first <= len(ends) else 0
        for end in ends[first:]:
            yield marshal.loads(data[start:end])
            start = end


class MemoryStore:
    """What Supermemory remembers, per user id: the router's ``x-sm-user-id`` is the Memory
    API's namespace (v3/v4 called it a container tag), so both read and change one store.

    Each record is one memory (here: one user text), in recall order, oldest first; a
    forgotten one stays in the list, flagged, as Supermemory keeps its audit history."""

    def __init__(self) -> None:
        self.by_user: dict[str, list[dict[str, Any]]] = {}
        self.seq = itertools.count(1)

    def live(self, user: str) -> list[dict[str, Any]]:
        return [r for r in self.by_user.get(user, []) if not r["forgotten"]]

    def texts(self, user: str) -> list[str]:
        return [r["memory"] for r in self.live(user)]

    def remember(self, user: str, text: str, metadata: dict | None = None) -> dict[str, Any]:
        """Add a memory; one already live with the same text moves to the end instead."""
        records = self.by_user.setdefault(user, [])
        now = time.time()
        for record in records:
            if record["memory"] == text and not record["forgotten"]:
                records.remove(record)
                record["updated"] = now
                records.append(record)
                return record
        n = next(self.seq)
        record = {"id": f"mem_{n:06d}", "memory": text, "metadata": dict(metadata or {}), "created": now,
                  "updated": now, "n": n, "forgotten": False}
        records.append(record)
        return record

    def get(self, user: str, memory_id: str) -> dict[str, Any] | None:
        return next((r for r in self.by_user.get(user, []) if r["id"] == memory_id), None)

    def forget(self, user: str, memory_id: str) -> dict[str, Any] | None:
        record = self.get(user, memory_id)
        if record is None or record["forgotten"]:
            return None
        record["forgotten"], record["updated"] = True, time.time()
        return record


class EmulatorState:
    """Everything one emulator app knows; lives at ``app.state.emulator``."""

    def __init__(self, chunk_delay: float, chunks: int) -> None:
        self.chunk_delay = chunk_delay
        self.chunks = max(1, chunks)
        self.active_streams = 0  # live bodies are never "reset"
        self.reset()

    def reset(self) -> None:
        self.requests = RequestLog()
        self.store = MemoryStore()
        self.conversations: dict[str, list[str]] = {}  # user id -> x-sm-conversation-id values
        self.cf_tokens: set[str] = set()  # cf_clearance values we issued
        self.cf_seen_first = False
        self.cf_refuse_next = 0
        self.supermemory_keys: set[str] | None = None  # None: any non-empty key is accepted
        self.fault: dict[str, Any] | None = None  # {"mode", "count", "delay"}
        self.client_disconnects = 0
        self.ids = itertools.count(1)

    @property
    def memories(self) -> dict[str, list[str]]:
        """User id -> the texts it has live in memory, oldest first."""
        return {user: self.store.texts(user) for user in self.store.by_user}

    def key_accepted(self, key: str | None) -> bool:
        return bool(key and key.strip()) and (self.supermemory_keys is None or key in self.supermemory_keys)

    async def record(self, request: Request) -> bytes:
        raw = await request.body()
        self.log(request.scope, raw)
        return raw

    def log(self, scope: dict, body: bytes) -> None:
        """Record one request as it arrived (raw, see ``RequestLog``); ``records`` renders it when read."""
        self.requests.append((scope["method"], scope["path"], scope["query_string"], tuple(scope["headers"]),
                              body, time.time()))

    def records(self, since: int = 0) -> list[dict[str, Any]]:
        """The requests from number ``since`` on, as Starlette's Request would show them."""
        rendered = []
        for method, path, query, headers, body, when in self.requests.since(since):
            cookies: dict[str, str] = {}
            for name, value in headers:
                if name == b"cookie":
                    cookies.update(cookie_parser(value.decode("latin-1")))
            rendered.append({
                "method": method,
                "path": path,  # decoded, with any "//" intact
                "query": query.decode("latin-1"),
                "headers": {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers},
                "body": _parse(body),
                "cookies": cookies,
                "time": when,
            })
        return rendered

    def take_fault(self) -> dict[str, Any] | None:
        fault = self.fault
        if fault is not None:
            fault["count"] -= 1
            if fault["count"] <= 0:
                self.fault = None
        return fault

    def cloudflare(self, clearance: str | None) -> tuple[bool, bool]:
        """Return (refuse, set_cookies) for a /v3/ request carrying this cf_clearance."""
        valid = clearance in self.cf_tokens
        first, self.cf_seen_first = not self.cf_seen_first, True
        if self.cf_refuse_next > 0:
            self.cf_refuse_next -= 1
            return True, True
        refuse = not valid and not first
        return refuse, refuse or not valid

    def issue_cookies(self, response: Response) -> None:
        token = secrets.token_urlsafe(32)
        self.cf_tokens.add(token)
        for name, value in (("cf_clearance", token), ("__cf_bm", secrets.token_urlsafe(32))):
            cookie = f"{name}={value}; Path=/; Max-Age=1800; HttpOnly"
            response.raw_headers.append((b"set-cookie", cookie.encode("latin-1")))

    def converse(self, texts: list[str], user: str | None) -> str:
        """Reply to the last user text; with a user id, use and then extend its memories."""
        last = texts[-1] if texts else ""
        if not ASKS_NAME.search(last):
            reply = f"echo: {last}"
        else:
            known = self.store.texts(user) + texts[:-1] if user is not None else []
            names = [m.group(1) for text in known for m in TELLS_NAME.finditer(text)]
            reply = f"Your name is {names[-1]}." if names else "I don't know your name."
        if user is not None:
            for text in filter(None, texts):  # re-sent history moves to the end, keeping order
                self.store.remember(user, text, {"source": "router"})
        return reply


# ---------------------------------------------------------------- helpers

def _parse(raw: bytes) -> Any:
    """A request body as recorded: parsed JSON, else the text, None when empty."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw.decode("utf-8", "replace")


def _state(request: Request) -> EmulatorState:
    return request.app.state.emulator


def _error(provider: str, status: int, message: str) -> JSONResponse:
    if provider == ANTHROPIC:
        etype = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
                 500: "api_error"}.get(status, "invalid_request_error")
        return JSONResponse({"type": "error", "error": {"type": etype, "message": message}}, status)
    etype = {429: "requests", 500: "server_error"}.get(status, "invalid_request_error")
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    return JSONResponse({"error": {"message": message, "type": etype, "param": None, "code": code}}, status)


def _authorized(headers: Headers, provider: str) -> bool:
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


def _user_texts(items: Any) -> list[str]:
    if isinstance(items, str):  # Responses API: "input": "hello"
        return [items]
    items = items if isinstance(items, list) else []
    return [_text(m.get("content")) for m in items if isinstance(m, dict) and m.get("role") == "user"]


def _tokens(texts: Iterable[str]) -> int:
    return max(1, sum(len(t.split()) for t in texts))


def _split(text: str, n: int) -> list[str]:
    size = max(1, -(-len(text) // n))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


STAMP_EVENTS = False  # --stamp-events: the benchmark times each chunk from the moment it was sent


def _sse(event: str | None, data: Any) -> str:
    if STAMP_EVENTS and isinstance(data, dict):
        data = {**data, "emulator_sent": time.monotonic()}  # CLOCK_MONOTONIC: one clock per machine
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


def _then_abort(pieces: list[str]) -> Iterable[str]:
    yield from pieces
    raise AbortStream("emulated connection drop")


def _pieces(st: EmulatorState, text: str, fault: dict | None) -> tuple[Iterable[str], float]:
    """Content pieces of a streamed reply and the pause between them, as shaped by a fault."""
    mode = fault["mode"] if fault else None
    if mode == "endless_stream":
        return itertools.repeat("tick "), fault["delay"]
    pieces = _split(text, st.chunks)
    if mode == "close_mid_stream":
        return _then_abort(pieces[:2]), st.chunk_delay
    return pieces, st.chunk_delay


async def _paced(pieces: Iterable[str], delay: float) -> AsyncIterator[str]:
    for i, piece in enumerate(pieces):
        if i:
            await asyncio.sleep(delay)
        yield piece


async def _track(st: EmulatorState, request: Request, body: AsyncIterator[str]) -> AsyncIterator[str]:
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


def _stream(st: EmulatorState, request: Request, events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(_track(st, request, events), media_type="text/event-stream",
                             headers={"cache-control": "no-cache"})


def _broken_json(st: EmulatorState, request: Request, fault: dict) -> StreamingResponse:
    """A JSON answer that never completes: cut off, or padded with whitespace forever."""
    async def body() -> AsyncIterator[str]:
        yield '{"id": "emulated", '
        if fault["mode"] == "close_mid_stream":
            raise AbortStream("emulated connection drop")
        while True:
            await asyncio.sleep(fault["delay"])
            yield " "
    return StreamingResponse(_track(st, request, body()), media_type="application/json")


# ---------------------------------------------------------------- API handlers
# Each takes (state, request, body, user id or None, fault or None).

def _chat(st: EmulatorState, body: dict, user: str | None) -> tuple[dict, str, dict]:
    """(id/created/model, reply text, usage) of one chat completion."""
    texts = _user_texts(body.get("messages"))
    text = st.converse(texts, user)
    p, c = _tokens(texts), _tokens([text])
    head = {"id": f"chatcmpl-emu{next(st.ids)}", "created": int(time.time()), "model": body.get("model") or MODELS[0]}
    return head, text, {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _chat_json(head: dict, text: str, usage: dict) -> JSONResponse:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


async def chat_completions(st, request, body, user, fault) -> Response:
    head, text, usage = _chat(st, body, user)
    if body.get("stream") is not True:
        return _chat_json(head, text, usage)

    def chunk(delta: dict, finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse(None, {**head, "object": "chat.completion.chunk", "choices": [choice]})

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": ""})
        async for piece in _paced(*_pieces(st, text, fault)):
            yield chunk({"content": piece})
        yield chunk({}, "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield _sse(None, {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        yield "data: [DONE]\n\n"
    return _stream(st, request, events())


def _cache_usage(body: dict) -> dict:
    """Anthropic's prompt-cache counts, apart from ``input_tokens``, when a block of the request
    asks for caching (``cache_control``): fixed figures, so tests know what to expect."""
    return {"cache_creation_input_tokens": CACHE_WRITE, "cache_read_input_tokens": CACHE_READ} \
        if '"cache_control"' in json.dumps(body.get("system")) + json.dumps(body.get("messages")) else {}


async def messages(st, request, body, user, fault) -> Response:
    texts = _user_texts(body.get("messages"))
    text = st.converse(texts, user)
    p, c = _tokens(texts), _tokens([text])
    cache = _cache_usage(body)
    message = {"id": f"msg_emu{next(st.ids)}", "type": "message", "role": "assistant",
               "model": body.get("model") or MODELS[2], "stop_sequence": None}
    if body.get("stream") is not True:
        return JSONResponse({**message, "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                             "usage": {"input_tokens": p, "output_tokens": c, **cache}})

    def event(name: str, **fields: Any) -> str:
        return _sse(name, {"type": name, **fields})

    async def events() -> AsyncIterator[str]:
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {"input_tokens": p, "output_tokens": 1, **cache}}
        yield event("message_start", message=start)
        yield event("content_block_start", index=0, content_block={"type": "text", "text": ""})
        yield event("ping")
        async for piece in _paced(*_pieces(st, text, fault)):
            yield event("content_block_delta", index=0, delta={"type": "text_delta", "text": piece})
        yield event("content_block_stop", index=0)
        yield event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                    usage={"output_tokens": c})
        yield event("message_stop")
    return _stream(st, request, events())


async def responses(st, request, body, user, fault) -> Response:
    texts = _user_texts(body.get("input"))
    text = st.converse(texts, user)
    n = next(st.ids)
    p, c = _tokens(texts), _tokens([text])
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
            return _sse(name, {"type": name, "sequence_number": next(seq), **fields})
        yield event("response.created", response=response("in_progress", []))
        yield event("response.output_item.added", output_index=0,
                    item={**item, "status": "in_progress", "content": []})
        yield event("response.content_part.added", **where, part={**part, "text": ""})
        async for piece in _paced(*_pieces(st, text, fault)):
            yield event("response.output_text.delta", **where, delta=piece)
        yield event("response.output_text.done", **where, text=text)
        yield event("response.content_part.done", **where, part=part)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed", response=response("completed", [item]))
    return _stream(st, request, events())


async def embeddings(st, request, body, user, fault) -> Response:
    inputs = body.get("input")
    inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])

    def vector(text: str) -> list[float]:  # deterministic, 8 floats in [-1, 1]
        return [round(b / 127.5 - 1, 4) for b in hashlib.sha256(text.encode()).digest()[:8]]
    data = [{"object": "embedding", "index": i, "embedding": vector(str(x))} for i, x in enumerate(inputs)]
    tokens = _tokens(str(x) for x in inputs)
    return JSONResponse({"object": "list", "data": data, "model": body.get("model") or MODELS[3],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def models(st, request, body, user, fault) -> Response:
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "emulator"} for m in MODELS]
    return JSONResponse({"object": "list", "data": data})


HANDLERS = {"chat/completions": chat_completions, "messages": messages, "responses": responses,
            "embeddings": embeddings, "models": models}


async def answer(st: EmulatorState, request: Request, kind: str, raw: bytes, *, memory: bool) -> Response:
    """Validate like the real service, apply a pending fault, then run the handler."""
    provider = ANTHROPIC if kind == "messages" else OPENAI
    if memory and not request.headers.get("x-supermemory-api-key"):
        return JSONResponse({"error": {"message": "[SUPERMEMORY] Missing x-supermemory-api-key header",
                                       "type": "authentication_error"}}, 401)
    if memory and not st.key_accepted(request.headers.get("x-supermemory-api-key")):
        return JSONResponse({"error": {"message": "[SUPERMEMORY] Invalid API key",
                                       "type": "authentication_error"}}, 401)
    if not _authorized(request.headers, provider):
        return _error(provider, 401, "Missing or invalid API key")
    body: Any = {}
    if request.method != "GET":
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _error(provider, 400, "Request body is not a valid JSON object")
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
        return _error(provider, int(mode[-3:]), f"Emulated fault: {mode}")
    elif mode == "invalid_json":
        return Response(b"{not json", media_type="application/json")
    elif mode in STREAM_FAULTS and not (kind in ("chat/completions", "messages", "responses")
                                        and body.get("stream") is True):
        return _broken_json(st, request, fault)
    response = await HANDLERS[kind](st, request, body, user, fault)
    if mode == "memory_error" and memory:
        # Supermemory still answers when it cannot add memory, and says so in a header only.
        response.headers["x-supermemory-error"] = "Emulated fault: memory store unavailable"
    elif memory:  # the Memory Router's documented diagnostic headers
        texts = _user_texts(body.get("messages") or body.get("input"))
        response.headers.update({
            "x-supermemory-context-modified": "true" if remembered else "false",
            "x-supermemory-chunks-retrieved": str(remembered),
            "x-supermemory-chunks-created": str(len([t for t in texts if t])),
            "x-supermemory-tokens-processed": str(_tokens(texts)),
            "x-supermemory-conversation-id": request.headers.get("x-sm-conversation-id") or f"conv-{user}"})
    return response


# ---------------------------------------------------------------- endpoints

def provider_endpoint(kind: str):
    async def endpoint(request: Request) -> Response:
        st = _state(request)
        raw = await st.record(request)
        return await answer(st, request, kind, raw, memory=False)
    return endpoint


async def memory_router(request: Request) -> Response:
    """/v3/<provider base URL or host><provider path>, e.g. /v3/https://api.openai.com/v1/chat/completions."""
    st = _state(request)
    raw = await st.record(request)
    target = request.scope["path"].removeprefix("/v3/")  # scope path keeps "https://" intact
    kind = next((k for k in KINDS if target.rstrip("/").endswith("/" + k)), None)
    refuse, fresh = st.cloudflare(request.cookies.get("cf_clearance"))
    if refuse:
        response: Response = _cloudflare_refusal()
    elif kind is None:
        response = _error(OPENAI, 404, f"Unknown Memory Router target: {target}")
    else:
        response = await answer(st, request, kind, raw, memory=True)
    if fresh:
        st.issue_cookies(response)
    return response


def _cloudflare_refusal() -> Response:
    return Response("error code: 1200", 503, headers={
        "server": "cloudflare", "content-type": "text/plain; charset=UTF-8", "cf-ray": secrets.token_hex(8)})


# ---------------------------------------------------------------- Supermemory's Memory API (v5)
# The paths and shapes of the official SDK (supermemory 5.x): /ns/{namespace}/..., bearer key.

def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _memory_json(record: dict[str, Any]) -> dict[str, Any]:
    return {"id": record["id"], "memory": record["memory"], "metadata": record["metadata"],
            "isStatic": bool(TELLS_NAME.search(record["memory"])), "isInference": False, "isLatest": True,
            "isForgotten": record["forgotten"], "version": 1,
            "system": {"createdAt": _iso(record["created"]), "updatedAt": _iso(record["updated"])}}


def _api_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "details": message}, status)


def _page(total: int, page: int, limit: int) -> dict[str, Any]:
    return {"currentPage": page, "limit": limit, "totalItems": total, "totalPages": max(1, -(-total // limit))}


def _int_param(request: Request, name: str, default: int, top: int) -> int:
    value = int(request.query_params.get(name, default))  # ValueError -> 400
    if not 1 <= value <= top:
        raise ValueError(f"{name} must be between 1 and {top}")
    return value


def list_resources(st: EmulatorState, request: Request, ns: str, body: dict) -> Response:
    kind = request.path_params["type"]
    if kind not in ("documents", "chunks", "memories"):
        return _api_error(400, f"unknown list type {kind!r}")
    page, limit = _int_param(request, "page", 1, 10_000), _int_param(request, "limit", 10, 100)
    sort, order = request.query_params.get("sort", "createdAt"), request.query_params.get("order", "desc")
    records = []
    if kind == "memories":
        forgotten = bool((body.get("include") or {}).get("forgotten"))
        records = [r for r in st.store.by_user.get(ns, []) if forgotten or not r["forgotten"]]
        key = "updated" if sort == "updatedAt" else "created"
        records.sort(key=lambda r: (r[key], r["n"]), reverse=order != "asc")
    chosen = records[(page - 1) * limit:page * limit]
    return JSONResponse({"documents": [], "chunks": [], "memories": [_memory_json(r) for r in chosen],
                         "pagination": _page(len(records), page, limit)})


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def search_memories(st: EmulatorState, request: Request, ns: str, body: dict) -> Response:
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        return _api_error(400, "query is required")
    limit = body.get("limit") if isinstance(body.get("limit"), int) else 10
    wanted = _words(query)
    scored = []
    for record in st.store.live(ns):
        overlap = len(wanted & _words(record["memory"]))
        if overlap:
            scored.append((overlap / len(wanted), record["n"], record))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    results = [{"id": r["id"], "memory": r["memory"], "chunk": None, "metadata": r["metadata"],
                "similarity": round(score, 4), "isLatest": True, "isInference": False,
                "system": {"createdAt": _iso(r["created"]), "updatedAt": _iso(r["updated"])}}
               for score, _, r in scored[:limit]]
    return JSONResponse({"results": results, "searchTime": 0.1})


def get_memory(st: EmulatorState, request: Request, ns: str, body: dict) -> Response:
    record = st.store.get(ns, request.path_params["id"])
    if record is None:
        return _api_error(404, "Memory not found")
    return JSONResponse(_memory_json(record))


def forget_memories(st: EmulatorState, request: Request, ns: str, body: dict) -> Response:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return _api_error(400, "ids must be a non-empty list of memory ids")
    matches, errors = [], []
    for memory_id in ids:
        record = st.store.forget(ns, memory_id)
        if record is None:
            errors.append({"id": memory_id, "error": "Memory not found or already forgotten"})
        else:
            matches.append({"id": record["id"], "memory": record["memory"]})
    return JSONResponse({"count": len(matches), "errors": errors, "matches": matches})


def profile(st: EmulatorState, request: Request, ns: str, body: dict) -> Response:
    facts = [{"id": r["id"], "memory": r["memory"]} for r in reversed(st.store.live(ns))]
    static = [f for f in facts if TELLS_NAME.search(f["memory"])]
    dynamic = [f for f in facts if not TELLS_NAME.search(f["memory"])][:10]
    return JSONResponse({"profile": {"static": static, "dynamic": dynamic, "buckets": {}}})


def add_document(st: EmulatorState, request: Request, ns: str, body: dict) -> Response:
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        return _api_error(400, "content is required")
    metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    st.store.remember(ns, content, metadata)  # Supermemory extracts memories later; here at once
    return JSONResponse({"id": body.get("id") or f"doc_{next(st.ids)}", "status": "done"})


def list_namespaces(st: EmulatorState, request: Request, ns: str | None, body: dict) -> Response:
    page, limit = _int_param(request, "page", 1, 10_000), _int_param(request, "limit", 10, 100)
    names = sorted(st.store.by_user, key=lambda u: -(st.store.by_user[u][0]["n"] if st.store.by_user[u] else 0))
    entries = []
    for user in names[(page - 1) * limit:page * limit]:
        records = st.store.by_user[user]
        first = min((r["created"] for r in records), default=time.time())
        last = max((r["updated"] for r in records), default=first)
        entries.append({"id": f"ns_{hashlib.sha256(user.encode()).hexdigest()[:12]}", "namespace": user,
                        "documentCount": 0, "memoryCount": len(st.store.live(user)), "description": None,
                        "system": {"createdAt": _iso(first), "updatedAt": _iso(last)}})
    return JSONResponse({"namespaces": entries, "pagination": _page(len(names), page, limit)})


def memory_api(handler):
    """An endpoint of the Memory API: behind the same Cloudflare as the router, bearer key,
    pending ``error_*`` faults, then ``handler(state, request, namespace, JSON body)``."""
    async def endpoint(request: Request) -> Response:
        st = _state(request)
        raw = await st.record(request)
        refuse, fresh = st.cloudflare(request.cookies.get("cf_clearance"))
        response = _cloudflare_refusal() if refuse else await _memory_answer(st, request, raw, handler)
        if fresh:
            st.issue_cookies(response)
        return response
    return endpoint


async def _memory_answer(st: EmulatorState, request: Request, raw: bytes, handler) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not st.key_accepted(token.strip()):
        return _api_error(401, "Unauthorized: missing or invalid API key")
    fault = st.fault
    if fault and fault["mode"].startswith("error_"):
        st.take_fault()
        return _api_error(int(fault["mode"][-3:]), f"Emulated fault: {fault['mode']}")
    try:
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return handler(st, request, request.path_params.get("ns"), body)
    except ValueError as exc:
        return _api_error(400, str(exc))


async def not_found(request: Request) -> Response:
    await _state(request).record(request)
    return _error(OPENAI, 404, f"Unknown path: {request.scope['path']}")


async def _control_body(request: Request) -> dict:
    data = json.loads(await request.body() or b"{}")  # malformed JSON raises ValueError too
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


async def control_reset(request: Request) -> Response:
    _state(request).reset()
    return JSONResponse({"ok": True})


async def control_requests(request: Request) -> Response:
    st = _state(request)
    if request.method == "DELETE":
        st.requests.clear()
        return JSONResponse({"ok": True})
    try:
        since = max(0, int(request.query_params.get("since", "0")))
    except ValueError:
        return JSONResponse({"error": "since must be an integer"}, 400)
    return JSONResponse(st.records(since))


async def control_stats(request: Request) -> Response:
    st = _state(request)
    return JSONResponse({"active_streams": st.active_streams, "client_disconnects": st.client_disconnects,
                         "requests": len(st.requests)})


async def control_faults(request: Request) -> Response:
    """{"mode": M, "count": n, "delay": s}; mode null/"none" or count 0 clears the fault."""
    st = _state(request)
    try:
        data = await _control_body(request)
        mode, count = data.get("mode"), int(data.get("count", 1))
        if mode not in (None, "none") + FAULT_MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(FAULT_MODES)}")
        delay = float(data.get("delay", DEFAULT_FAULT_DELAY.get(mode, 0.0)))
    except (TypeError, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    st.fault = {"mode": mode, "count": count, "delay": delay} if mode not in (None, "none") and count > 0 else None
    return JSONResponse({"fault": st.fault})


async def control_cloudflare(request: Request) -> Response:
    st = _state(request)
    try:
        st.cf_refuse_next = max(0, int((await _control_body(request)).get("refuse_next", 0)))
    except (TypeError, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse({"refuse_next": st.cf_refuse_next})


async def control_supermemory_keys(request: Request) -> Response:
    """{"accept": [key, ...]} accepts only those Supermemory keys (router and Memory API); null: any."""
    st = _state(request)
    try:
        accept = (await _control_body(request)).get("accept")
        if accept is not None and not (isinstance(accept, list) and all(isinstance(k, str) for k in accept)):
            raise ValueError("accept must be a list of keys or null")
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    st.supermemory_keys = set(accept) if accept is not None else None
    return JSONResponse({"ok": True})


async def control_memories(request: Request) -> Response:
    st = _state(request)
    return JSONResponse({"memories": st.memories, "conversations": st.conversations})


async def health_probe(request: Request) -> Response:
    return JSONResponse({"status": "healthy", "litellm_version": "emulator"})


def create_app(*, chunk_delay: float = 0.02, chunks: int = 5) -> Starlette:
    routes = [
        Route("/_emulator/reset", control_reset, methods=["POST"]),
        Route("/_emulator/requests", control_requests, methods=["GET", "DELETE"]),
        Route("/_emulator/stats", control_stats, methods=["GET"]),
        Route("/_emulator/faults", control_faults, methods=["POST"]),
        Route("/_emulator/cloudflare", control_cloudflare, methods=["POST"]),
        Route("/_emulator/memories", control_memories, methods=["GET"]),
        Route("/_emulator/supermemory_keys", control_supermemory_keys, methods=["POST"]),
        # LiteLLM's unauthenticated probes, so the emulator can stand in for LiteLLM behind the proxy.
        Route("/health/liveliness", health_probe, methods=["GET"]),
        Route("/health/readiness", health_probe, methods=["GET"]),
        Route("/v1/chat/completions", provider_endpoint("chat/completions"), methods=["POST"]),
        Route("/v1/messages", provider_endpoint("messages"), methods=["POST"]),
        Route("/v1/responses", provider_endpoint("responses"), methods=["POST"]),
        Route("/v1/embeddings", provider_endpoint("embeddings"), methods=["POST"]),
        Route("/v1/models", provider_endpoint("models"), methods=["GET"]),
        Route("/v3/{target:path}", memory_router, methods=["GET", "POST"]),
        Route("/ns", memory_api(list_namespaces), methods=["GET"]),
        Route("/ns/{ns}/list/{type}", memory_api(list_resources), methods=["POST"]),
        Route("/ns/{ns}/search", memory_api(search_memories), methods=["POST"]),
        Route("/ns/{ns}/profile", memory_api(profile), methods=["POST"]),
        Route("/ns/{ns}/document", memory_api(add_document), methods=["POST"]),
        Route("/ns/{ns}/memories", memory_api(forget_memories), methods=["DELETE"]),
        Route("/ns/{ns}/memories/{id}", memory_api(get_memory), methods=["GET"]),
        Route("/{path:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    ]
    app = Starlette(routes=routes)
    app.state.emulator = EmulatorState(chunk_delay, chunks)
    return app


class FastChatProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, answering an ordinary chat completion itself.

    An ordinary chat completion (POST /v1/chat/completions with a bearer key and a JSON object,
    not streamed, no fault pending) is answered here, from the parsed request, without an ASGI
    request cycle, a task or Starlette; uvicorn's per-request machinery costs more than the
    answer itself. It is what lets the benchmark's direct path run several times faster than
    anything proxied, as the load generator's headroom must show. Same answer bytes, same record
    (the same functions build both; ``tests/test_emulator.py`` compares both ways); anything
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
        body = _parse(raw)
        scope = {"method": "POST", "path": "/v1/chat/completions", "query_string": self.url.partition(b"?")[2],
                 "headers": self.headers}
        st = self.emulator
        self.fast_body = None
        if not isinstance(body, dict) or body.get("stream") is True or st.fault is not None \
                or not _authorized(Headers(scope=scope), OPENAI):
            super().on_headers_complete()  # the app's turn after all, with the body as read
            self.cycle.body = raw
            return super().on_message_complete()
        st.log(scope, raw)
        response = _chat_json(*_chat(st, body, None))
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


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append",
                        help="repeatable: every port serves the same app and state (default 8999)")
    parser.add_argument("--chunk-delay", type=float, default=0.02)
    parser.add_argument("--chunks", type=int, default=5)
    parser.add_argument("--stamp-events", action="store_true", help="add emulator_sent (time.monotonic()) to SSE data")
    parser.add_argument("--reuse-port", action="store_true",
                        help="bind with SO_REUSEPORT, so that several emulator processes share a port (the kernel "
                             "spreads connections over them); each keeps its own state, so only for stateless "
                             "load such as the benchmark's direct path")
    args = parser.parse_args(argv)
    global STAMP_EVENTS
    STAMP_EVENTS = args.stamp_events
    app = create_app(chunk_delay=args.chunk_delay, chunks=args.chunks)
    # A close_mid_stream fault is deliberate: keep its traceback out of the log.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: not (record.exc_info and isinstance(record.exc_info[1], AbortStream)))
    # Several ports, one state: providers on one port and "Supermemory" on another, so that
    # only api_bases starting with the Supermemory port count as Supermemory-backed.
    # server_header=False: the Cloudflare refusal's "server: cloudflare" must be the only Server header.
    servers = [uvicorn.Server(uvicorn.Config(app, http=fast_chat_protocol(app), host=args.host, port=port,
                                             log_level="warning", server_header=False, lifespan="off",
                                             # Providers keep idle connections open for a minute or
                                             # more; uvicorn's 5 s default made LiteLLM (its retries
                                             # off in the fault stack) reuse just-closed ones.
                                             timeout_keep_alive=75))
               for port in args.port or [8999]]

    async def serve_all() -> None:
        def stop_all() -> None:
            for server in servers:
                server.should_exit = True
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_all)
        # Each server's own signal capture would stop only itself; ours stops all.
        for server in servers:
            server.capture_signals = contextlib.nullcontext
        await asyncio.gather(*(server.serve(sockets=[_reuse_port_socket(args.host, server.config.port)]
                                            if args.reuse_port else None) for server in servers))
    try:
        import uvloop  # a dependency (uvicorn's fast loop), except on Windows
    except ImportError:
        asyncio.run(serve_all())
    else:
        uvloop.run(serve_all())


def _reuse_port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


if __name__ == "__main__":
    main()
