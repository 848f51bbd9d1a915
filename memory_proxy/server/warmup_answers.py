"""Canned provider answers for the warm-up (``config/warmup.py``), under ``ANSWERS_PREFIX``.

A mock answer (``mock_response``) warms LiteLLM's routes and request translation but not what
a real provider call runs once per process: its HTTP client, the provider's response parsing
and cost code. That first real call cost the first client about 25 ms more than the next ones
(2.2x on a chat request). So the hidden warm-up groups of the OpenAI and Anthropic families
name this endpoint as their ``api_base``: LiteLLM calls it exactly as it calls a provider, and
no provider is called. Only LiteLLM can: the deployment's key is the per-run egress secret.

Answers: OpenAI chat completions and Responses, Anthropic messages, each as JSON or as the
provider's event stream, with the text "ok" and small token counts.
"""

from __future__ import annotations

import hmac
import json
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from memory_proxy.server.errors import error_response
from memory_proxy.server.relay import BodyTooLarge, read_body
from memory_proxy.server.runtime import Runtime

TEXT = "ok"
USAGE = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}


def _sse(events: list[tuple[str | None, dict | str]]) -> Response:
    body = "".join((f"event: {name}\n" if name else "") + "data: "
                   + (data if isinstance(data, str) else json.dumps(data)) + "\n\n" for name, data in events)
    return Response(body, media_type="text/event-stream")


def chat_completion(model: str, stream: bool) -> Response:
    head = {"id": "chatcmpl-warmup", "created": int(time.time()), "model": model}
    if not stream:
        choice = {"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}
        return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": USAGE})
    chunk = {**head, "object": "chat.completion.chunk"}
    return _sse([(None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": TEXT},
                                               "finish_reason": None}]}),
                 (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                 (None, {**chunk, "choices": [], "usage": USAGE}),
                 (None, "[DONE]")])


def response(model: str, stream: bool) -> Response:
    part = {"type": "output_text", "text": TEXT, "annotations": []}
    item = {"type": "message", "id": "msg_warmup", "status": "completed", "role": "assistant", "content": [part]}

    def whole(status: str, output: list) -> dict:
        return {"id": "resp_warmup", "object": "response", "created_at": int(time.time()), "status": status,
                "model": model, "output": output, "error": None, "incomplete_details": None,
                "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4} if status == "completed" else None,
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    if not stream:
        return JSONResponse(whole("completed", [item]))
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events = [("response.created", {"response": whole("in_progress", [])}),
              ("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress",
                                                                          "content": []}}),
              ("response.content_part.added", {**where, "part": {**part, "text": ""}}),
              ("response.output_text.delta", {**where, "delta": TEXT}),
              ("response.output_text.done", {**where, "text": TEXT}),
              ("response.content_part.done", {**where, "part": part}),
              ("response.output_item.done", {"output_index": 0, "item": item}),
              ("response.completed", {"response": whole("completed", [item])})]
    return _sse([(name, {"type": name, "sequence_number": n, **data}) for n, (name, data) in enumerate(events)])


def message(model: str, stream: bool) -> Response:
    head = {"id": "msg_warmup", "type": "message", "role": "assistant", "model": model, "stop_sequence": None}
    if not stream:
        return JSONResponse({**head, "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
                             "usage": {"input_tokens": 3, "output_tokens": 1}})
    events = [("message_start", {"message": {**head, "content": [], "stop_reason": None,
                                             "usage": {"input_tokens": 3, "output_tokens": 1}}}),
              ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
              ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": TEXT}}),
              ("content_block_stop", {"index": 0}),
              ("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"output_tokens": 1}}),
              ("message_stop", {})]
    return _sse([(name, {"type": name, **data}) for name, data in events])


ANSWERS = {("openai", "chat/completions"): chat_completion, ("openai", "responses"): response,
           ("anthropic", "v1/messages"): message}


def _key(request: Request, family: str) -> str:
    if family == "anthropic":
        return request.headers.get("x-api-key", "")
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key if scheme.lower() == "bearer" else ""


async def handle(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    family, rest = request.path_params["family"], request.path_params["rest"]
    if not hmac.compare_digest(_key(request, family).encode(), runtime.egress_secret.encode()):
        return error_response(403, "the warm-up answers only the memory proxy's own LiteLLM", code="forbidden")
    answer = next((make for (f, suffix), make in ANSWERS.items() if f == family and rest.endswith(suffix)), None)
    if answer is None:
        return error_response(404, f"the warm-up has no {family} answer for /{rest}", code="not_found")
    try:
        body = json.loads(await read_body(request, runtime.config.proxy.max_body_bytes))
    except (ValueError, BodyTooLarge):
        body = None
    if not isinstance(body, dict):
        return error_response(400, "request body must be a JSON object", code="invalid_json")
    return answer(str(body.get("model") or "warmup"), body.get("stream") is True)
