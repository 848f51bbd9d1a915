"""The emulator's own endpoints (``/_emulator/...``): reset, the request log, stats, faults,
Cloudflare refusals, accepted Supermemory keys, the memories; LiteLLM's health probes, so
that the emulator can stand in for LiteLLM; and a JSON 404 for every other path."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.emulator.common import OPENAI, error, state_of
from tests.emulator.state import DEFAULT_FAULT_DELAY, FAULT_MODES


async def not_found(request: Request) -> Response:
    await state_of(request).record(request)
    return error(OPENAI, 404, f"Unknown path: {request.scope['path']}")


async def _control_body(request: Request) -> dict:
    data = json.loads(await request.body() or b"{}")  # malformed JSON raises ValueError too
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


async def control_reset(request: Request) -> Response:
    state_of(request).reset()
    return JSONResponse({"ok": True})


async def control_requests(request: Request) -> Response:
    st = state_of(request)
    if request.method == "DELETE":
        st.requests.clear()
        return JSONResponse({"ok": True})
    try:
        since = max(0, int(request.query_params.get("since", "0")))
    except ValueError:
        return JSONResponse({"error": "since must be an integer"}, 400)
    return JSONResponse(st.records(since))


async def control_stats(request: Request) -> Response:
    st = state_of(request)
    return JSONResponse({"active_streams": st.active_streams, "client_disconnects": st.client_disconnects,
                         "requests": len(st.requests)})


async def control_faults(request: Request) -> Response:
    """{"mode": M, "count": n, "delay": s, "after": k}; mode null/"none" or count 0 clears the fault;
    ``after``: the next k requests it would hit are spared first."""
    st = state_of(request)
    try:
        data = await _control_body(request)
        mode, count = data.get("mode"), int(data.get("count", 1))
        if mode not in (None, "none") + FAULT_MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(FAULT_MODES)}")
        delay = float(data.get("delay", DEFAULT_FAULT_DELAY.get(mode, 0.0)))
        after = int(data.get("after", 0))
    except (TypeError, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    st.fault = {"mode": mode, "count": count, "delay": delay, "after": after} \
        if mode not in (None, "none") and count > 0 else None
    return JSONResponse({"fault": st.fault})


async def control_cloudflare(request: Request) -> Response:
    cloudflare = state_of(request).cloudflare
    try:
        cloudflare.refuse_next = max(0, int((await _control_body(request)).get("refuse_next", 0)))
    except (TypeError, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse({"refuse_next": cloudflare.refuse_next})


async def control_supermemory_keys(request: Request) -> Response:
    """{"accept": [key, ...]} accepts only those Supermemory keys (router and Memory API); null: any."""
    st = state_of(request)
    try:
        accept = (await _control_body(request)).get("accept")
        if accept is not None and not (isinstance(accept, list) and all(isinstance(k, str) for k in accept)):
            raise ValueError("accept must be a list of keys or null")
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    st.supermemory_keys = set(accept) if accept is not None else None
    return JSONResponse({"ok": True})


async def control_memories(request: Request) -> Response:
    st = state_of(request)
    return JSONResponse({"memories": st.memories, "conversations": st.conversations})


async def health_probe(request: Request) -> Response:
    return JSONResponse({"status": "healthy", "litellm_version": "emulator"})
