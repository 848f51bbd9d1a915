"""Parity of the two modes: the same scenarios against binary mode and SDK mode, same outcome.

- binary: the real ``litellm`` binary (beside ``sys.executable``) started once for this module
  with the generated config, ``memory_proxy.app.create_app`` in front of it;
- sdk: ``memory_proxy.sdk_mode.create_sdk_app`` (LiteLLM's Router in this test process).

Both talk to one emulator process listening on two ports that share state: port A plays
OpenAI/Anthropic, port B Supermemory's router, so Supermemory-backed models have
``api_base: http://127.0.0.1:B/v3/http://127.0.0.1:A[/v1]``. Every scenario runs once per
mode (the emulator reset in between) and the two outcomes -- status, body, the headers and
key that reached the emulator, stream events -- are normalized (ids, timestamps, request
ids dropped) and compared; each test also checks the expected outcome itself, so the two
modes cannot agree on something wrong. What cannot be the same is listed in docs/sdk-mode.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from memory_proxy.config.model import parse_config
from tests.support.configs import config_text, model
from tests.support.readiness import poll
from tests.support.stacks import (
    ANTHROPIC_KEY,
    FRONT_KEY,
    MASTER,
    MODES,
    OPENAI_KEY,
    SECRET,
    both_backends,
    chain_env,
)
from tests.support.stacks import CHAIN_SM_KEY as SM_KEY

PYCHARM = "OpenAIClientImpl/Java unknown"
CLAUDE = "claude-cli/2.0.14 (external, cli)"
READ_TIMEOUT = 8
VOLATILE = {"id", "created", "request_id", "x-request-id", "system_fingerprint"}
TRANSPORT_HEADERS = {"host", "content-length", "connection", "accept", "accept-encoding", "cookie", "x-request-id"}


def embed_model(a: str, b: str) -> list[str]:
    return [model("embed", "openai/text-embedding-3-small", f"{a}/v1")]


@dataclass
class Stacks:
    emulator: str  # the provider port's URL (control endpoints too)
    urls: dict[str, str]  # mode -> memory proxy URL
    sdk_app: object  # the running SDK app (its state holds the runtime and the Router)

    def reset(self) -> None:
        httpx.post(self.emulator + "/_emulator/reset")

    def records(self) -> list[dict]:
        return httpx.get(self.emulator + "/_emulator/requests").json()

    def fault(self, mode: str, **extra) -> None:
        httpx.post(self.emulator + "/_emulator/faults", json={"mode": mode, **extra})


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity")
    env = chain_env()

    def config_for(ports):
        return parse_config(config_text(ports.provider, ports.supermemory, ports.binary, ports.litellm,
                                        "  api_keys: [os.environ/FRONT_KEY]\n", models=embed_model,
                                        read_timeout=READ_TIMEOUT), tmp / "config.yaml", env)

    with both_backends(tmp, env, config_for) as backends:
        yield Stacks(backends.emulator, backends.urls, backends.apps["sdk"])


# --- helpers -------------------------------------------------------------------------------


def call(url: str, path: str, body=None, *, method: str = "POST", headers: dict | None = None,
         key: str | None = FRONT_KEY, content: bytes | None = None) -> httpx.Response:
    headers = dict(headers or {})
    if key is not None:
        headers.setdefault("authorization", f"Bearer {key}")
    if content is not None:
        headers.setdefault("content-type", "application/json")
        return httpx.request(method, url + path, content=content, headers=headers, timeout=60)
    return httpx.request(method, url + path, json=body, headers=headers, timeout=60)


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def sse_events(text: str) -> list:
    """An SSE body as [(event or None, parsed data)], ids and timestamps removed."""
    events = []
    for block in text.split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
        if data is None:
            continue
        events.append((name, data if data == "[DONE]" else strip_volatile(json.loads(data))))
    return events


def answer(response: httpx.Response) -> dict:
    """What a client sees, normalized."""
    ctype = response.headers.get("content-type", "").split(";")[0]
    if ctype == "text/event-stream":
        body = sse_events(response.text)
    else:
        try:
            body = strip_volatile(response.json())
        except ValueError:
            body = response.text
    return {"status": response.status_code, "type": ctype, "client_id": response.headers.get("x-supermemory-user-id"),
            "body": body}


def upstream(records: list[dict], request_ids: set[str] = frozenset()) -> list[dict]:
    """What reached the emulator: path, headers (transport ones aside) and body."""
    seen = []
    for r in records:
        headers = {k: v for k, v in r["headers"].items() if k not in TRANSPORT_HEADERS}
        for name in ("x-request-id", "x-litellm-call-id"):  # the call id names LiteLLM's call after ours
            forwarded_id = r["headers"].get(name)
            if forwarded_id is not None:  # only ever our own request id, forwarded for backed models
                assert forwarded_id in request_ids, forwarded_id
                headers[name] = "<ours>"
        seen.append({"method": r["method"], "path": r["path"], "query": r["query"], "headers": headers,
                     "body": r["body"]})
    return seen


def usage_record(url: str, request_id: str, *, litellm_half: bool = False) -> dict:
    """The usage record of one request (its ingress half is written once the answer ended;
    ``litellm_half``: wait for LiteLLM's too, which binary mode's LiteLLM sends within about a second)."""
    def find():
        rows = httpx.get(url + "/ui/api/requests", params={"limit": 50}, timeout=10,
                         headers={"authorization": f"Bearer {FRONT_KEY}"}).json()["rows"]
        return next((row for row in rows if row["request_id"] == request_id and row.get("status")
                     and (row.get("deployment") or not litellm_half)), None)
    return poll(find, lambda row: row is not None, 10)


def in_both(stacks: Stacks, scenario: Callable[[str], list[httpx.Response]], *,
            before: Callable[[], None] | None = None) -> dict[str, dict]:
    """Run ``scenario(url)`` once per mode from a fresh emulator; return mode -> outcome."""
    outcomes = {}
    for mode in MODES:
        stacks.reset()
        if before:
            before()
        responses = scenario(stacks.urls[mode])
        ids = {r.headers.get("x-request-id") for r in responses}
        outcomes[mode] = {"answers": [answer(r) for r in responses], "upstream": upstream(stacks.records(), ids)}
    return outcomes


def assert_same(outcomes: dict[str, dict]) -> dict:
    assert outcomes["binary"] == outcomes["sdk"]
    return outcomes["binary"]


def chat(model: str, text: str = "hello there", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def message(model: str, text: str = "hello there", **extra) -> dict:
    return {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": text}], **extra}


# --- ids, headers, keys ----------------------------------------------------------------------


CLIENTS = [({"user-agent": PYCHARM}, "pycharm-ai"), ({"user-agent": CLAUDE}, "claude-cli"),
           ({"user-agent": "some-script/1.0"}, "default-dev"),
           ({"user-agent": CLAUDE, "x-memory-user-id": "proj-1"}, "proj-1")]


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", chat("memory/gpt-4o-mini")),
    ("/v1/messages", message("claude-sonnet-4-5")),
    ("/v1/chat/completions", chat("claude-sonnet-4-5")),
    ("/v1/messages", message("memory/gpt-4o-mini")),
], ids=["chat-openai", "messages-anthropic", "chat-anthropic", "messages-openai"])
def test_ids_resolved_and_supermemory_headers_on_backed_models(stacks, path, body):
    def scenario(url):
        responses = [call(url, path, body, headers=headers) for headers, _ in CLIENTS]
        responses.append(call(url, "/scope/my-project" + path, body, headers={"user-agent": PYCHARM}))
        return responses
    same = assert_same(in_both(stacks, scenario))
    expected = [user for _, user in CLIENTS] + ["my-project"]
    assert [a["status"] for a in same["answers"]] == [200] * len(expected)
    assert [a["client_id"] for a in same["answers"]] == expected
    assert [u["headers"]["x-sm-user-id"] for u in same["upstream"]] == expected
    for seen in same["upstream"]:
        assert seen["path"].startswith("/v3/http://127.0.0.1:")
        assert seen["headers"]["x-supermemory-api-key"] == SM_KEY
        assert seen["headers"]["x-request-id"] == "<ours>"
        assert not {"x-supermemory-user-id", "x-memory-proxy-egress-secret", "x-memory-user-id"} & set(seen["headers"])
        assert FRONT_KEY not in json.dumps(seen) and MASTER not in json.dumps(seen)
        provider_key = seen["headers"].get("x-api-key") or seen["headers"].get("authorization")
        assert provider_key in (ANTHROPIC_KEY, f"Bearer {OPENAI_KEY}")


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", chat("gpt-4o-mini")),
    ("/v1/messages", message("claude-3-5-haiku-latest")),
    ("/v1/chat/completions", chat("claude-3-5-haiku-latest")),
    ("/v1/embeddings", {"model": "embed", "input": ["a", "b"]}),
], ids=["chat-openai", "messages-anthropic", "chat-anthropic", "embeddings"])
def test_ordinary_models_get_no_memory_headers(stacks, path, body):
    headers = {"user-agent": CLAUDE, "x-claude-code-session-id": "sess-1", "x-custom-thing": "yes",
               "anthropic-version": "2023-06-01", "anthropic-beta": "beta-1", "x-stainless-lang": "python"}
    same = assert_same(in_both(stacks, lambda url: [call(url, path, body, headers=headers)]))
    [got] = same["answers"]
    assert (got["status"], got["client_id"]) == (200, "claude-cli")
    [seen] = same["upstream"]
    assert seen["path"].startswith("/v1/")
    assert not any(name.startswith(("x-sm-", "x-supermemory-", "x-memory-")) for name in seen["headers"])
    assert "x-custom-thing" not in seen["headers"] and "x-claude-code-session-id" not in seen["headers"]
    assert "x-request-id" not in seen["headers"]
    assert FRONT_KEY not in json.dumps(seen) and MASTER not in json.dumps(seen)


def test_claude_code_headers_reach_supermemory_as_conversation(stacks):
    headers = {"user-agent": CLAUDE, "x-claude-code-session-id": "sess-42", "x-custom-thing": "yes",
               "anthropic-version": "2023-06-01", "anthropic-beta": "beta-1", "x-stainless-lang": "python"}
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/messages?beta=true", message("claude-sonnet-4-5"), headers=headers),
        call(url, "/v1/chat/completions", chat("memory/gpt-4o-mini"), headers=headers)]))
    for seen in same["upstream"]:
        assert seen["headers"]["x-sm-conversation-id"] == "sess-42"
        assert seen["headers"]["x-custom-thing"] == "yes" and seen["headers"]["anthropic-beta"] == "beta-1"
        assert seen["query"] == ""  # LiteLLM drops the client's query string in both modes


def test_forged_memory_headers_and_body_extra_headers_change_nothing(stacks):
    body = chat("memory/gpt-4o-mini", extra_headers={"x-supermemory-user-id": "victim", "x-sm-user-id": "victim"})
    forged = {"user-agent": PYCHARM, "x-sm-user-id": "victim", "x-supermemory-user-id": "victim",
              "x-supermemory-api-key": "stolen", "x-memory-proxy-egress-secret": "guess"}
    same = assert_same(in_both(stacks, lambda url: [call(url, "/v1/chat/completions", body, headers=forged)]))
    [seen] = same["upstream"]
    assert seen["headers"]["x-sm-user-id"] == "pycharm-ai"
    assert seen["headers"]["x-supermemory-api-key"] == SM_KEY
    assert "extra_headers" not in seen["body"]


# --- streaming -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-4o-mini", "memory/gpt-4o-mini", "claude-sonnet-4-5"])
def test_openai_stream_events(stacks, model):
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/chat/completions", chat(model, "a longer message", stream=True),
             headers={"user-agent": PYCHARM})]))
    [got] = same["answers"]
    assert got["type"] == "text/event-stream" and got["body"][-1] == (None, "[DONE]")
    chunks = [data for _, data in got["body"][:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == model for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: a longer message"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("model", ["claude-3-5-haiku-latest", "claude-sonnet-4-5", "memory/gpt-4o-mini"])
def test_anthropic_stream_events(stacks, model):
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/messages", message(model, "a longer message", stream=True), headers={"user-agent": CLAUDE})]))
    [got] = same["answers"]
    names = [name for name, _ in got["body"]]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(names)
    assert got["body"][0][1]["message"]["model"] == model
    text = "".join(d["delta"]["text"] for n, d in got["body"] if n == "content_block_delta")
    assert text == "echo: a longer message"


@pytest.mark.parametrize("path, body, marker", [
    ("/v1/chat/completions", chat("gpt-4o-mini", stream=True), "error"),
    ("/v1/messages", message("claude-3-5-haiku-latest", stream=True), "error"),
], ids=["openai", "anthropic"])
def test_stream_broken_upstream_ends_with_an_error_event(stacks, path, body, marker):
    request_ids = {}

    def scenario(url):
        response = call(url, path, body)
        request_ids[url] = response.headers["x-request-id"]
        return [response]
    outcomes = in_both(stacks, scenario, before=lambda: stacks.fault("close_mid_stream"))
    same = assert_same(outcomes)
    [got] = same["answers"]
    assert got["status"] == 200
    name, data = got["body"][-1]
    assert "error" in data and (name == "error" if path == "/v1/messages" else name is None)
    # the usage record: a stream LiteLLM ended with an error event is complete in both backends
    records = [usage_record(url, request_id) for url, request_id in request_ids.items()]
    assert None not in records
    assert [(r["status"], r["streamed"], r["completed"]) for r in records] == [(200, 1, 1)] * len(MODES)


def test_client_disconnect_cancels_the_upstream(stacks):
    for mode in MODES:
        stacks.reset()
        stacks.fault("endless_stream", delay=0.05)
        with httpx.stream("POST", stacks.urls[mode] + "/v1/chat/completions",
                          json=chat("gpt-4o-mini", stream=True),
                          headers={"authorization": f"Bearer {FRONT_KEY}"}, timeout=30) as r:
            it = r.iter_raw()
            next(it)
            next(it)
        stats = poll(lambda: httpx.get(stacks.emulator + "/_emulator/stats").json(),
                     lambda stats: stats["client_disconnects"] == 1 and stats["active_streams"] == 0, 5)
        assert (mode, stats["client_disconnects"], stats["active_streams"]) == (mode, 1, 0)


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", chat("gpt-4o-mini", stream=True)),
    ("/v1/messages", message("claude-3-5-haiku-latest", stream=True)),
], ids=["openai", "anthropic"])
def test_a_client_that_leaves_a_stream_has_the_same_usage_record(stacks, path, body):
    """LiteLLM's half of the record of a stream the client left says what the LiteLLM proxy
    tells its callbacks: error code 499, the call billed for what was streamed until then.
    (SDK mode used to have no 499 on /v1/messages: LiteLLM's stream there does not carry its
    logging object.) The tokens are not compared: how many were streamed depends on when the
    client left."""
    records = {}
    for mode in MODES:
        stacks.reset()
        stacks.fault("endless_stream", delay=0.05)
        with httpx.stream("POST", stacks.urls[mode] + path, json=body, timeout=30,
                          headers={"authorization": f"Bearer {FRONT_KEY}"}) as r:
            next(r.iter_raw())
            request_id = r.headers["x-request-id"]
        records[mode] = usage_record(stacks.urls[mode], request_id, litellm_half=True)
    fields = ("status", "completed", "streamed", "error_code", "api_shape", "deployment", "provider", "priced")
    seen = {mode: {k: record[k] for k in fields} if record else None for mode, record in records.items()}
    assert seen["binary"] == seen["sdk"]
    assert seen["sdk"]["status"] == 200 and seen["sdk"]["completed"] == 0 and seen["sdk"]["streamed"] == 1
    assert seen["sdk"]["error_code"] == "499"


# --- errors ----------------------------------------------------------------------------------


ERROR_CASES = {
    "unknown-model-chat": ("/v1/chat/completions", chat("no-such-model"), {}, 400),
    "unknown-model-messages": ("/v1/messages", message("no-such-model"), {}, 400),
    "unknown-model-embeddings": ("/v1/embeddings", {"model": "no-such-model", "input": "x"}, {}, 400),
    "missing-messages": ("/v1/chat/completions", {"model": "gpt-4o-mini"}, {}, 400),
    "missing-max-tokens": ("/v1/messages", {"model": "claude-sonnet-4-5", "messages": []}, {}, 400),
    "api-base-in-body": ("/v1/chat/completions", chat("gpt-4o-mini", api_base="http://evil.example"), {}, 401),
    "bad-custom-id": ("/v1/chat/completions", chat("memory/gpt-4o-mini"), {"x-memory-user-id": "has space"}, 400),
    "bad-scope-id": ("/scope/" + "a" * 129 + "/v1/chat/completions", chat("gpt-4o-mini"), {}, 400),
    "unknown-path": ("/v1/no/such/thing", {}, {}, 404),
    "model-not-a-string-chat": ("/v1/chat/completions", {"model": 123, "messages": []}, {}, 400),
    "model-not-a-string-messages": ("/v1/messages", {"model": 5, "max_tokens": 3, "messages": []}, {}, 400),
    "messages-not-a-list": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": "hi"}, {}, 400),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_statuses_and_bodies(stacks, case):
    path, body, headers, status = ERROR_CASES[case]
    same = assert_same(in_both(stacks, lambda url: [call(url, path, body, headers=headers)]))
    [got] = same["answers"]
    assert got["status"] == status
    error = got["body"]["error"]
    assert error["message"] and error["type"]
    if path.endswith("/messages") and status != 401:
        assert got["body"]["type"] == "error"  # Anthropic's shape on /v1/messages, in both modes
    assert same["upstream"] == []


def test_malformed_json_wrong_method_and_body_limits(stacks):
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/chat/completions", content=b"{not json"),
        call(url, "/v1/messages", content=b"[1, "),
        call(url, "/v1/chat/completions", method="GET"),
        call(url, "/v1/models", method="POST"),
        call(url, "/v1/chat/completions", content=b"[1]"),
        call(url, "/v1/messages", content=b"null"),
    ]))
    assert [(a["status"], a["body"]["error"]["code"]) for a in same["answers"]] == [
        (400, "invalid_json"), (400, "invalid_json"), (405, "method_not_allowed"), (405, "method_not_allowed"),
        (400, "invalid_json"), (400, "invalid_json")]
    assert same["answers"][4]["body"]["error"]["message"].endswith("got a JSON list")


@pytest.mark.parametrize("fault, path, body, status", [
    ("error_400", "/v1/chat/completions", chat("gpt-4o-mini"), 400),
    ("error_400", "/v1/messages", message("claude-3-5-haiku-latest"), 400),
    ("error_400", "/v1/chat/completions", chat("memory/gpt-4o-mini", stream=True), 400),
    ("error_400", "/v1/messages", message("claude-sonnet-4-5", stream=True), 400),
])
def test_upstream_errors_pass_through_the_same(stacks, fault, path, body, status):
    same = assert_same(in_both(stacks, lambda url: [call(url, path, body)],
                               before=lambda: stacks.fault(fault, count=5)))
    [got] = same["answers"]
    assert got["status"] == status and "Emulated fault" in json.dumps(got["body"])


def test_upstream_timeout_is_504(stacks):
    outcomes = in_both(stacks, lambda url: [call(url, "/v1/chat/completions", chat("gpt-4o-mini"))],
                       before=lambda: stacks.fault("slow", delay=READ_TIMEOUT + 4))
    for outcome in outcomes.values():  # what reached the emulator may include LiteLLM's retries
        outcome.pop("upstream")
    [got] = assert_same(outcomes)["answers"]
    assert got["status"] == 504 and got["body"]["error"]["code"] == "upstream_timeout"


def test_front_door_key(stacks):
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/chat/completions", chat("gpt-4o-mini"), key=None),
        call(url, "/v1/chat/completions", chat("gpt-4o-mini"), key="wrong-key-0123456789"),
        call(url, "/v1/models", method="GET", key=None),
        call(url, "/memory-routing/info", method="GET", key=None),
        call(url, "/v1/messages", message("claude-3-5-haiku-latest"), key=None,
             headers={"x-api-key": FRONT_KEY}),
    ]))
    assert [a["status"] for a in same["answers"]] == [401, 401, 401, 401, 200]
    assert same["answers"][0]["body"]["error"]["type"] == "authentication_error"
    assert all(u["headers"].get("x-api-key") == ANTHROPIC_KEY for u in same["upstream"])


def test_front_door_refusals_are_the_same_and_relay_nothing(stacks):
    """Browsers, foreign Host names and LiteLLM's admin routes, in both backends."""
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/chat/completions", chat("memory/gpt-4o-mini"), headers={"host": "attacker.example"}),
        call(url, "/v1/chat/completions", chat("memory/gpt-4o-mini"), headers={"origin": "http://attacker.example"}),
        call(url, "/v1/chat/completions", chat("gpt-4o-mini"), headers={"origin": "null"}),
        call(url, "/v1/models", method="GET", headers={"sec-fetch-site": "cross-site"}),
        call(url, "/health", method="GET", headers={"origin": "http://attacker.example"}),
        call(url, "/v1/chat/completions", method="OPTIONS", headers={
            "origin": "http://attacker.example", "access-control-request-method": "POST"}),
        call(url, "/model/info", method="GET"),
        call(url, "/key/generate", {}),
        call(url, "/scope/proj/config/update", {}),
        call(url, "/api/event_logging/batch", {"events": []}),
    ]))
    assert [(a["status"], a["body"]["error"]["code"] if a["status"] != 200 else a["body"]) for a in same["answers"]] \
        == [(403, "host_not_allowed")] + [(403, "origin_not_allowed")] * 5 + [(404, "route_not_served")] * 3 \
        + [(200, {})]
    assert same["upstream"] == []


