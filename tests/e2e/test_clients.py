"""Each kind of client through the real chain: memory proxy -> LiteLLM -> (egress -> Supermemory) -> provider.

What arrives upstream is asserted on the emulator's own record of every request.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest

from tests.support.stacks import SM_KEY

from .conftest import CLAUDE_UA, PYCHARM_UA

CHAT = "/v1/chat/completions"


def sse_events(body: str) -> list[tuple[str | None, str]]:
    events = []
    for block in body.split("\n\n"):
        name, data = None, []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, "\n".join(data)))
    return events


def memory_calls(records: list[dict]) -> list[dict]:
    return [r for r in records if r["path"].startswith("/v3/")]


def provider_calls(records: list[dict]) -> list[dict]:
    return [r for r in records if r["path"].startswith("/v1/")]


def assert_no_memory_headers(record: dict) -> None:
    leaked = sorted(h for h in record["headers"] if h.startswith(("x-sm-", "x-supermemory-", "x-memory-")))
    assert not leaked, f"an ordinary provider got memory headers {leaked} on {record['path']}"


def test_up_printed_what_to_put_in_each_client(stack):
    printed = stack.last_up.stdout
    base = stack.proxy_url
    for line_start, setting, user_id in (("PyCharm AI Assistant", f"URL {base}/v1", "pycharm-ai"),
                                         ("Claude Code", f"ANTHROPIC_BASE_URL={base}", "claude-cli"),
                                         ("OpenAI Python SDK", f'base_url="{base}/v1"', "openai-python")):
        (line,) = [line for line in printed.splitlines() if line.strip().startswith(line_start)]
        assert setting in line and line.endswith(f"memory id: {user_id}"), line
    assert f"{base}/scope/<id>/v1" in printed
    assert f"--state-dir {stack.state} down" in printed
    assert "disabled (missing keys): needs-a-key" in printed


def test_status_reports_both_processes_healthy(stack):
    result = stack.cli("status", "--json", timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["healthy"] is True
    for name, port in (("litellm", stack.litellm_port), ("memory_proxy", stack.proxy_port)):
        proc = status["processes"][name]
        assert proc["healthy"] and proc["pid"] and proc["port"] == port
        assert proc["uptime_s"] > 0 and proc["rss_mb"] > 10
    assert status["processes"]["supervisor"]["healthy"]
    assert status["models_missing_keys"] == {"needs-a-key": ["E2E_NEVER_SET_KEY"]}
    human = stack.cli("status", timeout=30)
    assert human.returncode == 0
    assert "healthy" in human.stdout and str(stack.litellm_port) in human.stdout
    assert "E2E_NEVER_SET_KEY" in human.stderr
    again = stack.cli("up", "--detach", timeout=60)
    assert again.returncode == 0 and "already running" in again.stderr, again.stdout + again.stderr
    assert f"--state-dir {stack.state}" in again.stderr  # how to reach this installation
    with stack.client() as client:  # the model without its key was left out of LiteLLM
        answer = client.post(CHAT, json={"model": "needs-a-key", "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 400 and "needs-a-key" in answer.json()["error"]["message"]
    master_key = (stack.state / "litellm_master_key").read_text().strip()
    logs = [(stack.state / "logs" / f"{name}.log").read_text() for name in ("supervisor", "litellm", "memory")]
    for text in (result.stdout, human.stdout, human.stderr, (stack.state / "processes.json").read_text(),
                 (stack.state / "litellm_config.generated.yaml").read_text(), *logs):
        assert master_key not in text and SM_KEY not in text and stack.env["OPENAI_API_KEY"] not in text


def test_litellm_log_keeps_the_requests_and_not_the_probes(stack):
    """The supervisor's liveness probe (every 5 s) and the memory proxy's ``/health`` (every
    ``status``) ask LiteLLM: their access lines stay out of its log, its requests' do not."""
    with stack.client(headers={"user-agent": "curl/8.5.0"}) as client:
        assert client.get("/health").status_code == 200  # asks LiteLLM's readiness
        answer = client.post(CHAT, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "log?"}]})
    assert answer.status_code == 200, answer.text
    assert stack.status()["healthy"]  # `status` asks it too
    log = stack.state / "logs" / "litellm.log"
    deadline = time.monotonic() + 10
    while "chat/completions HTTP/1.1\" 200" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert "chat/completions HTTP/1.1\" 200" in text, text[-2000:]
    assert "/health/liveliness" not in text and "/health/readiness" not in text, text[-2000:]


