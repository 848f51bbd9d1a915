"""Errors the proxy itself produces: OpenAI-style JSON, or an event in a stream's own format."""

from __future__ import annotations

import json

from starlette.responses import JSONResponse

# status -> (type, code) in OpenAI's error vocabulary
_KINDS = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limited"),
    431: ("invalid_request_error", "headers_too_large"),
    502: ("upstream_error", "bad_gateway"),
    503: ("service_unavailable", "upstream_unavailable"),
    504: ("timeout_error", "upstream_timeout"),
}


def error_body(status: int, message: str, code: str | None = None) -> dict:
    kind, default_code = _KINDS.get(status, ("api_error", "internal_error"))
    return {"error": {"message": message, "type": kind, "code": code or default_code}}


def error_response(status: int, message: str, *, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if status == 503:
        headers.setdefault("retry-after", "2")
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def stream_error_event(stream_format: str, message: str, status: int = 502) -> bytes:
    """One SSE event that tells a client its stream broke, in that stream's own format."""
    if stream_format == "anthropic":
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return f"event: error\ndata: {json.dumps(data)}\n\n".encode()
    return f"data: {json.dumps(error_body(status, message))}\n\n".encode()


def answer_too_long(total: float) -> str:
    """What a client reads when its answer ran past ``memory_proxy.timeouts.total``."""
    return f"the answer took longer than memory_proxy.timeouts.total ({total:g} s) and was cut off"


# What a client reads when a stream fell silent for longer than ``memory_proxy.timeouts.read``.
STREAM_SILENT = "the upstream sent nothing within memory_proxy.timeouts.read"