# --- models, memory --------------------------------------------------------------------------


def test_models_in_both_shapes(stacks):
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/models", method="GET"),
        call(url, "/models", method="GET"),
        call(url, "/v1/models", method="GET", headers={"anthropic-version": "2023-06-01", "user-agent": CLAUDE}),
    ]))
    assert [a["status"] for a in same["answers"]] == [200, 200, 200] and same["upstream"] == []
    names = ["gpt-4o-mini", "claude-3-5-haiku-latest", "memory/gpt-4o-mini", "claude-sonnet-4-5", "embed"]
    for mode in MODES:  # the normalized comparison above drops "id": compare the names as they are
        openai_shape = call(stacks.urls[mode], "/v1/models", method="GET").json()
        anthropic_shape = call(stacks.urls[mode], "/v1/models", method="GET",
                               headers={"anthropic-version": "2023-06-01"}).json()
        assert openai_shape["object"] == "list" and [m["id"] for m in openai_shape["data"]] == names, mode
        assert all(m["object"] == "model" and m["owned_by"] == "openai" for m in openai_shape["data"])
        assert [m["id"] for m in anthropic_shape["data"]] == names and anthropic_shape["has_more"] is False
        assert anthropic_shape["first_id"] == names[0] and anthropic_shape["data"][0]["type"] == "model"


