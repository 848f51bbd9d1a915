"""The dashboard's memory page, ``/ui/memory``, and its JSON API under ``/ui/api/memory/``
(docs/memory.md): one client id's Supermemory memories (list, search, forget one) and its
memory signals from the usage record.

Supermemory is called through the official SDK's async client (``memory_api.async_session``),
made on first use and closed by the app's lifespan: the SDK is imported in a worker thread
(it takes longer than a request should hold the event loop), and its httpx client shares the
egress's cookie jar object, which the egress, its owner, saves. Same front door and key
cookie as ``/ui/``; forgetting is a JSON ``POST`` only, so a cross-site page cannot send it
(the front door refuses its ``Origin``/``Sec-Fetch-Site`` first).
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from memory_proxy.server import egress
from memory_proxy.server.dashboard import (
    SECURITY_HEADERS,
    UI_PREFIX,
    allowed,
    read_store,
    report_range,
    store_unavailable,
)
from memory_proxy.server.errors import error_response
from memory_proxy.server.headers import media_type
from memory_proxy.server.relay import BodyTooLarge, read_body
from memory_proxy.server.routing import InvalidClientId, validate_id
from memory_proxy.server.runtime import Runtime
from memory_proxy.supermemory.memory_api import (
    AsyncSession,
    MemoryApiError,
    async_session,
    memory_record,
    valid_memory_id,
)
from memory_proxy.usage import report as ur

log = logging.getLogger("memory_proxy")
API = UI_PREFIX + "/api/memory"
SUMMARY = 160  # characters of a memory shown in the list
FORGET_BODY_BYTES = 4096
# A failed Supermemory call: (status, what the page calls the failure). Never a 401: that means
# "log in to the dashboard" to the page.
FAILURES = {"no_key": 503, "unreachable": 502, "unauthorised": 502, "rate_limited": 429, "cloudflare": 503,
            "not_found": 404, "refused": 502}


class _BadInput(ValueError):
    pass


def _client_id(value: Any) -> str:
    """The id as the front door validates it."""
    if not isinstance(value, str) or not value:
        raise _BadInput("name a client id (id=...)")
    try:
        validate_id(value, "id")
    except InvalidClientId as exc:
        raise _BadInput(str(exc)) from None
    return value


def _number(request: Request, name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        raise _BadInput(f"{name} must be a whole number from 1 to {top}")
    return int(raw)


async def _session(runtime: Runtime) -> AsyncSession:
    if runtime.memory_api is None:
        await anyio.to_thread.run_sync(importlib.import_module, "supermemory")
        if runtime.memory_api is None:  # another request may have made it while this one waited
            runtime.memory_api = async_session(runtime.config, runtime.supermemory.cookies.jar,
                                               on_cookies=lambda: egress.save_cookies(runtime))
    return runtime.memory_api


def _failed(exc: MemoryApiError) -> Response:
    headers = {**SECURITY_HEADERS, "retry-after": exc.retry_after or "5"} if exc.kind == "rate_limited" \
        else SECURITY_HEADERS
    return error_response(FAILURES.get(exc.kind, 502), str(exc), code=exc.kind, headers=headers)


def _guarded(handler):
    """The key check, input errors as 400 and Supermemory's failures as one clear message."""
    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.state.runtime
        if not allowed(runtime, request):
            return error_response(401, "the dashboard needs a memory proxy key", code="login_required",
                                  headers=SECURITY_HEADERS)
        try:
            answer = await handler(runtime, request)
            return answer if isinstance(answer, Response) else JSONResponse(answer, headers=SECURITY_HEADERS)
        except _BadInput as exc:
            return error_response(400, str(exc), code="invalid_input", headers=SECURITY_HEADERS)
        except MemoryApiError as exc:
            return _failed(exc)
    return endpoint


def _summary(text: str | None) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= SUMMARY else flat[:SUMMARY - 1] + "…"


def _memory(memory: Any) -> dict:
    record = memory_record(memory)
    return {"id": record["id"], "summary": _summary(record["memory"]), "memory": record["memory"],
            "created_at": record["created_at"], "updated_at": record["updated_at"], "is_static": record["is_static"]}


# --- endpoints --------------------------------------------------------------------------------


