"""Supermemory's Memory API (v5), the slice ``start_proxies.py memory`` and ``doctor`` use:
the paths and shapes of the official SDK (supermemory 5.x), ``/ns/{namespace}/...`` with a
bearer key, behind the same Cloudflare as the router, over the router's memory store."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.emulator.cloudflare import behind_cloudflare
from tests.emulator.common import state_of
from tests.emulator.memory_store import TELLS_NAME
from tests.emulator.state import EmulatorState


def _iso(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

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
        st = state_of(request)
        raw = await st.record(request)
        return await behind_cloudflare(st.cloudflare, request, lambda: _memory_answer(st, request, raw, handler))
    return endpoint


async def _memory_answer(st: EmulatorState, request: Request, raw: bytes, handler) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not st.key_accepted(token.strip()):
        return _api_error(401, "Unauthorized: missing or invalid API key")
    fault = st.fault
    if fault and fault["mode"].startswith("error_") and st.take_fault() is not None:
        return _api_error(int(fault["mode"][-3:]), f"Emulated fault: {fault['mode']}")
    try:
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        return handler(st, request, request.path_params.get("ns"), body)
    except ValueError as exc:
        return _api_error(400, str(exc))
