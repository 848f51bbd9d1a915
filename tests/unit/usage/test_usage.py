"""The usage record's parts: the queue and writer, the SQLite store, LiteLLM's payload, the intake."""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from memory_proxy.config import litellm as litellm_config
from memory_proxy.config.model import parse_config
from memory_proxy.usage import report as ur
from memory_proxy.usage.record import WRITER_NICE, UsageLog, bucket, bucket_value, from_litellm, from_supermemory
from memory_proxy.usage.store import MAX_ROWS, SCHEMA_VERSION, TABLE, SqliteStore, chunk_sizes
from tests.support.readiness import until

NOW_MS = int(time.time() * 1000)


def ingress_row(request_id: str, **more) -> dict:
    return {"request_id": request_id, "ts_ms": NOW_MS, "client_id": "c1", "client_source": "custom_header",
            "method": "POST", "path": "/v1/chat/completions", "model_group": "gpt-4o-mini", "status": 200,
            "completed": 1, "streamed": 0, "latency_ms": 12.0, **more}


wait_for = functools.partial(until, what="the usage log to get there", timeout=10)


def read(path: Path) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    found = [dict(r) for r in db.execute(f"SELECT * FROM {TABLE} ORDER BY ts_ms, request_id")]
    db.close()
    return found


def test_sources_join_by_request_id_in_any_order(tmp_path):
    path = tmp_path / "usage.sqlite3"
    log = UsageLog(lambda: SqliteStore(path), capacity=100, backed=frozenset({"memory/x"}), interval=0.01).start()
    log.put({"request_id": "r1", "ts_ms": NOW_MS + 500, "model_group": "served-fallback", "input_tokens": 3,
             "output_tokens": 4, "litellm_status": "success"})  # LiteLLM's half first
    wait_for(lambda: log.written == 1)
    log.put(ingress_row("r1"))
    log.put(ingress_row("r2", model_group="memory/x"))
    log.put(from_supermemory("r2", {"x-supermemory-error": "down", "x-supermemory-chunks-retrieved": "2"}, 1))
    log.stop()
    r1, r2 = read(path)
    assert (r1["request_id"], r1["ts_ms"], r1["model_group"], r1["input_tokens"], r1["status"]) == (
        "r1", NOW_MS, "gpt-4o-mini", 3, 200)  # earliest time kept; the model asked for, not LiteLLM's fallback
    assert (r2["supermemory"], r2["sm_error"], r2["sm_chunks_retrieved"], r2["cf_retries"]) == (1, "down", 2, 1)
    assert r1["api_shape"] == "openai_chat" and r1["project"] == "c1" and r1["latency_bucket"] == bucket(12.0)
    assert log.status()["written"] == 4 and log.status()["dropped"] == 0
    assert_rollup_matches(path)


@pytest.mark.parametrize("order", ["ingress first", "litellm first"])
@pytest.mark.parametrize("batches", [1, 2])
def test_the_model_asked_for_wins_over_litellms_group_in_any_order(tmp_path, order, batches):
    """LiteLLM's group (a fallback it served) fills model_group only when the ingress has none,
    whichever part comes first, in one batch or two."""
    store = SqliteStore(tmp_path / "usage.sqlite3")
    parts = [ingress_row("r1"), {"request_id": "r1", "model_group": "served-fallback", "litellm_status": "success"},
             ingress_row("r2", model_group=None), {"request_id": "r2", "model_group": "listed-group"}]
    ingress, litellm = parts[0::2], parts[1::2]
    first, then = (ingress, litellm) if order == "ingress first" else (litellm, ingress)
    if batches == 1:
        store.upsert([dict(p) for p in first + then])
    else:
        store.upsert([dict(p) for p in first])
        store.upsert([dict(p) for p in then])
    assert store.query(f"SELECT request_id, model_group FROM {TABLE} ORDER BY request_id") == [
        ("r1", "gpt-4o-mini"), ("r2", "listed-group")]
    store.close()
    assert_rollup_matches(tmp_path / "usage.sqlite3")


