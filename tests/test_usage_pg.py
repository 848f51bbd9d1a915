"""The usage store on a real PostgreSQL server: a throw-away cluster (Debian's initdb and
pg_ctl, ``tests/support/postgres.py``) in a temporary folder on a free port, started for this
module. The same through the launcher and the real LiteLLM binary: ``tests/e2e/test_usage.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_proxy.usage import report as ur
from memory_proxy.usage.record import UsageLog, from_supermemory
from memory_proxy.usage.store import SCHEMA_VERSION
from tests.support.postgres import TABLES, throwaway_cluster
from tests.unit.usage.test_usage import (
    NOW_MS,
    check_version_2_migration,
    cost_kinds,
    ingress_row,
    unknown_costs,
    wait_for,
)


@pytest.fixture(scope="module")
def cluster():
    with throwaway_cluster() as pg:
        yield pg


@pytest.fixture
def url(cluster):
    from memory_proxy.usage.pg import PostgresStore

    store = PostgresStore(cluster.url)  # creates the tables on first use
    for table in TABLES:
        store.execute(f"DELETE FROM {table}")
    store.close()
    return cluster.url


def test_same_schema_same_queries(url):
    from memory_proxy.usage.pg import PostgresStore

    log = UsageLog(lambda: PostgresStore(url), capacity=100, backed=frozenset({"memory/x"}), interval=0.01).start()
    log.put({"request_id": "r1", "ts_ms": NOW_MS + 500, "input_tokens": 3, "output_tokens": 4,
             "litellm_status": "success", "priced": 1, "cost_usd": 0.25})
    wait_for(lambda: log.written == 1)
    log.put(ingress_row("r1", latency_ms=100.0, session_id="s1"))
    log.put(ingress_row("r2", model_group="memory/x", status=500, latency_ms=300.0))
    log.put(from_supermemory("r2", {"x-supermemory-error": "down"}, 1))
    log.stop()
    store = PostgresStore(url, readonly=True)
    assert store.query("SELECT value FROM usage_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    rows = store.query("SELECT request_id, ts_ms, client_id, input_tokens, supermemory, sm_error, cf_retries "
                       "FROM usage_requests ORDER BY request_id")
    assert rows == [("r1", NOW_MS, "c1", 3, 0, None, None), ("r2", NOW_MS, "c1", None, 1, "down", 1)]
    (total,) = ur.report(store, period="total")
    assert (total.requests, total.errors, total.input_tokens, total.output_tokens, total.cost_usd,
            total.memory_errors, total.cloudflare_retries) == (2, 1, 3, 4, 0.25, 1, 1)
    assert abs(total.as_dict()["p95_latency_ms"] - 300) <= 15
    daily = ur.report(store, period="daily", by="model", breakdown=True)
    assert sorted((r.key, r.requests) for r in daily) == [("gpt-4o-mini", 1), ("memory/x", 1)]
    assert sorted(r.period for r in ur.report(store, period="session")) == ["-", "s1"]
    assert len(ur.report(store, period="hourly")) == 1
    assert [r["request_id"] for r in ur.latest(store, limit=5)] in (["r1", "r2"], ["r2", "r1"])
    store.close()


def test_version_1_rollups_are_summed_again(url):
    from memory_proxy.usage.pg import PostgresStore

    store = PostgresStore(url)
    store.upsert(cost_kinds())
    store.execute("UPDATE usage_rollup_daily SET unpriced = 0")
    store.execute("UPDATE usage_meta SET value = '1' WHERE key = 'schema_version'")
    store.close()
    store = PostgresStore(url)
    assert unknown_costs(store) == 2
    assert store.query("SELECT value FROM usage_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]
    store.close()


def test_version_2_latency_buckets_get_the_session(url):
    from memory_proxy.usage.pg import PostgresStore

    check_version_2_migration(lambda: PostgresStore(url))


def test_pruning_keeps_the_retention_and_ignores_the_size_cap(url):
    """A DELETE does not shrink PostgreSQL's files: with the size cap applied, pruning would go
    on day after day until the table was empty. Only the days past the retention go."""
    from memory_proxy.usage.pg import PostgresStore

    store = PostgresStore(url)
    day_ms = 86400 * 1000
    store.upsert([ingress_row("old", ts_ms=NOW_MS - 40 * day_ms)]
                 + [ingress_row(f"d{i}", ts_ms=NOW_MS - i * day_ms) for i in range(30)])
    assert store.prune(35, 1) == 1  # a cap of one byte: ignored
    assert store.query("SELECT COUNT(*), MIN(ts_ms) FROM usage_requests") == [(30, NOW_MS - 29 * day_ms)]
    assert store.query("SELECT SUM(requests) FROM usage_rollup_daily") == [(30,)]
    store.close()


def test_a_server_that_goes_down_loses_no_record(cluster, url):
    """PostgreSQL killed mid-run: records wait in the queue, the writer reconnects once it has
    recovered, nothing written before is lost."""
    from memory_proxy.usage.pg import PostgresStore

    log = UsageLog(lambda: PostgresStore(url), capacity=1000, interval=0.02).start()
    for i in range(10):
        log.put(ingress_row(f"a{i}"))
    wait_for(lambda: log.written == 10)
    cluster.crash()
    try:
        for i in range(10):
            log.put(ingress_row(f"b{i}"))  # never blocks, never raises
        wait_for(lambda: log.status()["failed_batches"] >= 1, timeout=20)
        assert log.status()["store_ok"] is False and log.status()["last_error"]
    finally:
        cluster.start()
    wait_for(lambda: log.written == 20, timeout=30)
    log.stop()
    store = PostgresStore(url, readonly=True)
    assert store.query("SELECT COUNT(*) FROM usage_requests") == [(20,)]
    assert store.query("SELECT SUM(requests) FROM usage_rollup_daily")[0][0] == 20
    store.close()
    assert log.dropped == 0


def test_the_app_writes_to_postgresql(url):
    """``memory_proxy.usage.database_url`` (an os.environ/ reference) sends the records there."""
    import httpx

    from memory_proxy.config.model import parse_config
    from memory_proxy.server.app import create_app
    from memory_proxy.usage.pg import PostgresStore
    from tests import emulator
    from tests.support.servers import ServerThread

    with ServerThread(emulator.create_app(chunk_delay=0.01)) as emu:
        text = (f"model_list:\n  - model_name: m\n    litellm_params: {{model: openai/m, api_base: \"{emu.url}/v1\", "
                f"api_key: k}}\nmemory_proxy:\n  usage: {{database_url: os.environ/USAGE_DB}}\n")
        config = parse_config(text, Path("t.yaml"), {"USAGE_DB": url})
        assert config.proxy.usage.database_url == url
        app = create_app(config, litellm_url=emu.url, master_key="sk-master", egress_secret="s" * 32)
        with ServerThread(app) as proxy:
            for client_id in ("pg-a", "pg-a", "pg-b"):
                answer = httpx.post(proxy.url + "/v1/chat/completions", headers={"x-memory-user-id": client_id},
                                    json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200
            wait_for(lambda: app.state.runtime.usage.written == 3)
            summary = httpx.get(proxy.url + "/ui/api/summary").json()
        assert {r["key"]: r["requests"] for r in summary["rows"]} == {"pg-a": 2, "pg-b": 1}
    store = PostgresStore(url, readonly=True)
    assert store.query("SELECT client_id, COUNT(*) FROM usage_requests GROUP BY client_id ORDER BY 1") == [
        ("pg-a", 2), ("pg-b", 1)]
    store.close()
