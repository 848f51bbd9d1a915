"""The ingress's reshaping of what LiteLLM answers: errors in OpenAI's shape, model listings
without the warm-up groups."""

import asyncio
import json

import httpx

from memory_proxy.server.ingress import _error_in_openai_shape


def _reshape(status: int, body: bytes) -> tuple[int, dict]:
    upstream = httpx.Response(status, headers={"content-type": "application/json"}, content=body)
    response = asyncio.run(_error_in_openai_shape(upstream, [("x-request-id", "r")]))
    return response.status_code, json.loads(response.body)


def test_fastapi_style_errors_become_openai_style():
    status, body = _reshape(404, b'{"detail": "Not Found"}')
    assert status == 404 and body == {"error": {"message": "Not Found", "type": "invalid_request_error",
                                                "code": "not_found"}}
    anthropic = {"type": "error", "error": {"type": "not_found_error", "message": "x"}}
    assert _reshape(404, json.dumps(anthropic).encode())[1] == anthropic  # already has an error object
    assert _reshape(500, b"{broken")[1]["error"]["message"] == "upstream error"


def test_model_listings_leave_the_warm_up_groups_out_in_every_shape():
    from memory_proxy.server.ingress import without_warmup_groups

    openai = {"object": "list", "data": [{"id": "a"}, {"id": "memory-proxy-warmup/openai"}, {"id": "b"}]}
    assert without_warmup_groups(openai) == {"object": "list", "data": [{"id": "a"}, {"id": "b"}]}
    codex = {"models": [{"slug": "memory-proxy-warmup/anthropic"}, {"slug": "c"}]}
    assert without_warmup_groups(codex) == {"models": [{"slug": "c"}]}


def test_request_ids_are_32_hex_digits_that_grow_with_time():
    import time

    from memory_proxy.server.outcome import new_request_id

    ids = []
    for _ in range(3):
        ids.append(new_request_id())
        time.sleep(0.002)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert abs(int(ids[0][:12], 16) - time.time() * 1000) < 5000  # the first 12 digits: ms since the epoch
