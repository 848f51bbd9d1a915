"""``start_proxies.py stats`` on a usage store the test fills (the launcher in a subprocess)."""

import json
import subprocess
import sys

import pytest

from memory_proxy.usage import report as ur
from memory_proxy.usage.record import derive
from memory_proxy.usage.store import SqliteStore
from tests.support import LAUNCHER
from tests.unit.usage.test_usage import ingress_row


def run_stats(config, state, *args: str) -> subprocess.CompletedProcess:
    """``start_proxies.py stats`` in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, str(LAUNCHER), "--config", str(config), "--state-dir", str(state),
                           "stats", *args], capture_output=True, text=True, timeout=60,
                          env={"MEMORY_PROXY_VENV": sys.prefix, "MEMORY_PROXY_PYTHON": sys.executable,
                               "PATH": "/usr/bin:/bin"})


def test_stats_command(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    state = tmp_path / "state"

    def stats(*args: str) -> subprocess.CompletedProcess:
        return run_stats(config, state, *args)

    empty = stats()
    assert empty.returncode == 0 and "no usage recorded yet" in empty.stderr
    store = SqliteStore(state / "usage.sqlite3")
    today = ur.today_start_ms() + 1000
    store.upsert([derive(ingress_row("a", ts_ms=today, input_tokens=3, priced=1, cost_usd=0.01), frozenset()),
                  derive(ingress_row("b", ts_ms=today, client_id="c2", model_group="claude", priced=0,
                                     cost_usd=0.0), frozenset())])
    store.close()
    human = stats()
    assert human.returncode == 0, human.stderr
    assert "today by client" in human.stdout and "last 7 days by client" in human.stdout
    assert "n/a*" in human.stdout and "their cost is unknown" in human.stdout  # never shown as free
    data = json.loads(stats("daily", "--json", "--by", "model").stdout)
    (report,) = data["reports"]
    assert {r["key"]: r["requests"] for r in report["rows"]} == {"gpt-4o-mini": 1, "claude": 1}
    assert report["total"]["input_tokens"] == 3
    lines = stats("weekly", "--csv", "--id", "c2").stdout.splitlines()
    assert lines[0].startswith("report,period,key,model,requests") and len(lines) == 2 and ",c2,," in lines[1]
    bad = stats("--since", "yesterday")
    assert bad.returncode == 2 and "not a date" in bad.stderr


def test_stats_periods_groupings_and_ranges(tmp_path):
    """Every period and grouping of the command, with --since/--until and --breakdown, on
    records of two days a month apart (read back as JSON)."""
    import datetime

    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    state = tmp_path / "state"
    today = ur.today_start_ms()
    recent, old = today - 3 * ur.DAY_MS + 1000, today - 40 * ur.DAY_MS + 1000

    def day(ms: int) -> str:
        return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d")

    def row(request_id, ts_ms, client, source, model, provider, session, latency):
        return [derive(ingress_row(request_id, ts_ms=ts_ms, client_id=client, client_source=source, model_group=model,
                                   session_id=session, latency_ms=latency), frozenset()),
                {"request_id": request_id, "provider": provider, "input_tokens": 10, "priced": 1, "cost_usd": 0.5}]

    store = SqliteStore(state / "usage.sqlite3")
    store.upsert(row("r1", recent, "alpha", "custom_header", "gpt-4o-mini", "openai", "s1", 100.0)
                 + row("r2", recent, "beta", "pattern", "claude", "anthropic", "s2", 300.0)
                 + row("r3", recent, "alpha", "custom_header", "claude", "anthropic", "s1", 200.0)
                 + row("r4", old, "alpha", "custom_header", "gpt-4o-mini", "openai", None, 50.0))
    store.close()

    def stats(*args: str) -> list[dict]:
        done = run_stats(config, state, *args, "--json")
        assert done.returncode == 0, done.stderr
        (report,) = json.loads(done.stdout)["reports"]
        return report["rows"]

    by_provider = stats("monthly", "--by", "provider", "--breakdown")  # 40 days apart: two months
    assert sorted((r["period"], r["key"], r["model"], r["requests"]) for r in by_provider) == sorted(
        [(day(recent)[:7], "openai", "gpt-4o-mini", 1), (day(recent)[:7], "anthropic", "claude", 2),
         (day(old)[:7], "openai", "gpt-4o-mini", 1)])
    by_project = stats("daily", "--by", "project", "--since", day(recent), "--until", day(recent))
    assert sorted((r["period"], r["key"], r["requests"]) for r in by_project) == [
        (day(recent), "", 1), (day(recent), "alpha", 2)]
    (alpha,) = [r for r in by_project if r["key"] == "alpha"]
    assert (alpha["input_tokens"], alpha["cost_usd"], alpha["unpriced_requests"]) == (20, 1.0, 0)
    assert abs(alpha["p50_latency_ms"] - 100) <= 5 and abs(alpha["p95_latency_ms"] - 200) <= 10
    assert [(r["period"], r["requests"]) for r in stats("daily", "--until", day(old))] == [(day(old), 1)]
    sessions = stats("session", "--id", "alpha")
    assert sorted((r["period"], r["key"], r["requests"]) for r in sessions) == [("-", "alpha", 1), ("s1", "alpha", 2)]
    s1 = next(r for r in sessions if r["period"] == "s1")
    one = stats("session", "--id", "s1", "--breakdown")  # a session id, as ccusage's `session --id`
    assert sorted((r["period"], r["key"], r["model"], r["requests"]) for r in one) == [
        ("s1", "alpha", "claude", 1), ("s1", "alpha", "gpt-4o-mini", 1)]
    assert abs(s1["p50_latency_ms"] - 100) <= 5 and abs(s1["p95_latency_ms"] - 200) <= 10
    weekly = stats("weekly", "--by", "model", "--since", day(recent))
    assert sorted((r["key"], r["requests"]) for r in weekly) == [("claude", 2), ("gpt-4o-mini", 1)]


def test_stats_with_recording_off_names_the_setting(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\nmemory_proxy:\n  usage: {enabled: false}\n")
    done = run_stats(config, tmp_path, "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == {
        "reports": [], "note": "usage recording is off (memory_proxy.usage.enabled: false)"}


@pytest.mark.parametrize("store", ["garbage", "empty", "folder"])
def test_a_store_that_cannot_be_read_is_one_line_not_a_traceback(tmp_path, store):
    config = tmp_path / "config.yaml"
    config.write_text("model_list: []\n")
    path = tmp_path / "state" / "usage.sqlite3"
    path.parent.mkdir()
    if store == "folder":
        path.mkdir()
    else:
        path.write_bytes(b"garbage, not a database" * 50 if store == "garbage" else b"")
    done = run_stats(config, tmp_path / "state")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"cannot read the usage store {path}: ")
