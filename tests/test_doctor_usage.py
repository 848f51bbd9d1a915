"""``doctor``'s recent Cloudflare 1200 refusals and ``x-supermemory-error`` answers, read from
the usage store: provoked for real through a memory proxy in front of the emulator (SQLite in
the state folder), written into a real PostgreSQL, and the memory proxy's log as the fallback
when the usage record is off."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from memory_proxy.config.model import parse_config
from memory_proxy.launcher import doctor
from memory_proxy.state import StateDir
from memory_proxy.usage.record import CLOUDFLARE_REFUSED, from_supermemory
from memory_proxy.usage.store import SqliteStore, database_file
from tests.support import LAUNCHER, ROOT
from tests.support.ports import free_port
from tests.test_memory_page import FRONT_KEY, MASTER, SECRET, SM_KEY, chain, config_text
from tests.test_usage_pg import cluster, url  # noqa: F401  (fixtures: a throw-away PostgreSQL)

SECRETS = (SM_KEY, FRONT_KEY, MASTER, SECRET)


def ports() -> str:
    return f"  port: {free_port()}\n  litellm_port: {free_port()}\n"


def run_doctor(config: Path, state: Path) -> tuple[int, dict, str]:
    """The launcher's ``doctor``, as a user runs it: (exit code, --json report, human output);
    no output may hold a key."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MEMORY_PROXY_") and k != "LITELLM_MASTER_KEY" and not k.lower().endswith("_proxy")}
    env.update(SM_KEY=SM_KEY, FRONT_KEY=FRONT_KEY, MEMORY_PROXY_VENV=sys.prefix, MEMORY_PROXY_PYTHON=sys.executable)
    base = [sys.executable, str(LAUNCHER), "--config", str(config), "--state-dir", str(state), "doctor"]
    results = [subprocess.run(base + extra, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
               for extra in (["--json"], [])]
    for result in results:
        assert "Traceback" not in result.stderr, result.stderr
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr, "doctor printed a secret"
    assert results[0].returncode == results[1].returncode
    return results[0].returncode, json.loads(results[0].stdout), results[1].stdout


def egress_lines(findings) -> dict[str, dict]:
    lines = [f if isinstance(f, dict) else vars(f) for f in findings]
    found = {}
    for line in lines:
        if line["area"] == "egress":
            found["cloudflare" if "Cloudflare" in line["message"] else "memory_errors"] = line
    return found


def ago(message: str) -> int:
    minutes, seconds = re.search(r"last (?:(\d+)m)?(\d+)s ago", message).groups()
    return int(minutes or 0) * 60 + int(seconds)


def post(c, client_id: str, text: str) -> httpx.Response:
    return httpx.post(c.url + "/v1/chat/completions", headers={"x-memory-user-id": client_id}, timeout=20,
                      json={"model": "mem", "messages": [{"role": "user", "content": text}]})


def test_provoked_refusals_and_memory_errors_are_counted_from_the_usage_store(tmp_path):
    extra = ports()
    with chain(tmp_path, extra) as c:
        emu = c.emu.url
        c.say("alice", "hello")  # Cloudflare's cookies
        httpx.post(emu + "/_emulator/cloudflare", json={"refuse_next": 1})
        assert post(c, "alice", "refused once, retried").status_code == 200
        httpx.post(emu + "/_emulator/faults", json={"mode": "memory_error", "count": 1})
        assert post(c, "bob", "not remembered").status_code == 200
        httpx.post(emu + "/_emulator/faults", json={"mode": "memory_error", "count": 1})
        assert post(c, "carol", "not remembered either").status_code == 200
        started = time.time()
        httpx.post(emu + "/_emulator/cloudflare", json={"refuse_next": 2})
        refused = post(c, "bob", "refused twice")
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "cloudflare_1200"
        ended = time.time()
        c.written(5)

        config = tmp_path / "config.yaml"
        config.write_text(config_text(emu, extra))
        state = tmp_path / "state"
        assert database_file(state).exists()
        assert not StateDir(state).process_log("memory_proxy").exists()  # the counts cannot come from a log
        code, report, human = run_doctor(config, state)

        lines = egress_lines(report["checks"])
        cloudflare, memory_errors = lines["cloudflare"], lines["memory_errors"]
        assert cloudflare["message"].startswith("2 Cloudflare refusals (503, error code: 1200) in the last 7 days")
        assert "(1 of them refused twice: the egress answered 503)" in cloudflare["message"]
        assert "alice 1" in cloudflare["message"] and "bob 1" in cloudflare["message"]
        assert cloudflare["level"] == "warn" and "cookie jar" in cloudflare["fix"]
        assert memory_errors["message"].startswith("2 answers with x-supermemory-error (memory not added)")
        assert "bob 1" in memory_errors["message"] and "carol 1" in memory_errors["message"]
        assert "Supermemory said: Emulated fault: memory store unavailable" in memory_errors["message"]
        assert memory_errors["level"] == "warn" and memory_errors["fix"]
        (store_line,) = [f for f in report["checks"] if f["area"] == "usage log"]
        assert store_line["level"] == "ok" and str(database_file(state)) in store_line["message"]
        assert "2 Cloudflare refusals" in human and "fix: " in human
        assert code == 0, report  # warnings only: the chain works

        # The last time: the refused-twice request arrived between `started` and `ended`.
        parsed = parse_config(config.read_text(), config, {"SM_KEY": SM_KEY})
        later = ended + 125
        found = egress_lines(doctor.usage_log_findings(parsed, StateDir(state), now=later))
        assert later - ended - 1 <= ago(found["cloudflare"]["message"]) <= later - started + 1
        assert found["cloudflare"]["level"] == "warn"
        # An hour on, the same counts are no longer a warning; past the window, none are counted.
        hour_on = egress_lines(doctor.usage_log_findings(parsed, StateDir(state), now=ended + 3700))
        assert hour_on["cloudflare"]["level"] == "ok" and hour_on["cloudflare"]["fix"] is None
        assert hour_on["cloudflare"]["message"].startswith("2 Cloudflare refusals")
        gone = egress_lines(doctor.usage_log_findings(parsed, StateDir(state), now=ended + 8 * 86400))
        assert gone["cloudflare"]["message"] == "no Cloudflare refusals (503, error code: 1200) in the last 7 days"


def record(store, request_id: str, ts_ms: int, client_id: str, headers: dict, cloudflare_retries: int = 0) -> None:
    store.upsert([{"request_id": request_id, "ts_ms": ts_ms, "client_id": client_id, "client_source": "custom_header",
                   "method": "POST", "path": "/v1/chat/completions", "model_group": "mem", "status": 200},
                  from_supermemory(request_id, headers, cloudflare_retries)])


def fill(store, now: float) -> None:
    """Two refusals (one of them twice), one memory error, one old refusal past the window."""
    ms = int(now * 1000)
    record(store, "r1", ms - 600_000, "alice", {}, 1)
    record(store, "r2", ms - 300_000, "bob", {"x-supermemory-error": CLOUDFLARE_REFUSED}, 1)
    record(store, "r3", ms - 200_000, "bob", {"x-supermemory-error": "quota exceeded"})
    record(store, "r4", ms - 10 * 86_400_000, "old", {}, 1)
    record(store, "r5", ms - 100_000, "alice", {"x-supermemory-context-modified": "true"})


def expect_counts(findings, now: float) -> None:
    lines = egress_lines(findings)
    assert lines["cloudflare"]["message"] == (
        "2 Cloudflare refusals (503, error code: 1200) in the last 7 days (1 of them refused twice: the egress "
        "answered 503), last 5m00s ago; by client: alice 1, bob 1")
    assert lines["memory_errors"]["message"] == ("1 answers with x-supermemory-error (memory not added) in the last "
                                                 "7 days, last 3m20s ago; by client: bob 1; Supermemory said: "
                                                 "quota exceeded")
    assert lines["cloudflare"]["level"] == lines["memory_errors"]["level"] == "warn"


def config_for(tmp_path: Path, usage: str = "") -> object:
    text = config_text("http://127.0.0.1:9", ports() + usage)
    return parse_config(text, tmp_path / "config.yaml", {"SM_KEY": SM_KEY, "PG_URL": os.environ.get("PG_URL", "")})


def test_counts_and_last_times_from_a_sqlite_store(tmp_path):
    now = time.time()
    store = SqliteStore(database_file(tmp_path))
    fill(store, now)
    store.close()
    expect_counts(doctor.usage_log_findings(config_for(tmp_path), StateDir(tmp_path), now=now), now)
    # A config that does not load: the state folder's SQLite store is still read.
    expect_counts(doctor.usage_log_findings(None, StateDir(tmp_path), now=now), now)


def test_counts_from_postgresql_and_a_store_that_cannot_be_read(tmp_path, url, monkeypatch):  # noqa: F811
    from memory_proxy.usage.pg import PostgresStore

    now = time.time()
    store = PostgresStore(url)
    fill(store, now)
    store.close()
    monkeypatch.setenv("PG_URL", url)
    config = config_for(tmp_path, "  usage: {database_url: os.environ/PG_URL}\n")
    findings = doctor.usage_log_findings(config, StateDir(tmp_path), now=now)
    expect_counts(findings, now)
    assert "PostgreSQL (memory_proxy.usage.database_url)" in findings[0].message
    assert not database_file(tmp_path).exists()

    password = "pg-secret-password-123"
    monkeypatch.setenv("PG_URL", f"postgresql://usage:{password}@127.0.0.1:{free_port()}/postgres")
    down = doctor.usage_log_findings(config_for(tmp_path, "  usage: {database_url: os.environ/PG_URL}\n"),
                                     StateDir(tmp_path), now=now)
    (line,) = down
    assert line.area == "usage log" and line.level == "warn" and "cannot be read" in line.message
    assert "OperationalError" in line.message and "database_url" in line.fix
    assert password not in line.message + line.fix


def test_with_the_usage_record_off_the_log_is_read(tmp_path):
    now = time.time()
    state = StateDir(tmp_path)
    store = SqliteStore(database_file(tmp_path))  # an old store: not read while recording is off
    fill(store, now)
    store.close()
    log = state.process_log("memory_proxy")
    log.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 120))
    log.write_text(f"{stamp},001 WARNING memory_proxy: client=a {doctor.CLOUDFLARE_LINE}, retrying once\n")
    findings = doctor.usage_log_findings(config_for(tmp_path, "  usage: {enabled: false}\n"), state, now=now)
    assert findings[0].area == "usage log" and "usage recording is off" in findings[0].message
    lines = egress_lines(findings)
    assert lines["cloudflare"]["message"] == "1 Cloudflare refusals (503, error code: 1200), last 2m00s ago"
    assert lines["memory_errors"]["message"] == ("no answers with x-supermemory-error (memory not added) in the "
                                                 "memory proxy's log")
    # No config and no store: the log too; no store yet with recording on: nothing to count.
    (tmp_path / "usage.sqlite3").unlink()
    assert egress_lines(doctor.usage_log_findings(None, state, now=now))["cloudflare"]["level"] == "warn"
    (only,) = doctor.usage_log_findings(config_for(tmp_path), state, now=now)
    assert only.message.startswith("usage log not available")


def test_a_refusal_litellm_retried_under_the_same_request_id_still_counts(tmp_path):
    """LiteLLM retries the egress's 503 with the same request id; the retry that gets through
    writes ``cf_retries`` 0 over the refusal's 1, and the refusal's marker stays."""
    now = time.time()
    store = SqliteStore(database_file(tmp_path))
    record(store, "r1", int(now * 1000) - 60_000, "dave", {"x-supermemory-error": CLOUDFLARE_REFUSED}, 1)
    store.upsert([from_supermemory("r1", {"x-supermemory-context-modified": "false"}, 0)])
    store.close()
    lines = egress_lines(doctor.usage_log_findings(config_for(tmp_path), StateDir(tmp_path), now=now))
    assert lines["cloudflare"]["message"] == (
        "1 Cloudflare refusals (503, error code: 1200) in the last 7 days (1 of them refused twice: the egress "
        "answered 503), last 1m00s ago; by client: dave 1")
    assert lines["memory_errors"]["message"] == ("no answers with x-supermemory-error (memory not added) in the "
                                                 "last 7 days")
