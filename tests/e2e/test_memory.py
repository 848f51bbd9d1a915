"""`memory` and `doctor` on the real chain: the launcher's stack (real litellm binary, the
memory proxy, the emulator's Supermemory router and Memory API over one store)."""

from __future__ import annotations

import json
import os
import signal

import httpx

from tests.support.stacks import ENV_KEYS

CHAT = "/v1/chat/completions"


def ask(client: httpx.Client, user: str, text: str) -> str:
    answer = client.post(CHAT, json={"model": "memory/gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                         headers={"x-memory-user-id": user})
    assert answer.status_code == 200, answer.text
    return answer.json()["choices"][0]["message"]["content"]


def ok_json(result) -> dict:
    assert result.returncode == 0, result.stdout + result.stderr
    assert not any(key in result.stdout + result.stderr for key in ENV_KEYS.values())
    return json.loads(result.stdout)


def test_what_an_id_said_can_be_listed_forgotten_and_imported_back(stack, tmp_path):
    with stack.client() as client:
        ask(client, "mem-e2e-a", "My name is Alice")
        ask(client, "mem-e2e-b", "I prefer tabs")
        assert "Alice" in ask(client, "mem-e2e-a", "What is my name?")
        a = ok_json(stack.cli("memory", "list", "--id", "mem-e2e-a", "--json", timeout=60))
        b = ok_json(stack.cli("memory", "list", "--id", "mem-e2e-b", "--json", timeout=60))
        assert "My name is Alice" in [m["memory"] for m in a["memories"]]
        assert [m["memory"] for m in b["memories"]] == ["I prefer tabs"]  # the other id: its own only
        assert not any("Alice" in m["memory"] for m in b["memories"])
        # The id of a client by its headers, as `route` resolves it (header x-memory-user-id here).
        same = ok_json(stack.cli("memory", "list", "-H", "x-memory-user-id: mem-e2e-a", "--json", timeout=60))
        assert same["user_id"] == "mem-e2e-a" and same["memories"] == a["memories"]

        exported = stack.cli("memory", "export", "--id", "mem-e2e-a", timeout=60)
        assert exported.returncode == 0, exported.stderr
        dump = tmp_path / "a.json"
        dump.write_text(exported.stdout)
        ok_json(stack.cli("memory", "forget", "--all", "--yes", "--id", "mem-e2e-a", "--json", timeout=60))
        assert "Alice" not in ask(client, "mem-e2e-a", "What is my name?")
        ok_json(stack.cli("memory", "import", str(dump), "--id", "mem-e2e-a", "--json", timeout=60))
        assert "Alice" in ask(client, "mem-e2e-a", "What is my name?")
        assert "Alice" not in ask(client, "mem-e2e-b", "What is my name?")


def doctor(stack) -> tuple[int, dict]:
    result = stack.cli("doctor", "--json", timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    assert not any(key in result.stdout + result.stderr for key in ENV_KEYS.values()), "doctor printed a key"
    human = stack.cli("doctor", timeout=60)
    assert not any(key in human.stdout + human.stderr for key in ENV_KEYS.values()), "doctor printed a key"
    return result.returncode, json.loads(result.stdout)


def test_doctor_on_the_running_stack(stack):
    stack.wait_healthy()
    code, report = doctor(stack)
    assert code == 0, json.dumps(report, indent=1)
    levels = {c["area"]: c["level"] for c in report["checks"]}
    for area in ("supervisor", "memory proxy", "LiteLLM", "supermemory", "clock"):
        assert levels.get(area) in ("ok", "warn"), (area, report)
    assert any("key accepted" in c["message"] for c in report["checks"] if c["area"] == "supermemory")


def test_doctor_counts_provoked_cloudflare_refusals(stack):
    httpx.post(f"{stack.emulator_url}/_emulator/cloudflare", json={"refuse_next": 2})
    with stack.client() as client:
        answer = client.post(CHAT, json={"model": "memory/gpt-4o-mini",
                                         "messages": [{"role": "user", "content": "hello"}]},
                             headers={"x-memory-user-id": "mem-e2e-cf"})
    assert answer.status_code in (200, 503)  # refused twice at the egress; LiteLLM may retry it
    code, report = doctor(stack)
    (refusals,) = [c for c in report["checks"] if c["area"] == "egress" and "Cloudflare" in c["message"]]
    assert refusals["level"] == "warn" and "last" in refusals["message"] and refusals["fix"]
    assert int(refusals["message"].split()[0]) >= 1
    assert code == 0  # refusals are a warning: the chain itself works


def test_doctor_fails_while_litellm_does_not_answer(stack):
    stack.wait_healthy()
    pid = stack.record()["processes"]["litellm"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        code, report = doctor(stack)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert code == 1
    failing = [c for c in report["checks"] if c["level"] == "fail"]
    assert failing and all(c["area"] == "LiteLLM" for c in failing), failing
    assert all("logs litellm" in c["fix"] for c in failing)
    stack.wait_healthy()