def test_litellms_error_code_stays_when_the_ingress_reports_after_it(tmp_path):
    """In SDK mode LiteLLM reports a failure before the answer ends: the ingress's part, later
    and without a code of its own, must not erase LiteLLM's; the proxy's own code still counts."""
    from memory_proxy.server.outcome import Outcome

    path = tmp_path / "usage.sqlite3"
    log = UsageLog(lambda: SqliteStore(path), capacity=100, interval=0.01).start()
    for request_id in ("r1", "r2"):
        log.put({"request_id": request_id, "litellm_status": "failure", "error_code": "400"})
    wait_for(lambda: log.written == 2)  # then, in a later batch, the ingress's parts
    log.put(Outcome("r1", "c1", "custom_header", "POST", "/v1/chat/completions", "m", 400, 0.01,
                    "sdk").usage_fields())
    log.put(Outcome("r2", "c1", "custom_header", "POST", "/v1/chat/completions", "m", 400, 0.01, "sdk",
                    completed=False, error_code="client_gone").usage_fields())
    log.put({"request_id": "r3", "litellm_status": "failure", "error_code": "400"})  # both in one batch
    log.put(Outcome("r3", "c1", "custom_header", "POST", "/v1/chat/completions", "m", 400, 0.01,
                    "sdk").usage_fields())
    log.stop()
    assert [(r["request_id"], r["status"], r["error_code"]) for r in read(path)] == [
        ("r1", 400, "400"), ("r2", 400, "client_gone"), ("r3", 400, "400")]


def test_cloudflare_retries_add_up_when_litellm_retries_the_egress(tmp_path):
    """LiteLLM retries a 503 of the egress under the same request id: each egress part counts."""
    path = tmp_path / "usage.sqlite3"
    log = UsageLog(lambda: SqliteStore(path), capacity=100, interval=0.01).start()
    log.put(ingress_row("r1"))
    log.put(from_supermemory("r1", {}, 1))  # refused, retried, refused again: the egress answered 503
    wait_for(lambda: log.written == 2)
    log.put(from_supermemory("r1", {}, 1))  # LiteLLM's retry: once more, in a later batch
    log.put(from_supermemory("r1", {}, 0))  # and a third try that got through at once
    log.put(ingress_row("r2"))
    log.put(from_supermemory("r2", {}, 1))  # two parts in one batch
    log.put(from_supermemory("r2", {}, 1))
    log.stop()
    r1, r2 = read(path)
    assert (r1["cf_retries"], r2["cf_retries"]) == (2, 2)
    assert_rollup_matches(path)


def assert_rollup_matches(path: Path) -> None:
    """The writer's rollup equals the same sums computed from the records themselves."""
    db = sqlite3.connect(path)
    direct = db.execute(f"SELECT ts_ms / 900000, client_id, COALESCE(model_group, ''), COUNT(*), "
                        "SUM(COALESCE(input_tokens, 0)), SUM(COALESCE(output_tokens, 0)), "
                        "SUM(CASE WHEN sm_error IS NULL THEN 0 ELSE 1 END) "
                        f"FROM {TABLE} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3").fetchall()
    rolled = db.execute("SELECT slot, client_id, model_group, SUM(requests), SUM(input_tokens), "
                        "SUM(output_tokens), SUM(memory_errors) FROM usage_rollup GROUP BY 1, 2, 3 "
                        "HAVING SUM(requests) > 0 ORDER BY 1, 2, 3").fetchall()
    db.close()
    assert rolled == direct


def test_a_batch_goes_in_a_few_statement_shapes():
    """Any batch size is written with statements of a few sizes only (each size is a statement
    the connection keeps prepared: one per batch size grew the proxy by ~2 kB per request)."""
    shapes = set()
    for count in range(3 * MAX_ROWS):
        sizes = chunk_sizes(count)
        assert sum(sizes) == count and all(s & (s - 1) == 0 and s <= MAX_ROWS for s in sizes)
        shapes.update(sizes)
    assert len(shapes) == MAX_ROWS.bit_length()


