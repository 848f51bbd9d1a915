"""The usage record through the real chain: known traffic from several clients must give
exactly those rows (counts, tokens as the emulator reported them, statuses, Supermemory
signals) in the store, in ``stats --json`` and in the dashboard's API."""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import pytest

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ANTHROPIC = {"anthropic-version": "2023-06-01"}
CACHED = {"type": "ephemeral"}


def fault(stack, mode: str, count: int = 1) -> None:
    assert httpx.post(f"{stack.emulator_url}/_emulator/faults", json={"mode": mode, "count": count}).status_code == 200


def rows(stack, clients: tuple[str, ...]) -> list[dict]:
    db = sqlite3.connect(f"file:{stack.state / 'usage.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    marks = ",".join("?" * len(clients))
    found = [dict(r) for r in db.execute(f"SELECT * FROM usage_requests WHERE client_id IN ({marks}) "
                                         "ORDER BY ts_ms", clients)]
    db.close()
    return found


def wait_rows(stack, clients: tuple[str, ...], count: int, litellm: int, timeout: float = 30) -> list[dict]:
    """The clients' rows once ``count`` are there and ``litellm`` of them have LiteLLM's figures
    (LiteLLM's callback flushes once a second)."""
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        if (stack.state / "usage.sqlite3").exists():
            found = rows(stack, clients)
            if len(found) >= count and sum(1 for r in found if r["litellm_status"]) >= litellm:
                return found
        time.sleep(0.3)
    raise AssertionError(f"expected {count} rows ({litellm} with LiteLLM's figures), got "
                         f"{json.dumps(found, indent=1)}")


@pytest.fixture(scope="module")
def traffic(stack):
    """Known requests from three clients, sent once for the module's tests."""
    with stack.client() as client:
        def send(client_id: str, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
            return client.post(path, json=body, headers={"x-memory-user-id": client_id, **(headers or {})})

        # usage-a: OpenAI shape, plain and streamed, and an error from the provider
        plain = send("usage-a", CHAT, {"model": "gpt-4o-mini",
                                        "messages": [{"role": "user", "content": "count these four words"}]})
        assert plain.status_code == 200, plain.text
        streamed = send("usage-a", CHAT, {"model": "gpt-4o-mini", "stream": True,
                                           "messages": [{"role": "user", "content": "two words"}]},
                        {"x-claude-code-session-id": "session-usage-1"})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        fault(stack, "error_400")
        failed = send("usage-a", CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        assert failed.status_code == 400, failed.text
        # usage-b: Anthropic shape with prompt caching, plain and streamed
        cached = [{"role": "user", "content": [{"type": "text", "text": "three little words",
                                                 "cache_control": CACHED}]}]
        anthropic = send("usage-b", MESSAGES, {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                                                "messages": cached}, ANTHROPIC)
        assert anthropic.status_code == 200, anthropic.text
        anthropic_stream = send("usage-b", MESSAGES, {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                                                       "stream": True, "messages": cached}, ANTHROPIC)
        assert anthropic_stream.status_code == 200 and "message_stop" in anthropic_stream.text
        # usage-c: Supermemory-backed, once with Supermemory's "could not add memory" header
        fault(stack, "memory_error")
        sm_error = send("usage-c", CHAT, {"model": "memory/gpt-4o-mini",
                                           "messages": [{"role": "user", "content": "remember me"}]})
        assert sm_error.status_code == 200, sm_error.text
        remembered = send("usage-c", CHAT, {"model": "memory/gpt-4o-mini",
                                             "messages": [{"role": "user", "content": "hello again"}]})
        assert remembered.status_code == 200, remembered.text
        # usage-d walks away from a stream that never ends
        fault(stack, "endless_stream")
        with client.stream("POST", CHAT, json={"model": "gpt-4o-mini", "stream": True,
                                               "messages": [{"role": "user", "content": "go on"}]},
                           headers={"x-memory-user-id": "usage-d"}) as gone:
            assert gone.status_code == 200
            next(gone.iter_raw())
    return wait_rows(stack, ("usage-a", "usage-b", "usage-c", "usage-d"), 8, 8)


def by_client(found: list[dict], client_id: str) -> list[dict]:
    return [r for r in found if r["client_id"] == client_id]


def test_each_request_has_one_row_with_the_ingress_figures(traffic):
    assert len(traffic) == 8 and len({r["request_id"] for r in traffic}) == 8
    a = by_client(traffic, "usage-a")
    assert [(r["status"], r["streamed"], r["api_shape"], r["model_group"]) for r in a] == [
        (200, 0, "openai_chat", "gpt-4o-mini"), (200, 1, "openai_chat", "gpt-4o-mini"),
        (400, 0, "openai_chat", "gpt-4o-mini")]
    assert all(r["client_source"] == "custom_header" and r["project"] == "usage-a" for r in a)
    assert a[1]["session_id"] == "session-usage-1" and a[0]["session_id"] is None
    assert a[1]["first_event_ms"] > 0 and a[0]["first_event_ms"] is None
    for r in traffic:
        assert r["latency_ms"] > 0 and r["ttfb_ms"] > 0 and r["ttfb_ms"] <= r["latency_ms"] and r["method"] == "POST"
    (d,) = by_client(traffic, "usage-d")
    assert d["completed"] == 0 and d["streamed"] == 1 and d["status"] == 200
    assert d["error_code"] == "499"  # LiteLLM's figure for a client that left


def test_tokens_and_cost_come_from_litellm_without_double_counting(traffic):
    a = by_client(traffic, "usage-a")
    # "count these four words" -> "echo: count these four words"; "two words" -> "echo: two words"
    assert [(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"])
            for r in a[:2]] == [(4, 5, 0, 0), (2, 3, 0, 0)]
    assert all(r["provider"] == "openai" and r["deployment"] == "openai/gpt-4o-mini" for r in a)
    assert all(r["priced"] == 1 and r["cost_usd"] > 0 for r in a[:2])
    assert a[2]["litellm_status"] == "failure"
    b = by_client(traffic, "usage-b")
    # Anthropic: 3 input tokens apart from the emulator's 7 cache reads and 5 cache writes
    assert [(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"])
            for r in b] == [(3, 4, 7, 5), (3, 4, 7, 5)]
    assert [(r["api_shape"], r["streamed"], r["provider"]) for r in b] == [
        ("anthropic_messages", 0, "anthropic"), ("anthropic_messages", 1, "anthropic")]
    assert all(r["priced"] == 0 for r in b)  # LiteLLM has no price for claude-3-5-haiku-latest


def test_supermemory_signals_are_recorded(traffic):
    c = by_client(traffic, "usage-c")
    assert [r["supermemory"] for r in c] == [1, 1]
    assert c[0]["sm_error"] == "Emulated fault: memory store unavailable"
    assert c[1]["sm_error"] is None and c[1]["sm_context_modified"] == 1 and c[1]["sm_chunks_retrieved"] >= 1
    assert c[1]["sm_tokens_processed"] == 2 and c[1]["sm_conversation_id"]
    assert all(r["cf_retries"] == 0 for r in c)
    assert all(r["supermemory"] == 0 for r in traffic if r["client_id"] != "usage-c")


def test_no_prompt_or_answer_text_is_stored(stack, traffic):
    raw = (stack.state / "usage.sqlite3").read_bytes()
    wal = stack.state / "usage.sqlite3-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    for text in (b"count these four words", b"three little words", b"remember me", b"echo:"):
        assert text not in raw


def test_stats_json_gives_the_same_figures(stack, traffic):
    figures = {}
    for client_id in ("usage-a", "usage-b", "usage-c", "usage-d"):
        result = stack.cli("stats", "daily", "--json", "--id", client_id, timeout=60)
        assert result.returncode == 0, result.stderr
        (report,) = json.loads(result.stdout)["reports"]
        figures[client_id] = report["total"]
    a, b, c, d = (figures[k] for k in ("usage-a", "usage-b", "usage-c", "usage-d"))
    assert (a["requests"], a["errors"], a["input_tokens"], a["output_tokens"], a["unpriced_requests"]) == (
        3, 1, 6, 8, 0)
    assert a["cost_usd"] > 0 and a["p50_latency_ms"] > 0 and a["p50_first_event_ms"] > 0
    assert (b["requests"], b["input_tokens"], b["output_tokens"], b["cache_read_tokens"], b["cache_write_tokens"],
            b["unpriced_requests"]) == (2, 6, 8, 14, 10, 2)
    assert (c["requests"], c["memory_errors"], c["context_modified"], c["cloudflare_retries"]) == (2, 1, 1, 0)
    assert (d["requests"], d["errors"]) == (1, 0)
    human = stack.cli("stats", "--by", "client", timeout=60)
    assert human.returncode == 0 and "usage-b" in human.stdout and "n/a*" in human.stdout


def test_dashboard_api_gives_the_same_figures(stack, traffic):
    assert f"Usage: {stack.proxy_url}/ui/ (dashboard)" in stack.last_up.stdout
    summary = httpx.get(f"{stack.proxy_url}/ui/api/summary", params={"range": "today", "by": "client"},
                        timeout=30).json()
    rows = {r["key"]: r for r in summary["rows"]}
    assert (rows["usage-a"]["requests"], rows["usage-a"]["errors"], rows["usage-a"]["input_tokens"]) == (3, 1, 6)
    assert (rows["usage-b"]["cache_read_tokens"], rows["usage-b"]["cache_write_tokens"],
            rows["usage-b"]["unpriced_requests"]) == (14, 10, 2)
    assert (rows["usage-c"]["memory_errors"], rows["usage-c"]["context_modified"]) == (1, 1)
    latest = httpx.get(f"{stack.proxy_url}/ui/api/requests", params={"limit": 1000}, timeout=30).json()["rows"]
    ours = [r for r in latest if r["client_id"] in ("usage-a", "usage-b", "usage-c", "usage-d")]
    assert sorted(r["request_id"] for r in ours) == sorted(r["request_id"] for r in traffic)
    status = httpx.get(f"{stack.proxy_url}/health", timeout=30).json()["memory_proxy"]["usage"]
    assert status["enabled"] and status["store_ok"] and status["dropped"] == 0


def test_metrics_count_the_tokens_the_record_holds(stack, traffic):
    """``/metrics`` takes its token and cost counters from the same LiteLLM reports as the record."""
    from prometheus_client.parser import text_string_to_metric_families

    with stack.client() as client:
        text = client.get("/metrics").text
    counted: dict[tuple[str, str], float] = {}
    cost: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "memory_proxy_tokens_total":
                key = (s.labels["client"], s.labels["kind"])
                counted[key] = counted.get(key, 0) + s.value
            elif s.name == "memory_proxy_cost_usd_total":
                cost[s.labels["client"]] = cost.get(s.labels["client"], 0) + s.value
    for client_id in ("usage-a", "usage-b", "usage-c"):
        mine = by_client(traffic, client_id)
        for kind in ("input", "output", "cache_read", "cache_write"):
            assert counted.get((client_id, kind), 0) == sum(r[f"{kind}_tokens"] or 0 for r in mine), (client_id, kind)
        assert cost.get(client_id, 0) == pytest.approx(sum(r["cost_usd"] or 0 for r in mine))
