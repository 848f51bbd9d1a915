"""`up --mode sdk|both`, the remembered mode, and scripts/rollback_to_binary.sh, for real.

Each test has its own state folder and ports (the session stack of the other e2e files
keeps running beside them) and shares only the upstream emulator. Startups are few: one
`up --detach --mode sdk` then the rollback (which starts binary mode), one `--mode both`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support import ROOT
from tests.support.ports import free_port, port_taken
from tests.support.stacks import Stack, new_stack

from .conftest import CLAUDE_UA, PYCHARM_UA

ROLLBACK = ROOT / "scripts" / "rollback_to_binary.sh"
COLLECTOR_LINE = "garbage is collected by the collector thread"


@pytest.fixture
def own_stack(tmp_path, emulator):
    st = new_stack(tmp_path, emulator)
    try:
        yield st
    finally:
        st.down()


def routed(base: str, headers: dict[str, str]) -> tuple[str, str]:
    r = httpx.get(base + "/memory-routing/info", headers=headers, timeout=30, trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()["user_id"], r.headers["x-supermemory-user-id"]


CLIENTS = [{"user-agent": PYCHARM_UA}, {"user-agent": CLAUDE_UA},
           {"user-agent": "curl/8", "x-memory-user-id": "rollback-check"}]
EXPECTED = ["pycharm-ai", "claude-cli", "rollback-check"]


def rollback(st: Stack, *args: str, cwd: Path = Path("/")) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROLLBACK), "--config", str(st.config), "--state-dir", str(st.state), *args],
                          capture_output=True, text=True, timeout=400, env=st.env, cwd=cwd)


def test_sdk_mode_then_rollback_to_binary(own_stack):
    st = own_stack
    nothing = rollback(st)
    assert nothing.returncode == 1 and "nothing runs" in nothing.stderr

    up = st.cli("up", "--detach", "--backend", "sdk", "--json")
    assert up.returncode == 0, up.stdout + up.stderr
    assert json.loads(up.stdout)["backend"] == "sdk"
    assert (st.state / "mode").read_text().strip() == "sdk"
    status = st.status()
    assert status["healthy"] and status["backend"] == "sdk", status
    assert "litellm" not in status["processes"]  # LiteLLM runs inside the memory proxy
    assert not port_taken(st.litellm_port)
    health = httpx.get(st.proxy_url + "/health", timeout=10, trust_env=False).json()
    assert health["litellm"]["ready"] is True and health["litellm"]["backend"] == "sdk"
    text = st.cli("status")
    assert text.returncode == 0 and "backend: sdk" in text.stdout, text.stdout
    for headers, expected in zip(CLIENTS, EXPECTED, strict=True):
        assert routed(st.proxy_url, headers) == (expected, expected)
    with st.client() as c:
        r = c.post("/v1/chat/completions", headers={"user-agent": PYCHARM_UA},
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    sdk_pid = status["processes"]["memory_proxy"]["pid"]

    result = rollback(st)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("1/4", "2/4", "3/4", "4/4", "rolled back to binary mode"):
        assert step in result.stdout, result.stdout
    assert result.stdout.count("  ok  ") == 5 and "FAIL" not in result.stdout, result.stdout
    assert (st.state / "mode").read_text().strip() == "binary"
    status = st.status()
    assert status["healthy"] and status["backend"] == "binary"
    assert status["processes"]["litellm"]["pid"] and status["processes"]["memory_proxy"]["pid"] != sdk_pid
    for headers, expected in zip(CLIENTS, EXPECTED, strict=True):
        assert routed(st.proxy_url, headers) == (expected, expected)

    again = rollback(st)  # already binary: nothing to do, success
    assert again.returncode == 0 and "already running in binary mode" in again.stdout, again.stdout


def test_both_mode_serves_two_ports_and_is_remembered(own_stack):
    st = own_stack
    sdk_port = free_port()
    up = st.cli("up", "--detach", "--mode", "both", "--sdk-port", str(sdk_port))
    assert up.returncode == 0, up.stdout + up.stderr
    assert "backend both" in up.stdout, up.stdout
    status = st.status()
    assert status["healthy"] and status["backend"] == "both", status
    assert {"litellm", "memory_proxy", "memory_proxy_sdk"} <= set(status["processes"])
    assert status["processes"]["memory_proxy_sdk"]["port"] == sdk_port
    sdk_url = f"http://127.0.0.1:{sdk_port}"
    binary_health = httpx.get(st.proxy_url + "/health", timeout=10, trust_env=False).json()
    sdk_health = httpx.get(sdk_url + "/health", timeout=10, trust_env=False).json()
    assert sdk_health["litellm"]["backend"] == "sdk" and sdk_health["litellm"]["ready"] is True
    assert binary_health["litellm"].get("backend") != "sdk" and binary_health["litellm"]["ready"] is True
    for headers, expected in zip(CLIENTS, EXPECTED, strict=True):
        assert routed(st.proxy_url, headers) == routed(sdk_url, headers) == (expected, expected)
    for base in (st.proxy_url, sdk_url):
        r = httpx.post(base + "/v1/chat/completions", headers={"user-agent": CLAUDE_UA}, timeout=60, trust_env=False,
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, (base, r.text)
    # The two processes that run LiteLLM's code collect garbage on the collector thread
    # (memory_proxy/child_site/, tests/test_collector_thread.py); the binary memory proxy as Python does.
    logs = st.logs()
    said = {name: COLLECTOR_LINE in text for name, text in logs.items()}
    expected = sys.version_info < (3, 12)
    assert said == {"litellm.log": expected, "memory_sdk.log": expected, "memory.log": False,
                    "supervisor.log": False}, said

    down = st.cli("down", "--json", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert any("memory_proxy_sdk" in s for s in json.loads(down.stdout)["stopped"]), down.stdout
    assert not port_taken(sdk_port) and not port_taken(st.proxy_port) and not port_taken(st.litellm_port)
    assert (st.state / "mode").read_text().strip() == "both"
    # No --backend: the remembered one (both) is used again.
    up = st.cli("up", "--detach", "--sdk-port", str(sdk_port), "--json")
    assert up.returncode == 0, up.stdout + up.stderr
    assert json.loads(up.stdout)["backend"] == "both"