def test_a_large_batch_merges_with_records_written_before(tmp_path):
    """Several statements per batch: every row lands once, parts of records written in an
    earlier batch merge into them, and the rollups follow."""
    path = tmp_path / "usage.sqlite3"
    store = SqliteStore(path)
    store.upsert([ingress_row(f"r{i:04}") for i in range(0, 600, 2)])
    store.upsert([ingress_row(f"r{i:04}") for i in range(1, 600, 2)]
                 + [{"request_id": f"r{i:04}", "output_tokens": 5} for i in range(0, 600, 3)])
    store.close()
    rows = read(path)
    assert [r["request_id"] for r in rows] == [f"r{i:04}" for i in range(600)]
    assert sum(r["output_tokens"] or 0 for r in rows) == 5 * 200
    assert_rollup_matches(path)


def test_a_full_queue_drops_and_counts(tmp_path):
    log = UsageLog(lambda: SqliteStore(tmp_path / "u.sqlite3"), capacity=10)  # not started: nothing drains
    for i in range(15):
        log.put(ingress_row(f"r{i}"))
    assert log.status()["queued"] == 10 and log.dropped == 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own nice value is Linux's")
def test_the_writer_gives_the_cpu_to_the_request_path_first(tmp_path):
    """The writer thread alone runs at the lowest priority; the thread that started it keeps its own."""
    seen: dict = {}

    def open_store():
        seen["writer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return SqliteStore(tmp_path / "u.sqlite3")

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    log = UsageLog(open_store, capacity=10, interval=0.01).start()
    log.put(ingress_row("r1"))
    wait_for(lambda: log.written == 1)
    log.stop()
    assert seen["writer"] == WRITER_NICE
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert [r["request_id"] for r in read(tmp_path / "u.sqlite3")] == ["r1"]


class FlakyStore:
    """A store that fails (disk full) for its first ``failures`` batches."""

    def __init__(self, real: SqliteStore, state: dict) -> None:
        self.real, self.state = real, state

    def upsert(self, rows):
        if self.state["failures"] > 0:
            self.state["failures"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        self.real.upsert(rows)

    def prune(self, *args):
        return self.real.prune(*args)

    def close(self):
        self.real.close()


def test_a_failing_store_loses_nothing_once_it_recovers(tmp_path):
    path = tmp_path / "usage.sqlite3"
    state = {"failures": 3}
    log = UsageLog(lambda: FlakyStore(SqliteStore(path), state), capacity=100, interval=0.01).start()
    for i in range(20):
        log.put(ingress_row(f"r{i:02}"))
    wait_for(lambda: log.status()["failed_batches"] >= 1)
    assert log.status()["store_ok"] is False and "disk is full" in log.status()["last_error"]
    assert log.status()["queued"] == 20  # the batch the writer holds for the store counts as waiting
    wait_for(lambda: log.written == 20, timeout=20)
    assert log.status()["queued"] == 0
    log.stop()
    assert [r["request_id"] for r in read(path)] == [f"r{i:02}" for i in range(20)]
    assert log.status()["store_ok"] is True and log.dropped == 0
    assert_rollup_matches(path)


class HungStore(FlakyStore):
    """A store whose writes wait until ``state["release"]`` is set (PostgreSQL that stopped answering)."""

    def upsert(self, rows):
        self.state["release"].wait(30)
        self.real.upsert(rows)


def test_a_store_that_stops_answering_is_reported(tmp_path):
    import threading

    state = {"failures": 0, "release": threading.Event()}
    log = UsageLog(lambda: HungStore(SqliteStore(tmp_path / "usage.sqlite3"), state), capacity=100,
                   interval=0.01, slow_after=0.3).start()
    log.put(ingress_row("r1"))
    wait_for(lambda: log.status()["last_error"] is not None)
    status = log.status()
    assert status["last_error"].startswith("the store has not answered for") and status["store_ok"] is False
    assert status["queued"] == 1
    state["release"].set()
    wait_for(lambda: log.written == 1)
    assert log.status()["store_ok"] is True and log.status()["last_error"] is None
    log.stop()


def test_records_a_failing_store_still_holds_at_shutdown_are_counted_as_dropped(tmp_path):
    log = UsageLog(lambda: FlakyStore(SqliteStore(tmp_path / "usage.sqlite3"), {"failures": 10**6}), capacity=100,
                   interval=0.01).start()
    for i in range(5):
        log.put(ingress_row(f"r{i}"))
    wait_for(lambda: log.status()["failed_batches"] >= 1)
    log.stop()
    assert log.dropped == 5 and log.written == 0


def cost_kinds() -> list[dict]:
    """One request of each kind of cost: priced, a model without a price, answered without
    LiteLLM's figures (unknown), a model listing and a refusal (both free)."""
    from memory_proxy.usage.record import derive

    return [derive(part, frozenset()) for part in (
        ingress_row("priced"), {"request_id": "priced", "priced": 1, "cost_usd": 0.5},
        ingress_row("no-price"), {"request_id": "no-price", "priced": 0},
        ingress_row("no-figures"),
        ingress_row("listing", method="GET", path="/v1/models", model_group=None),
        ingress_row("refused", status=503))]


def unknown_costs(store) -> int:
    return store.query("SELECT SUM(unpriced) FROM usage_rollup_daily")[0][0]


def test_a_cost_is_unknown_for_a_model_without_a_price_and_an_answer_without_litellms_figures(tmp_path):
    store = SqliteStore(tmp_path / "usage.sqlite3")
    store.upsert(cost_kinds())
    assert unknown_costs(store) == 2
    (total,) = ur.report(store, period="total")
    assert (total.requests, total.unpriced, total.cost_usd) == (5, 2, 0.5)
    store.upsert([{"request_id": "no-figures", "priced": 1, "cost_usd": 0.25}])  # LiteLLM's report, late
    assert unknown_costs(store) == 1
    store.close()


def test_version_1_rollups_are_summed_again(tmp_path):
    """Version 1 counted only models without a price as unknown: opening the store brings its
    rollups up to version 2's sums."""
    path = tmp_path / "usage.sqlite3"
    store = SqliteStore(path)
    store.upsert(cost_kinds())
    store.execute("UPDATE usage_rollup_daily SET unpriced = CASE WHEN client_id = '' THEN 0 ELSE unpriced END")
    store.execute("UPDATE usage_rollup SET unpriced = 0")
    store.execute("UPDATE usage_meta SET value = '1' WHERE key = 'schema_version'")
    store.close()
    store = SqliteStore(path)
    assert store.query("SELECT value FROM usage_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    assert unknown_costs(store) == 2
    assert store.query("SELECT SUM(unpriced), SUM(requests) FROM usage_rollup") == [(2, 5)]
    store.close()
    assert_rollup_matches(path)


def check_version_2_migration(open_store) -> None:
    """Version 2 counted latency buckets without the session (session reports had no
    percentiles): a store turned back into version 2, opened again, has them rebuilt from the
    records. ``open_store``: () -> a writer's store (SQLite or PostgreSQL)."""
    from memory_proxy.usage.record import derive

    store = open_store()
    store.upsert([derive(ingress_row("s1", latency_ms=100.0, session_id="one"), frozenset()),
                  derive(ingress_row("s2", latency_ms=400.0), frozenset())])
    keys = "day, client_id, project, model_group, provider"
    store.execute("DROP TABLE usage_rollup_latency")
    store.execute(f"CREATE TABLE usage_rollup_latency (day BIGINT NOT NULL, client_id TEXT NOT NULL, "
                  f"project TEXT NOT NULL, model_group TEXT NOT NULL, provider TEXT NOT NULL, kind TEXT NOT NULL, "
                  f"bucket INTEGER NOT NULL, n BIGINT NOT NULL DEFAULT 0, PRIMARY KEY ({keys}, kind, bucket))")
    store.execute("UPDATE usage_meta SET value = '2' WHERE key = 'schema_version'")
    store.close()
    store = open_store()
    assert store.query("SELECT value FROM usage_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    found = {r.period: (r.requests, r.as_dict()["p50_latency_ms"]) for r in ur.report(store, period="session")}
    assert found.keys() == {"one", "-"} and found["one"][0] == found["-"][0] == 1
    assert abs(found["one"][1] - 100) <= 5 and abs(found["-"][1] - 400) <= 20
    store.close()


def test_version_2_latency_buckets_get_the_session(tmp_path):
    check_version_2_migration(lambda: SqliteStore(tmp_path / "usage.sqlite3"))


def test_schema_version_and_indexes(tmp_path):
    store = SqliteStore(tmp_path / "usage.sqlite3")
    assert store.query("SELECT value FROM usage_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    names = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"usage_ts", "usage_client_ts", "usage_model_ts"} <= names
    assert store.query("PRAGMA journal_mode") == [("wal",)]
    store.upsert([ingress_row("r1")])
    for name in ("usage.sqlite3", "usage.sqlite3-wal", "usage.sqlite3-shm"):  # records are nobody else's
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    store.close()
    SqliteStore(tmp_path / "usage.sqlite3").close()  # opening again migrates nothing, fails nothing


def test_retention_and_size_cap(tmp_path):
    store = SqliteStore(tmp_path / "usage.sqlite3")
    old = NOW_MS - 40 * 86400 * 1000
    slot = 900_000
    store.upsert([ingress_row("old", ts_ms=old)] + [ingress_row(f"n{i}", ts_ms=NOW_MS - i * slot)
                                                    for i in range(2000)])  # 2000 quarter hours back
    assert store.prune(30, None) == 1
    before = store.used_bytes()
    store.prune(30, before // 2)
    assert store.used_bytes() <= before // 2
    kept = store.query(f"SELECT MIN(ts_ms), COUNT(*) FROM {TABLE}")[0]
    assert 0 < kept[1] < 2000 and kept[0] > NOW_MS - 1999 * slot  # the oldest went first
    assert store.query("SELECT SUM(requests) FROM usage_rollup") == [(kept[1],)]  # the rollup follows
    store.close()


def test_litellm_payload_figures_only():
    payload = {"id": "x", "litellm_call_id": "req-1", "status": "success", "model_group": "claude",
               "model": "claude-3-5-haiku", "custom_llm_provider": "anthropic", "prompt_tokens": 15,
               "completion_tokens": 4, "response_cost": 0.5, "startTime": 1700000000.5,
               "messages": [{"role": "user", "content": "secret prompt"}], "response": {"text": "answer"},
               "metadata": {"usage_object": {"cache_read_input_tokens": 7, "cache_creation_input_tokens": 5}},
               "model_map_information": {"model_map_value": {"input_cost_per_token": 1e-6}}}
    fields = from_litellm(payload)
    assert fields == {"request_id": "req-1", "litellm_status": "success", "model_group": "claude",
                      "deployment": "anthropic/claude-3-5-haiku", "provider": "anthropic", "input_tokens": 3,
                      "output_tokens": 4, "cache_read_tokens": 7, "cache_write_tokens": 5, "cost_usd": 0.5,
                      "priced": 1, "ts_ms": 1700000000500}
    openai = from_litellm({"id": "y", "prompt_tokens": 10, "completion_tokens": 1, "response_cost": 0.0,
                           "metadata": {"usage_object": {"prompt_tokens_details": {"cached_tokens": 6}}},
                           "model_map_information": {"model_map_value": None}})
    assert (openai["input_tokens"], openai["cache_read_tokens"], openai["priced"]) == (4, 6, 0)
    assert from_litellm({"no": "id"}) is None and from_litellm([1]) is None
    refused = from_litellm({"id": "z", "status": "failure", "model_group": "no-such-model", "response_cost": 0.0,
                            "model_map_information": None, "error_information": {"error_code": "400"}})
    assert "priced" not in refused and refused["error_code"] == "400"  # no provider: failed, not unpriced
    at_provider = from_litellm({"id": "p", "status": "failure", "custom_llm_provider": "ollama", "model": "llama3",
                                "response_cost": 0.0, "model_map_information": None})
    assert at_provider["priced"] == 0  # a model without a price, failed at its provider: still unknown


def test_a_failure_before_any_answer_costs_nothing(tmp_path):
    """LiteLLM reports a request for a model it does not know as a failure without a provider
    or a price map: with the client's 400 its cost is nil, not unknown (docs/usage.md)."""
    from memory_proxy.usage.record import derive

    store = SqliteStore(tmp_path / "usage.sqlite3")
    failure = from_litellm({"id": "f", "status": "failure", "model_group": "nope", "response_cost": 0.0,
                            "model_map_information": None})
    store.upsert([derive(ingress_row("f", status=400, model_group="nope"), frozenset()), failure])
    assert unknown_costs(store) == 0
    store.close()


def test_latency_buckets_are_within_a_few_percent():
    for ms in (1.5, 10, 123.4, 5000, 60000):
        assert abs(bucket_value(bucket(ms)) - ms) / ms <= 0.05


def test_generated_config_wires_the_callback_beside_the_users_own():
    text = """
model_list:
  - model_name: m
    litellm_params: {model: openai/m, api_base: "http://127.0.0.1:1/v1", api_key: k}
litellm_settings:
  success_callback: ["langfuse"]
"""
    config = parse_config(text, Path("t.yaml"), {})
    settings = litellm_config.build_litellm_config(config, "http://127.0.0.1:9/_egress", {})["litellm_settings"]
    assert settings["success_callback"] == ["langfuse"]  # the user's, as written
    assert settings["callbacks"] == [litellm_config.USAGE_CALLBACK]
    off = parse_config(text + "memory_proxy:\n  usage: {enabled: false}\n", Path("t.yaml"), {})
    settings = litellm_config.build_litellm_config(off, "http://127.0.0.1:9/_egress", {})["litellm_settings"]
    assert settings["success_callback"] == ["langfuse"] and "callbacks" not in settings
    env = litellm_config.usage_callback_env(8764, "127.0.0.1")  # the secret: the egress's variable
    assert env == {"MEMORY_PROXY_USAGE_URL": "http://127.0.0.1:8764/_usage/litellm",
                   "DEFAULT_FLUSH_INTERVAL_SECONDS": "1"}


def test_usage_config_errors_name_the_key():
    from memory_proxy.config.model import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config("memory_proxy:\n  usage:\n    retention_days: 0\n    database_url: mysql://x\n    colour: 1\n",
                     Path("t.yaml"), {})
    text = err.value.render()
    assert "t.yaml:3: memory_proxy.usage.retention_days" in text
    assert "t.yaml:4: memory_proxy.usage.database_url" in text and "memory_proxy.usage.colour: unknown key" in text


def test_the_intake_refuses_anyone_but_our_litellm(tmp_path):
    from tests.support.servers import SECRET, running_proxy

    with running_proxy("http://127.0.0.1:9", state_dir=tmp_path) as proxy:
        url = proxy.url + litellm_config.USAGE_CALLBACK_PATH
        payload = [{"id": "a", "litellm_call_id": "req-intake", "prompt_tokens": 2, "completion_tokens": 1}]
        assert httpx.post(url, json=payload).status_code == 403
        assert httpx.post(url, json=payload, headers={"x-memory-proxy-egress-secret": "wrong"}).status_code == 403
        answer = httpx.post(url, json=payload, headers={"x-memory-proxy-egress-secret": SECRET})
        assert answer.status_code == 204
        runtime = proxy.server.config.app.state.runtime
        wait_for(lambda: runtime.usage.written == 1)
    (row,) = read(tmp_path / "usage.sqlite3")
    assert (row["request_id"], row["input_tokens"], row["output_tokens"]) == ("req-intake", 2, 1)


def test_reports_sum_group_and_mark_unpriced(tmp_path):
    from memory_proxy.usage.record import derive

    day = ur.parse_day("2026-03-02")
    rows = [  # two days, two clients, one unpriced model
        ingress_row("a1", ts_ms=day + 1000, latency_ms=100.0, input_tokens=10, output_tokens=1, cost_usd=0.5,
                    priced=1, first_event_ms=20.0, session_id="s1"),
        ingress_row("a2", ts_ms=day + 2000, latency_ms=300.0, status=500, input_tokens=5, priced=1, cost_usd=0.25,
                    sm_error="down", sm_context_modified=1),
        ingress_row("b1", ts_ms=day + ur.DAY_MS + 5, client_id="c2", client_source="pattern",
                    model_group="claude", latency_ms=50.0, cache_read_tokens=7, cache_write_tokens=5, priced=0,
                    cost_usd=0.0, cf_retries=1),
    ]
    store = SqliteStore(tmp_path / "u.sqlite3")
    store.upsert([derive(r, frozenset()) for r in rows])
    daily = [r.as_dict() for r in ur.report(store, period="daily", offset_ms=ur.utc_offset_ms())]
    assert [(r["period"], r["key"], r["requests"], r["errors"]) for r in daily] == [
        ("2026-03-03", "c2", 1, 0), ("2026-03-02", "c1", 2, 1)]
    c1 = daily[1]
    assert (c1["input_tokens"], c1["output_tokens"], c1["cost_usd"], c1["unpriced_requests"]) == (15, 1, 0.75, 0)
    assert (c1["memory_errors"], c1["context_modified"]) == (1, 1)
    assert abs(c1["p50_latency_ms"] - 100) <= 5 and abs(c1["p95_latency_ms"] - 300) <= 15
    assert abs(c1["p50_first_event_ms"] - 20) < 1
    c2 = daily[0]
    assert (c2["cache_read_tokens"], c2["cache_write_tokens"], c2["unpriced_requests"], c2["cloudflare_retries"]) \
        == (7, 5, 1, 1)
    monthly = ur.report(store, period="monthly", by="model", breakdown=True)
    assert [(r.period, r.key, r.model, r.requests) for r in monthly] == [
        ("2026-03", "gpt-4o-mini", "gpt-4o-mini", 2), ("2026-03", "claude", "claude", 1)]
    sessions = {r.period: r.as_dict() for r in ur.report(store, period="session", key="c1")}
    assert {k: r["requests"] for k, r in sessions.items()} == {"-": 1, "s1": 1}
    assert abs(sessions["s1"]["p50_latency_ms"] - 100) <= 5 and abs(sessions["s1"]["p50_first_event_ms"] - 20) < 1
    assert abs(sessions["-"]["p95_latency_ms"] - 300) <= 15 and sessions["-"]["p50_first_event_ms"] is None
    assert [r.requests for r in ur.report(store, period="total", since_ms=day + ur.DAY_MS)] == [1]
    assert [r["request_id"] for r in ur.latest(store, limit=2)] == ["b1", "a2"]
    with pytest.raises(ValueError, match="no 'yearly' report"):
        ur.report(store, period="yearly")
    store.close()


def test_requests_litellm_never_saw_are_recorded(tmp_path):
    """Refused at the door, too large, LiteLLM down, over the rate limit: each still gets its
    one record, under its client when the door knew it."""
    from tests.support.ports import free_port
    from tests.support.servers import running_proxy

    dead = f"http://127.0.0.1:{free_port()}"  # a port nobody listens on: LiteLLM is down
    extra = "  startup_wait: 0\n  requests_per_minute: 1\n"  # 503 at once; one request a minute per client
    with running_proxy(dead, state_dir=tmp_path, extra=extra) as proxy:
        url = proxy.url + "/v1/chat/completions"
        down = httpx.post(url, headers={"x-memory-user-id": "door"}, json={"model": "gpt-4o-mini"})
        large = httpx.post(url, headers={"x-memory-user-id": "large"}, json={"x": "y" * 5000})
        method = httpx.request("TRACE", proxy.url + "/v1/models")
        limited = httpx.post(url, headers={"x-memory-user-id": "door", "x-claude-code-session-id": "s9"},
                             json={"model": "gpt-4o-mini"})
        assert (down.status_code, large.status_code, method.status_code, limited.status_code) == (503, 413, 405, 429)
        runtime = proxy.server.config.app.state.runtime
        wait_for(lambda: runtime.usage.written == 4)
    found = {r["request_id"]: r for r in read(tmp_path / "usage.sqlite3")}
    assert [(found[a.headers["x-request-id"]]["status"], found[a.headers["x-request-id"]]["client_source"])
            for a in (down, large, method)] == [(503, "custom_header"), (413, "custom_header"), (405, "refused")]
    over = found[limited.headers["x-request-id"]]
    assert (over["status"], over["client_id"], over["client_source"], over["error_code"], over["session_id"]) == (
        429, "door", "custom_header", "rate_limited", "s9")
    assert runtime.requests["door"] == 2 and runtime.errors["door"] == 2  # counted once each
    assert found[down.headers["x-request-id"]]["model_group"] == "gpt-4o-mini"
    assert found[down.headers["x-request-id"]]["litellm_status"] is None


def test_an_unreachable_supermemory_is_a_memory_error_of_its_request(tmp_path):
    """The egress could not reach Supermemory: no answer headers, but the record says so."""
    from tests.support.ports import free_port
    from tests.support.servers import SECRET, running_proxy

    dead = f"http://127.0.0.1:{free_port()}"  # Supermemory (and LiteLLM) unreachable
    with running_proxy(dead, state_dir=tmp_path) as proxy:
        answer = httpx.post(proxy.url + f"/_egress/v3/{dead}/v1/chat/completions", json={"model": "x"},
                            headers={"x-memory-proxy-egress-secret": SECRET, "x-supermemory-user-id": "u1",
                                     "x-request-id": "sm-down-1"})
        assert answer.status_code == 503  # upstream_failure's answer for a refused connection
        runtime = proxy.server.config.app.state.runtime
        wait_for(lambda: runtime.usage.written == 1)
    (row,) = read(tmp_path / "usage.sqlite3")
    assert (row["request_id"], row["sm_error"], row["cf_retries"]) == (
        "sm-down-1", "the egress could not reach Supermemory: ConnectError", 0)


def test_enabled_false_records_nothing_and_says_so(tmp_path):
    """memory_proxy.usage.enabled: false: no store is created, nothing is queued, the
    dashboard's data endpoints say why and /health shows it off (`stats`: test_stats_cli.py)."""
    from tests.support.ports import free_port
    from tests.support.servers import running_proxy

    dead = f"http://127.0.0.1:{free_port()}"
    off = "  usage: {enabled: false}\n  startup_wait: 0\n"
    with running_proxy(dead, state_dir=tmp_path, extra=off) as proxy:
        assert httpx.post(proxy.url + "/v1/chat/completions", json={"model": "mem"}).status_code == 503
        assert proxy.server.config.app.state.runtime.usage is None
        summary = httpx.get(proxy.url + "/ui/api/summary")
        assert summary.status_code == 404 and summary.json()["error"]["code"] == "usage_disabled"
        assert httpx.get(proxy.url + "/health").json()["memory_proxy"]["usage"] == {"enabled": False}
    assert not (tmp_path / "usage.sqlite3").exists()
