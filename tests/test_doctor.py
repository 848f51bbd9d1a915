"""``start_proxies.py doctor`` as a user runs it (the launcher in a subprocess), against the
emulator's Supermemory, with nothing started; the running stack's cases are in tests/e2e."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from memory_proxy.launcher import doctor
from memory_proxy.state import StateDir
from tests.emulator import create_app
from tests.support import LAUNCHER, ROOT
from tests.support.configs import config_text
from tests.support.ports import free_port
from tests.support.servers import ServerThread
from tests.support.stacks import ENV_KEYS, cli_env


@pytest.fixture()
def emu():
    with ServerThread(create_app()) as server:
        yield server


@pytest.fixture()
def run(tmp_path, emu):
    """run(*extra args, env=, config_extra=) -> (exit code, parsed --json, human output)."""
    state = tmp_path / "state"
    ports = free_port(), free_port()

    def go(env: dict | None = None, supermemory_port: int | None = None):
        config = tmp_path / "config.yaml"
        config.write_text(config_text(emu.port, supermemory_port or emu.port, *ports))
        base = [sys.executable, str(LAUNCHER), "--config", str(config), "--state-dir", str(state), "doctor"]
        results = [subprocess.run(base + extra, capture_output=True, text=True, timeout=60, env=env or cli_env(),
                                  cwd=ROOT) for extra in (["--json"], [])]
        for result in results:
            assert "Traceback" not in result.stderr, result.stderr
            for key in ENV_KEYS.values():
                assert key not in result.stdout + result.stderr, "doctor printed a key"
        assert results[0].returncode == results[1].returncode
        return results[0].returncode, json.loads(results[0].stdout), results[1].stdout
    go.state = state
    go.ports = ports
    return go


def lines(report: dict, area: str) -> list[dict]:
    return [c for c in report["checks"] if c["area"] == area]


def test_healthy_supermemory_and_nothing_running(run):
    code, report, human = run()
    assert code == 0 and report["ok"] is True and report["counts"]["fail"] == 0
    (sm,) = lines(report, "supermemory")
    assert sm["level"] == "ok" and "key accepted" in sm["message"]
    assert lines(report, "clock")[0]["level"] == "ok"
    assert lines(report, "processes")[0]["level"] == "warn" and "up --detach" in lines(report, "processes")[0]["fix"]
    assert all(c["level"] == "ok" for c in lines(report, "ports"))
    (disabled,) = lines(report, "models")
    assert "needs-a-key" in disabled["message"] and "E2E_NEVER_SET_KEY" in disabled["fix"]
    assert "SUPERMEMORY_API_KEY" in lines(report, "keys")[0]["message"]  # named, never shown
    assert lines(report, "usage log")[0]["message"].startswith("usage log not available")
    assert any("bound to 127.0.0.1" in c["message"] for c in lines(report, "front door"))
    assert "ok " in human and "fix: " in human and "0 fail" in human


def test_missing_supermemory_key_fails(run):
    env = cli_env()
    env.pop("SUPERMEMORY_API_KEY")
    code, report, human = run(env=env)
    assert code == 1
    (sm,) = lines(report, "supermemory")
    assert sm["level"] == "fail" and "SUPERMEMORY_API_KEY is not set" in sm["message"]
    assert "export SUPERMEMORY_API_KEY" in sm["fix"]
    assert any("memory/gpt-4o-mini" in c["message"] for c in lines(report, "models"))
    assert "fail" in human


def test_supermemory_refusing_the_key_fails(run, emu):
    httpx.post(emu.url + "/_emulator/supermemory_keys", json={"accept": ["another-key"]})
    code, report, _ = run()
    assert code == 1
    (sm,) = lines(report, "supermemory")
    assert sm["level"] == "fail" and "refused the key" in sm["message"] and "SUPERMEMORY_API_KEY" in sm["fix"]


def test_supermemory_unreachable_fails(run):
    code, report, _ = run(supermemory_port=free_port())
    assert code == 1
    (sm,) = lines(report, "supermemory")
    assert sm["level"] == "fail" and "cannot reach" in sm["message"] and "base_url" in sm["fix"]


def test_torn_and_old_cookie_jars_are_warned_about(run):
    code, report, _ = run()
    jar = StateDir(run.state).cookie_jar
    assert jar.exists()  # doctor's own call got Cloudflare's cookies and kept them
    fresh = [f.message for f in doctor.cookie_jar_findings(StateDir(run.state))]
    assert any(m.startswith("cf_clearance valid for") for m in fresh), fresh

    jar.write_text('{"version": 1, "cookies": [{"name": "cf_clearance", "val')
    code, report, _ = run()
    assert code == 0
    (torn,) = lines(report, "cookie jar")
    assert torn["level"] == "warn" and "torn" in torn["message"] and f"rm {jar}" in torn["fix"]

    old = time.time() - 3 * 86400
    cookies = [{"name": name, "value": "x", "domain": "127.0.0.1", "path": "/", "expires": int(old + 1800)}
               for name in ("cf_clearance", "__cf_bm")]
    jar.write_text(json.dumps({"version": 1, "cookies": cookies}))
    os.chmod(jar, 0o644)
    os.utime(jar, (old, old))
    found = [vars(f) for f in doctor.cookie_jar_findings(StateDir(run.state))]
    messages = {f["message"]: f for f in found}
    assert any("saved 3d" in m or "saved 72h" in m for m in messages), messages
    assert any(m.startswith("cf_clearance expired") for m in messages)
    assert any(m.startswith("__cf_bm expired") for m in messages)
    assert any("readable by others" in m for m in messages)
    assert all(f["level"] in ("ok", "warn") for f in found)


def test_a_held_port_fails_and_names_the_holder(run):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", run.ports[0]))
        sock.listen()
        code, report, _ = run()
    assert code == 1
    held = [c for c in lines(report, "ports") if c["level"] == "fail"]
    assert len(held) == 1 and str(run.ports[0]) in held[0]["message"] and "held by" in held[0]["message"]


def test_refusals_and_memory_errors_from_the_memory_proxys_log(tmp_path):
    state = StateDir(tmp_path)
    log = state.log_file("memory")
    log.parent.mkdir(parents=True)
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 120))
    old = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now - 3 * 86400))
    log.write_text(f"{old},001 WARNING memory_proxy: client=a {doctor.CLOUDFLARE_LINE}, retrying once\n"
                   f"{stamp},002 WARNING memory_proxy: client=a {doctor.CLOUDFLARE_LINE}, retrying once\n"
                   f"{old},003 WARNING memory_proxy: client=b {doctor.MEMORY_ERROR_LINE}: quota\n")
    cloudflare, memory_errors = doctor.memory_log_findings(state, now=now)
    assert cloudflare.level == "warn" and cloudflare.message.startswith("2 Cloudflare refusals")
    assert "last 2m00s ago" in cloudflare.message and cloudflare.fix
    assert memory_errors.level == "ok" and memory_errors.message.startswith("1 answers with x-supermemory-error")
    assert doctor.memory_log_findings(StateDir(tmp_path / "none")) == []


@pytest.mark.parametrize("skew, level", [(0, "ok"), (-5, "ok"), (300, "warn"), (-7200, "fail")])
def test_clock_against_the_servers_date(skew, level):
    now = time.time()
    server = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now - skew))
    finding = doctor.clock_finding(server, now=now)
    assert finding.level == level
    assert doctor.clock_finding("not a date", now=now).level == "ok"
    assert doctor.clock_finding(None, now=0).level == "fail"  # 1970: the clock was never set
