"""Supermemory's Memory Router: ``/v3/<provider URL><provider path>``, behind Cloudflare."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tests.emulator.calls import answer
from tests.emulator.cloudflare import behind_cloudflare
from tests.emulator.common import KINDS, OPENAI, error, state_of


async def memory_router(request: Request) -> Response:
    """/v3/<provider base URL or host><provider path>, e.g. /v3/https://api.openai.com/v1/chat/completions."""
    st = state_of(request)
    raw = await st.record(request)
    target = request.scope["path"].removeprefix("/v3/")  # scope path keeps "https://" intact
    kind = next((k for k in KINDS if target.rstrip("/").endswith("/" + k)), None)

    async def routed() -> Response:
        if kind is None:
            return error(OPENAI, 404, f"Unknown Memory Router target: {target}")
        return await answer(st, request, kind, raw, memory=True)
    return await behind_cloudflare(st.cloudflare, request, routed)
