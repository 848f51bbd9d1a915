"""LiteLLM's half of the usage record: its usage callback (``usage/litellm_callback.py``) posts here.

Only the LiteLLM the launcher started knows this address and the per-run secret it sends (both
in its environment only, see ``litellm_config.usage_callback_env``); anything else is refused.
The payloads carry prompts and answers too: only the figures are kept.
"""

from __future__ import annotations

import hmac
import json

from starlette.requests import Request
from starlette.responses import Response

from memory_proxy.server import headers as h
from memory_proxy.server.errors import error_response
from memory_proxy.server.runtime import Runtime

MAX_BATCH_BYTES = 64 * 1024 * 1024


async def litellm_callback(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    offered = request.headers.get(h.EGRESS_SECRET_HEADER, "")
    if not hmac.compare_digest(offered.encode(), runtime.egress_secret.encode()):
        return error_response(403, "the usage intake only serves the memory proxy's own LiteLLM", code="forbidden")
    body = await request.body()
    if len(body) > MAX_BATCH_BYTES:
        return error_response(413, "usage batch too large")
    try:
        data = json.loads(body)
    except ValueError:
        # ndjson, should the log format be changed
        try:
            data = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError:
            return error_response(400, "usage batch is not JSON", code="invalid_json")
    payloads = data if isinstance(data, list) else [data]
    for payload in payloads:
        runtime.litellm_report(payload)
    return Response(status_code=204)