@pytest.mark.parametrize("path, make", [("/v1/chat/completions", chat), ("/v1/messages", message)])
def test_memory_is_kept_per_id(stacks, path, make):
    model = "memory/gpt-4o-mini" if path.endswith("completions") else "claude-sonnet-4-5"

    def scenario(url):
        return [call(url, path, make(model, "My name is Alice"), headers={"x-memory-user-id": "alice-id"}),
                call(url, path, make(model, "What is my name?"), headers={"x-memory-user-id": "alice-id"}),
                call(url, path, make(model, "What is my name?"), headers={"x-memory-user-id": "bob-id"}),
                call(url, "/scope/alice-id" + path, make(model, "What is my name?"))]
    same = assert_same(in_both(stacks, scenario))
    replies = [a["body"]["choices"][0]["message"]["content"] if "choices" in a["body"]
               else a["body"]["content"][0]["text"] for a in same["answers"]]
    assert replies == ["echo: My name is Alice", "Your name is Alice.", "I don't know your name.",
                       "Your name is Alice."]
    assert [u["headers"]["x-sm-user-id"] for u in same["upstream"]] == ["alice-id", "alice-id", "bob-id", "alice-id"]


def test_cookies_held_by_the_egress_in_both_modes(stacks):
    same = assert_same(in_both(stacks, lambda url: [
        call(url, "/v1/chat/completions", chat("memory/gpt-4o-mini")) for _ in range(3)]))
    assert [a["status"] for a in same["answers"]] == [200, 200, 200]
    for mode in MODES:  # cookie values differ per mode; their presence must not
        stacks.reset()
        for _ in range(2):
            call(stacks.urls[mode], "/v1/chat/completions", chat("memory/gpt-4o-mini"))
        _first, second = stacks.records()
        assert "cf_clearance" in second["cookies"] and "__cf_bm" in second["cookies"], mode