async def ids(runtime: Runtime, request: Request) -> dict:
    """The ids to pick from: those the usage record has seen, then those the config names."""
    found: dict[str, dict] = {}
    usage = "off"
    if runtime.usage_reader is not None:
        try:
            for row in await read_store(runtime, ur.client_ids):
                found[row["id"]] = {**row, "sources": ["usage"]}
            usage = "ok"
        except Exception as exc:  # no record written yet, or the store is down
            usage = f"unavailable: {type(exc).__name__}"
    mappings = runtime.config.user_id_mappings
    for configured in [p.user_id for p in mappings.header_patterns] + [mappings.default_user_id]:
        entry = found.setdefault(configured, {"id": configured, "requests": 0, "last_ms": None, "sources": []})
        if "config" not in entry["sources"]:
            entry["sources"].append("config")
    return {"ids": list(found.values()), "usage": usage}


async def memories(runtime: Runtime, request: Request) -> dict:
    """One page of the id's live memories, newest first."""
    client_id = _client_id(request.query_params.get("id"))
    limit, page = _number(request, "limit", 50, 100), _number(request, "page", 1, 10_000)
    api = await _session(runtime)
    answer = await api.call(api.client.list, client_id, "memories", page=page, limit=limit, sort="createdAt",
                            order="desc")
    pages = answer.pagination
    return {"id": client_id, "page": page, "total_pages": pages.total_pages, "total": pages.total_items,
            "memories": [_memory(m) for m in answer.memories]}


async def search(runtime: Runtime, request: Request) -> dict:
    """What Supermemory retrieves for a query from the id's memories (memory mode)."""
    client_id = _client_id(request.query_params.get("id"))
    query = request.query_params.get("q", "").strip()
    if not query or len(query) > 1000:
        raise _BadInput("the search query must have 1 to 1000 characters")
    limit = _number(request, "limit", 10, 50)
    api = await _session(runtime)
    answer = await api.call(api.client.search, client_id, query=query, limit=limit, search_mode="memories")
    results = []
    for r in answer.results:
        text = r.memory if r.memory is not None else r.chunk
        results.append({"id": r.id, "summary": _summary(text), "memory": text, "similarity": r.similarity,
                        "updated_at": memory_record(r)["updated_at"]})
    return {"id": client_id, "query": query, "results": results}


async def forget(runtime: Runtime, request: Request) -> dict:
    """Forget one memory of one id: a JSON POST (a form or a no-cors fetch cannot send it)."""
    if media_type(request.headers.get("content-type", "")) != "application/json":
        raise _BadInput("send the memory to forget as JSON (content-type: application/json)")
    try:
        body = json.loads(await read_body(request, FORGET_BODY_BYTES))
    except BodyTooLarge:
        raise _BadInput(f"the body is larger than {FORGET_BODY_BYTES} bytes") from None
    except ValueError:
        raise _BadInput("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _BadInput("the body must be a JSON object")
    client_id = _client_id(body.get("id"))
    memory_id = body.get("memory_id")
    if not valid_memory_id(memory_id):
        raise _BadInput("name the memory to forget (memory_id: letters, digits, _ and -)")
    api = await _session(runtime)
    answer = await api.call(api.client.memories.forget, client_id, ids=[memory_id])
    forgotten = [m.id for m in answer.matches]
    if memory_id not in forgotten:
        raise MemoryApiError("not_found", f"no memory {memory_id!r} in {client_id!r}'s memory (or already forgotten)")
    log.info("memory page: forgot memory %s of client=%s", memory_id, client_id)
    return {"ok": True, "id": client_id, "forgotten": forgotten}


async def signals(runtime: Runtime, request: Request) -> Response | dict:
    """The id's Supermemory signals from the usage record over ``range`` (as the dashboard's)."""
    client_id = _client_id(request.query_params.get("id"))
    if runtime.usage_reader is None:
        return {"client_id": client_id, "enabled": False}
    try:
        _, since, until = report_range(request)
    except ValueError as exc:
        raise _BadInput(str(exc)) from None
    try:
        data = await read_store(runtime, ur.memory_signals, client_id, since, until)
    except Exception as exc:  # no record written yet, or the store is down
        return store_unavailable(runtime, exc)
    return {**data, "enabled": True}


def routes() -> list[Route]:
    return [Route(API + "/ids", _guarded(ids), methods=["GET"]),
            Route(API + "/list", _guarded(memories), methods=["GET"]),
            Route(API + "/search", _guarded(search), methods=["GET"]),
            Route(API + "/forget", _guarded(forget), methods=["POST"]),
            Route(API + "/signals", _guarded(signals), methods=["GET"])]