def test_pycharm_plain_and_streaming_to_a_memory_model(stack):
    since = stack.request_count()
    headers = {"user-agent": PYCHARM_UA, "authorization": "Bearer whatever-pycharm-sends"}
    with stack.client(headers=headers) as client:
        answer = client.post(CHAT, json={"model": "memory/gpt-4o-mini",
                                         "messages": [{"role": "user", "content": "hello from pycharm"}]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-supermemory-user-id"] == "pycharm-ai"
        assert answer.json()["choices"][0]["message"]["content"] == "echo: hello from pycharm"
        with client.stream("POST", CHAT, json={"model": "memory/gpt-4o-mini", "stream": True,
                                               "messages": [{"role": "user", "content": "stream please"}]}) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/event-stream")
            body = "".join(s.iter_text())
    events = sse_events(body)
    assert events[-1][1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for _, d in events[:-1]
                   if json.loads(d).get("choices"))
    assert text == "echo: stream please"
    calls = memory_calls(stack.requests_since(since))
    assert len(calls) == 2
    for call in calls:
        assert call["path"] == f"/v3/http://127.0.0.1:{stack.provider_port}/v1/chat/completions"
        assert call["headers"]["x-sm-user-id"] == "pycharm-ai"
        assert call["headers"]["x-supermemory-api-key"] == SM_KEY
        assert call["headers"]["authorization"] == "Bearer " + stack.env["OPENAI_API_KEY"]
        assert "x-memory-proxy-egress-secret" not in call["headers"]


def test_claude_code_streams_messages_with_beta_query(stack):
    since = stack.request_count()
    headers = {"user-agent": CLAUDE_UA, "x-api-key": "sk-ant-whatever", "anthropic-version": "2023-06-01",
               "anthropic-beta": "claude-code-20250219", "x-claude-code-session-id": "sess-e2e-1"}
    with stack.client(headers=headers) as client:
        models = client.get("/v1/models")
        assert models.status_code == 200 and models.json()["data"][0]["type"] == "model"
        body = {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True,
                "messages": [{"role": "user", "content": "hello from claude code"}]}
        with client.stream("POST", "/v1/messages?beta=true", json=body) as s:
            assert s.status_code == 200
            assert s.headers["x-supermemory-user-id"] == "claude-cli"
            raw = "".join(s.iter_text())
    events = sse_events(raw)
    names = [name for name, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert "content_block_delta" in names and "message_delta" in names
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "echo: hello from claude code"
    (call,) = memory_calls(stack.requests_since(since))
    assert call["path"] == f"/v3/http://127.0.0.1:{stack.provider_port}/v1/messages"
    assert call["headers"]["x-sm-user-id"] == "claude-cli"
    assert call["headers"]["x-sm-conversation-id"] == "sess-e2e-1"
    assert call["headers"]["x-supermemory-api-key"] == SM_KEY
    assert call["headers"]["x-api-key"] == stack.env["ANTHROPIC_API_KEY"]
    assert call["body"]["stream"] is True


def test_openai_sdk_ordinary_model_gets_no_memory_headers(stack):
    openai = pytest.importorskip("openai")
    since = stack.request_count()
    with httpx.Client(trust_env=False) as http:
        client = openai.OpenAI(base_url=stack.proxy_url + "/v1", api_key="anything", http_client=http)
        reply = client.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": "plain model"}])
        assert reply.choices[0].message.content == "echo: plain model"
        chunks = client.chat.completions.create(model="memory/gpt-4o-mini", stream=True,
                                                messages=[{"role": "user", "content": "sdk stream"}])
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: sdk stream"
    records = stack.requests_since(since)
    (plain,) = provider_calls(records)
    assert plain["path"] == "/v1/chat/completions"
    assert_no_memory_headers(plain)
    (memory,) = memory_calls(records)
    assert memory["headers"]["x-sm-user-id"] == "openai-python"
    assert memory["body"]["stream"] is True


def test_anthropic_format_to_an_ordinary_model(stack):
    since = stack.request_count()
    headers = {"user-agent": "Anthropic/Python 0.40.0", "x-api-key": "anything", "anthropic-version": "2023-06-01"}
    with stack.client(headers=headers) as client:
        answer = client.post("/v1/messages", json={"model": "claude-3-5-haiku-latest", "max_tokens": 32,
                                                    "messages": [{"role": "user", "content": "hi claude"}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"][0]["text"] == "echo: hi claude"
    assert answer.headers["x-supermemory-user-id"] == "anthropic-python"
    (call,) = provider_calls(stack.requests_since(since))
    assert call["path"] == "/v1/messages"
    assert_no_memory_headers(call)


def test_curl_with_forged_memory_headers_and_an_explicit_id(stack):
    curl = shutil.which("curl")
    body = json.dumps({"model": "memory/gpt-4o-mini", "messages": [{"role": "user", "content": "curl here"}],
                       "extra_headers": {"x-sm-user-id": "victim", "x-supermemory-user-id": "victim"}})
    since = stack.request_count()

    def post(*headers: str) -> tuple[dict, dict]:
        if curl:
            out = subprocess.run([curl, "-sS", "-D", "-", "-H", "content-type: application/json",
                                  *[a for h in headers for a in ("-H", h)], "--data", body,
                                  stack.proxy_url + CHAT], capture_output=True, text=True, timeout=60,
                                 env={"PATH": "/usr/bin:/bin"})
            head, _, payload = out.stdout.partition("\n\n")  # text mode: CRLF became LF
            response_headers = {k.strip().lower(): v.strip() for k, _, v in
                                (line.partition(":") for line in head.splitlines()[1:])}
            return response_headers, json.loads(payload)
        with stack.client() as client:  # pragma: no cover - machines without curl
            answer = client.post(CHAT, content=body, headers=dict(h.split(": ", 1) for h in
                                                                  ("user-agent: curl/8.5.0", *headers)))
            return dict(answer.headers), answer.json()

    forged = ("x-sm-user-id: victim", "x-supermemory-user-id: victim", "x-supermemory-api-key: stolen")
    headers, reply = post(*forged)
    assert headers["x-supermemory-user-id"] == "curl", headers
    assert reply["choices"][0]["message"]["content"] == "echo: curl here"
    headers, _ = post("x-memory-user-id: project-e2e", *forged)
    assert headers["x-supermemory-user-id"] == "project-e2e"
    first, second = memory_calls(stack.requests_since(since))
    assert first["headers"]["x-sm-user-id"] == "curl"
    assert second["headers"]["x-sm-user-id"] == "project-e2e"
    for call in (first, second):
        assert call["headers"]["x-supermemory-api-key"] == SM_KEY
        assert "x-memory-user-id" not in call["headers"]
        assert "extra_headers" not in call["body"]


def ask(client: httpx.Client, user: str, text: str, model: str = "memory/gpt-4o-mini") -> str:
    answer = client.post(CHAT, json={"model": model, "messages": [{"role": "user", "content": text}]},
                         headers={"x-memory-user-id": user})
    assert answer.status_code == 200, answer.text
    return answer.json()["choices"][0]["message"]["content"]


def test_one_ids_memory_never_shows_up_for_another(stack):
    with stack.client() as client:
        ask(client, "e2e-alice", "My name is Alice")
        assert "Alice" in ask(client, "e2e-alice", "What is my name?")
        assert "Alice" not in ask(client, "e2e-bob", "What is my name?")
        assert "Alice" not in ask(client, "default-dev", "What is my name?")
        # The same id's memory, asked through the Anthropic-format model, streaming.
        body = {"model": "claude-sonnet-4-5", "max_tokens": 32, "stream": True,
                "messages": [{"role": "user", "content": "What is my name?"}]}
        with client.stream("POST", "/v1/messages", json=body,
                           headers={"x-memory-user-id": "e2e-alice", "anthropic-version": "2023-06-01"}) as s:
            raw = "".join(s.iter_text())
        text = "".join(json.loads(d)["delta"]["text"] for n, d in sse_events(raw) if n == "content_block_delta")
        assert "Alice" in text
        with client.stream("POST", "/v1/messages", json=body,
                           headers={"x-memory-user-id": "e2e-bob", "anthropic-version": "2023-06-01"}) as s:
            raw = "".join(s.iter_text())
        text = "".join(json.loads(d)["delta"]["text"] for n, d in sse_events(raw) if n == "content_block_delta")
        assert "Alice" not in text


def test_cloudflare_cookies_are_kept_on_the_egress_hop(stack):
    since = stack.request_count()
    with stack.client() as client:
        for i in range(3):
            ask(client, "cookie-check", f"cookie round {i}")
    calls = memory_calls(stack.requests_since(since))
    assert len(calls) == 3, "a Cloudflare refusal would show up as a retried (extra) request"
    earlier = len(memory_calls(stack.requests_since(0))) > len(calls)
    with_cookies = calls if earlier else calls[1:]  # the very first call gets them, the next ones send them
    assert all(call["cookies"].get("cf_clearance") and call["cookies"].get("__cf_bm") for call in with_cookies), \
        [call["cookies"] for call in calls]
    jar = json.loads((stack.state / "supermemory_cookies.json").read_text())
    assert {c["name"] for c in jar["cookies"]} >= {"cf_clearance", "__cf_bm"}
    assert calls[-1]["cookies"]["cf_clearance"] in {c["value"] for c in jar["cookies"]}
    # The ordinary provider never sees Supermemory's cookies.
    plain = provider_calls(stack.requests_since(0))
    assert plain and all(not call["cookies"] for call in plain)