# --- what is SDK mode's own ----------------------------------------------------------------------


def test_health_says_which_mode(stacks):
    binary = httpx.get(stacks.urls["binary"] + "/health").json()
    sdk = httpx.get(stacks.urls["sdk"] + "/health").json()
    assert binary["litellm"]["ready"] is True and "backend" not in binary["litellm"]
    assert sdk["status"] == "ok" and sdk["litellm"]["ready"] is True and sdk["litellm"]["backend"] == "sdk"
    assert sdk["litellm"]["version"] and sdk["memory_proxy"]["status"] == "ok"


def test_sdk_mode_runs_litellm_on_the_apps_session(stacks):
    import litellm

    backend, runtime = stacks.sdk_app.state.sdk, stacks.sdk_app.state.runtime
    assert litellm.aclient_session is runtime.litellm  # the app's own session, which keeps no cookies
    assert len(runtime.litellm.cookies.jar) == 0
    assert len(runtime.supermemory.cookies.jar) > 0  # the egress's session holds Supermemory's cookies
    secrets = {d["litellm_params"].get("extra_headers", {}).get("x-memory-proxy-egress-secret")
               for d in backend.settings.model_list if d["model_name"] in backend.settings.backed_groups}
    assert secrets == {SECRET}  # resolved by value, never an os.environ/ reference
    assert all(not str(v).startswith("os.environ/") for d in backend.settings.model_list
               for v in d["litellm_params"].values())
