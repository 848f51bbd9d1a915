"""The usage record through the real chain: known traffic from several clients must give
exactly those rows (counts, tokens as the emulator reported them, statuses, Supermemory
signals) in the store, in ``stats --json`` and in the dashboard's API, and a store that fails
mid-run must lose no request.

The same traffic and assertions run on each setup of the store, one ``usage_stack`` after the
other (pytest runs the module's tests once per stack), each started by ``start_proxies.py up
--detach`` and stopped by ``down``:

- ``binary``: the session's stack (the real ``litellm`` binary), SQLite in its state folder;
- ``sdk``: ``up --backend sdk`` (LiteLLM's Router inside the memory proxy), SQLite;
- ``postgresql``: the binary with ``memory_proxy.usage.database_url`` naming a throw-away
  PostgreSQL cluster (``tests/support/postgres.py``).

Each stack's clients have ids of their own (``usage-a-sdk``, ...): the emulator, and so
Supermemory's memory of a client, is shared by all of them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.configs import config_text
from tests.support.postgres import Cluster, throwaway_cluster
from tests.support.readiness import poll
from tests.support.stacks import Stack, cli_env, new_stack

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
ANTHROPIC = {"anthropic-version": "2023-06-01"}
CACHED = {"type": "ephemeral"}
BACKENDS = ("binary", "sdk", "postgresql")
CLIENTS = ("a", "b", "c", "d")  # the traffic's clients, by letter (``UsageStack.id``)


@dataclass
class UsageStack:
    """A running stack and where its usage store is."""

    backend: str
    stack: Stack
    cluster: Cluster | None = None  # PostgreSQL; else SQLite in the state folder

    def id(self, letter: str) -> str:
        return f"usage-{letter}-{self.backend}"

    @property
    def sqlite(self) -> Path:
        return self.stack.state / "usage.sqlite3"

    def rows(self, clients: tuple[str, ...]) -> list[dict]:
        """The store's rows of these client ids, oldest first."""
        where = f"SELECT * FROM usage_requests WHERE client_id IN ({','.join('?' * len(clients))}) ORDER BY ts_ms"
        if self.cluster is not None:
            return self.cluster.query(where.replace("?", "%s"), clients)
        if not self.sqlite.exists():
            return []
        db = sqlite3.connect(f"file:{self.sqlite}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        found = [dict(r) for r in db.execute(where, clients)]
        db.close()
        return found

    def wait_rows(self, clients: tuple[str, ...], count: int, litellm: int, timeout: float = 30) -> list[dict]:
        """The clients' rows once ``count`` are there and ``litellm`` of them have LiteLLM's
        figures (LiteLLM's callback flushes once a second)."""
        deadline = time.monotonic() + timeout
        found: list[dict] = []
        while time.monotonic() < deadline:
            found = self.rows(clients)
            if len(found) >= count and sum(1 for r in found if r["litellm_status"]) >= litellm:
                return found
            time.sleep(0.3)
        raise AssertionError(f"expected {count} rows ({litellm} with LiteLLM's figures), got "
                             f"{json.dumps(found, indent=1)}")

    def stored_bytes(self) -> bytes:
        """Every byte the store keeps on disk."""
        if self.cluster is not None:
            return self.cluster.stored_bytes()
        wal = self.sqlite.with_name("usage.sqlite3-wal")
        return self.sqlite.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    @contextlib.contextmanager
    def store_failing(self) -> Iterator[None]:
        """The store fails until the block ends: PostgreSQL killed (``pg_ctl stop -m immediate``,
        recovered from its log on restart), SQLite held by another process's write transaction
        (the writer gets "database is locked")."""
        if self.cluster is not None:
            self.cluster.crash()
            try:
                yield
            finally:
                self.cluster.start()
            return
        db = sqlite3.connect(self.sqlite, timeout=5, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()

    def store_error(self) -> str:
        """How the writer names the failure of ``store_failing`` once it has retried: SQLite's
        busy timeout runs out; PostgreSQL refuses the reconnect (the first try fails on the
        connection the stopping server ended: ``AdminShutdown``)."""
        if self.cluster is None:
            return "OperationalError: database is locked"
        return (f'OperationalError: connection failed: connection to server at "127.0.0.1", port {self.cluster.port} '
                "failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?")

    def usage_status(self) -> dict:
        """The writer's state as ``status --json`` shows it."""
        return self.stack.status()["processes"]["memory_proxy"]["usage"]


USAGE_DATABASE = "  usage: {database_url: os.environ/USAGE_DATABASE_URL}\n"


@pytest.fixture(scope="module", params=BACKENDS)
def usage_stack(request, emulator, tmp_path_factory) -> Iterator[UsageStack]:
    backend = request.param
    if backend == "binary":
        yield UsageStack(backend, request.getfixturevalue("stack"))
        return
    root = tmp_path_factory.mktemp(f"usage-{backend}")
    if backend == "sdk":
        st = new_stack(root, emulator)
        with st.running("--backend", "sdk"):
            yield UsageStack(backend, st)
        return
    with throwaway_cluster() as cluster:
        st = new_stack(root, emulator, env=cli_env(USAGE_DATABASE_URL=cluster.url),
                       config=lambda proxy, litellm: config_text(emulator.provider_port, emulator.supermemory_port,
                                                                 proxy, litellm, USAGE_DATABASE))
        with st.running():
            yield UsageStack(backend, st, cluster)


@dataclass
class Traffic:
    usage: UsageStack
    rows: list[dict]  # every row of the traffic's clients, oldest first

    def of(self, letter: str) -> list[dict]:
        return [r for r in self.rows if r["client_id"] == self.usage.id(letter)]


@pytest.fixture(scope="module")
def traffic(usage_stack) -> Traffic:
    """Known requests from four clients, sent once per stack for the module's tests."""
    stack, who, emu = usage_stack.stack, usage_stack.id, usage_stack.stack.emu
    with stack.client() as client:
        def send(letter: str, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
            return client.post(path, json=body, headers={"x-memory-user-id": who(letter), **(headers or {})})

        # a: OpenAI shape, plain and streamed, and an error from the provider
        plain = send("a", CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user",
                                                                        "content": "count these four words"}]})
        assert plain.status_code == 200, plain.text
        streamed = send("a", CHAT, {"model": "gpt-4o-mini", "stream": True,
                                    "messages": [{"role": "user", "content": "two words"}]},
                        {"x-claude-code-session-id": "session-usage-1"})
        assert streamed.status_code == 200 and "[DONE]" in streamed.text
        emu.fault("error_400")
        failed = send("a", CHAT, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        assert failed.status_code == 400, failed.text
        # b: Anthropic shape with prompt caching, plain and streamed
        cached = [{"role": "user", "content": [{"type": "text", "text": "three little words",
                                                 "cache_control": CACHED}]}]
        anthropic = send("b", MESSAGES, {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                                         "messages": cached}, ANTHROPIC)
        assert anthropic.status_code == 200, anthropic.text
        anthropic_stream = send("b", MESSAGES, {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
                                                "stream": True, "messages": cached}, ANTHROPIC)
        assert anthropic_stream.status_code == 200 and "message_stop" in anthropic_stream.text
        # ... and the same model through LiteLLM's OpenAI shape, whose prompt_tokens include the cache
        through_openai = send("b", CHAT, {"model": "claude-3-5-haiku-latest", "max_tokens": 50, "messages": cached})
        assert through_openai.status_code == 200, through_openai.text
        # c: Supermemory-backed. Its first request is refused once by Cloudflare (1200) and
        # retried by the egress, whatever the stack's cookie jar holds (the shared emulator
        # refuses a new stack's empty jar once anyway), and Supermemory answers it with its
        # "could not add memory" header.
        emu.refuse_cloudflare(1)
        emu.fault("memory_error")
        sm_error = send("c", CHAT, {"model": "memory/gpt-4o-mini",
                                    "messages": [{"role": "user", "content": "remember me"}]})
        assert sm_error.status_code == 200, sm_error.text
        remembered = send("c", CHAT, {"model": "memory/gpt-4o-mini",
                                      "messages": [{"role": "user", "content": "hello again"}]})
        assert remembered.status_code == 200, remembered.text
        # d walks away from a stream that never ends
        emu.fault("endless_stream")
        with client.stream("POST", CHAT, json={"model": "gpt-4o-mini", "stream": True,
                                               "messages": [{"role": "user", "content": "go on"}]},
                           headers={"x-memory-user-id": who("d")}) as gone:
            assert gone.status_code == 200
            next(gone.iter_raw())
    return Traffic(usage_stack, usage_stack.wait_rows(tuple(who(c) for c in CLIENTS), 9, 9))


def test_each_request_has_one_row_with_the_ingress_figures(traffic):
    rows = traffic.rows
    assert len(rows) == 9 and len({r["request_id"] for r in rows}) == 9
    a = traffic.of("a")
    assert [(r["status"], r["streamed"], r["api_shape"], r["model_group"]) for r in a] == [
        (200, 0, "openai_chat", "gpt-4o-mini"), (200, 1, "openai_chat", "gpt-4o-mini"),
        (400, 0, "openai_chat", "gpt-4o-mini")]
    assert all(r["client_source"] == "custom_header" and r["project"] == traffic.usage.id("a") for r in a)
    assert a[1]["session_id"] == "session-usage-1" and a[0]["session_id"] is None
    assert a[1]["first_event_ms"] > 0 and a[0]["first_event_ms"] is None
    for r in rows:
        assert r["latency_ms"] > 0 and r["ttfb_ms"] > 0 and r["ttfb_ms"] <= r["latency_ms"] and r["method"] == "POST"
    for r in (r for r in rows if r["streamed"]):
        if traffic.usage.backend == "sdk":  # no LiteLLM answer head in-process: its first event is the first byte
            assert r["ttfb_ms"] == r["first_event_ms"]
        else:  # LiteLLM's answer head arrives before its first event
            assert r["ttfb_ms"] < r["first_event_ms"]
    (d,) = traffic.of("d")
    assert d["completed"] == 0 and d["streamed"] == 1 and d["status"] == 200
    assert d["error_code"] == "499"  # LiteLLM's figure for a client that left


def test_tokens_and_cost_come_from_litellm_without_double_counting(traffic):
    a = traffic.of("a")
    # "count these four words" -> "echo: count these four words"; "two words" -> "echo: two words"
    assert [(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"])
            for r in a[:2]] == [(4, 5, 0, 0), (2, 3, 0, 0)]
    assert all(r["provider"] == "openai" and r["deployment"] == "openai/gpt-4o-mini" for r in a)
    assert all(r["priced"] == 1 and r["cost_usd"] > 0 for r in a[:2])
    assert (a[2]["litellm_status"], a[2]["error_code"]) == ("failure", "400")
    b = traffic.of("b")
    # Anthropic: 3 input tokens apart from the emulator's 7 cache reads and 5 cache writes, natively
    # and through LiteLLM's OpenAI shape (whose prompt_tokens, 15, include the cache tokens)
    assert [(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"])
            for r in b] == [(3, 4, 7, 5)] * 3
    assert [(r["api_shape"], r["streamed"], r["provider"]) for r in b] == [
        ("anthropic_messages", 0, "anthropic"), ("anthropic_messages", 1, "anthropic"),
        ("openai_chat", 0, "anthropic")]
    assert all(r["priced"] == 0 for r in b)  # LiteLLM has no price for claude-3-5-haiku-latest


def test_supermemory_signals_are_recorded(traffic):
    c = traffic.of("c")
    assert [r["supermemory"] for r in c] == [1, 1]
    assert (c[0]["sm_error"], c[0]["cf_retries"]) == ("Emulated fault: memory store unavailable", 1)
    # "hello again": one memory retrieved (what "remember me" left), one created, 2 tokens
    assert [(r["sm_error"], r["sm_context_modified"], r["sm_chunks_retrieved"], r["sm_chunks_created"],
             r["sm_tokens_processed"], r["sm_conversation_id"], r["cf_retries"]) for r in c[1:]] == [
        (None, 1, 1, 1, 2, f"conv-{traffic.usage.id('c')}", 0)]
    assert all(r["supermemory"] == 0 for r in traffic.rows if r not in c)


def test_no_prompt_or_answer_text_is_stored(traffic):
    if traffic.usage.cluster is not None:  # the records went to PostgreSQL only
        assert not traffic.usage.sqlite.exists()
    raw = traffic.usage.stored_bytes()
    for text in (b"count these four words", b"three little words", b"remember me", b"echo:"):
        assert text not in raw


def test_stats_json_gives_the_same_figures(traffic):
    stack, who = traffic.usage.stack, traffic.usage.id
    figures = {}
    for letter in CLIENTS:
        result = stack.cli("stats", "daily", "--json", "--id", who(letter), timeout=60)
        assert result.returncode == 0, result.stderr
        (report,) = json.loads(result.stdout)["reports"]
        figures[letter] = report["total"]
    a, b, c, d = (figures[k] for k in CLIENTS)
    assert (a["requests"], a["errors"], a["input_tokens"], a["output_tokens"], a["unpriced_requests"]) == (
        3, 1, 6, 8, 0)
    assert a["cost_usd"] > 0 and a["p50_latency_ms"] > 0 and a["p50_first_event_ms"] > 0
    assert (b["requests"], b["input_tokens"], b["output_tokens"], b["cache_read_tokens"], b["cache_write_tokens"],
            b["unpriced_requests"]) == (3, 9, 12, 21, 15, 3)
    assert (c["requests"], c["memory_errors"], c["context_modified"], c["cloudflare_retries"]) == (2, 1, 1, 1)
    assert (d["requests"], d["errors"]) == (1, 0)
    human = stack.cli("stats", "--by", "client", timeout=60)
    assert human.returncode == 0 and who("b") in human.stdout and "n/a*" in human.stdout


def test_dashboard_api_gives_the_same_figures(traffic):
    stack, who = traffic.usage.stack, traffic.usage.id
    assert f"Usage: {stack.proxy_url}/ui/ (dashboard)" in stack.last_up.stdout
    summary = httpx.get(f"{stack.proxy_url}/ui/api/summary", params={"range": "today", "by": "client"},
                        timeout=30).json()
    rows = {r["key"]: r for r in summary["rows"]}
    a, b, c = rows[who("a")], rows[who("b")], rows[who("c")]
    assert (a["requests"], a["errors"], a["input_tokens"]) == (3, 1, 6)
    assert (b["cache_read_tokens"], b["cache_write_tokens"], b["unpriced_requests"]) == (21, 15, 3)
    assert (c["memory_errors"], c["context_modified"], c["cloudflare_retries"]) == (1, 1, 1)
    latest = httpx.get(f"{stack.proxy_url}/ui/api/requests", params={"limit": 1000}, timeout=30).json()["rows"]
    ours = [r for r in latest if r["client_id"] in {who(letter) for letter in CLIENTS}]
    assert sorted(r["request_id"] for r in ours) == sorted(r["request_id"] for r in traffic.rows)
    status = httpx.get(f"{stack.proxy_url}/health", timeout=30).json()["memory_proxy"]["usage"]
    assert status["enabled"] and status["store_ok"] and status["dropped"] == 0


def test_metrics_count_the_tokens_the_record_holds(traffic):
    """``/metrics`` takes its token and cost counters from the same LiteLLM reports as the record."""
    from prometheus_client.parser import text_string_to_metric_families

    with traffic.usage.stack.client() as client:
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
    for letter in ("a", "b", "c"):
        client_id, mine = traffic.usage.id(letter), traffic.of(letter)
        for kind in ("input", "output", "cache_read", "cache_write"):
            assert counted.get((client_id, kind), 0) == sum(r[f"{kind}_tokens"] or 0 for r in mine), (client_id, kind)
        assert cost.get(client_id, 0) == pytest.approx(sum(r["cost_usd"] or 0 for r in mine))


def test_a_store_that_fails_mid_traffic_loses_no_request(usage_stack):
    """The store fails while a client keeps sending (PostgreSQL killed with ``pg_ctl stop -m
    immediate``; SQLite locked by another process's write transaction): every answer is as usual,
    ``status``, ``/health`` and ``/ui/api/status`` say the store is failing and how many records
    wait, and once it is back every request has its one complete row."""
    stack, client_id = usage_stack.stack, usage_stack.id("e")
    sent: list[str] = []
    with stack.client(headers={"x-memory-user-id": client_id}) as client:
        def send(*streams: bool) -> None:
            for stream in streams:
                answer = client.post(CHAT, json={"model": "gpt-4o-mini", "stream": stream,
                                                 "messages": [{"role": "user", "content": "two words"}]})
                assert answer.status_code == 200 and ("[DONE]" in answer.text) == stream, answer.text
                sent.append(answer.headers["x-request-id"])

        send(False, True)
        usage_stack.wait_rows((client_id,), 2, 2)  # the store takes records
        with usage_stack.store_failing():
            send(False, True, False, True)
            # 4 requests, 2 parts each (the ingress's, LiteLLM's), none written
            error = usage_stack.store_error()
            failing = poll(usage_stack.usage_status, lambda u: u["queued"] == 8 and u["last_error"] == error,
                           timeout=30)
            assert (failing["store_ok"], failing["queued"], failing["dropped"], failing["last_error"]) == (
                False, 8, 0, error), failing
            health = httpx.get(f"{stack.proxy_url}/health", timeout=30).json()["memory_proxy"]["usage"]
            ui = httpx.get(f"{stack.proxy_url}/ui/api/status", timeout=30).json()["usage"]
            for said in (health, ui):
                assert (said["store_ok"], said["queued"], said["dropped"], said["last_error"]) == (
                    False, 8, 0, error), said
            text = stack.cli("status", timeout=60)
            said = " ".join((text.stdout + text.stderr).split())  # the terminal expands the error's tab
            assert " ".join(f"memory_proxy: the usage store is failing ({error}); 8 records queued, 0 dropped".split()
                            ) in said, said
            send(False, True)
        after = usage_stack.wait_rows((client_id,), 8, 8)
    assert sorted(r["request_id"] for r in after) == sorted(sent)
    assert [(r["status"], r["completed"], r["streamed"], r["input_tokens"], r["output_tokens"], r["litellm_status"])
            for r in after] == [(200, 1, stream, 2, 3, "success") for stream in (0, 1) * 4]
    recovered = usage_stack.usage_status()
    assert (recovered["store_ok"], recovered["queued"], recovered["dropped"], recovered["last_error"]) == (
        True, 0, 0, None)
    assert recovered["failed_batches"] >= 1  # how many retries the outage took depends on its length
    result = stack.cli("stats", "daily", "--json", "--id", client_id, timeout=60)
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)["reports"]
    assert (report["total"]["requests"], report["total"]["input_tokens"], report["total"]["output_tokens"]) == (
        8, 16, 24)
