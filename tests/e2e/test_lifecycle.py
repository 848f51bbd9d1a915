"""Processes over time: LiteLLM dying and coming back, the operator script, the
``--litellm-url`` mode, and ``down``/``up`` leaving nothing behind but the cookies.

These run after the client tests because they restart things (the run order is in tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from tests.support import ROOT
from tests.support.configs import config_text
from tests.support.ports import free_port, port_taken
from tests.support.stacks import cli_env

CHAT = "/v1/chat/completions"
PLAIN = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "are you there?"}]}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if text in cmdline and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {cmdline}")
    return found


def test_killed_litellm_is_restarted_while_requests_wait_for_it(stack, tmp_path):
    """scripts/restart_litellm.sh --kill, run from another directory: SIGKILL to the recorded
    LiteLLM pid (a crash, as far as the supervisor can tell), then wait for health. A steady
    trickle of requests meanwhile (a new one every 0.3 s, each on its own connection): every
    one succeeds, those sent while LiteLLM was away once it is back. The one exception is a
    request LiteLLM already had when it was killed (on a loaded machine there can be a few):
    it may have reached the provider, so it is never sent again and gets a 503
    (``upstream_disconnected``), as before."""
    script = ROOT / "scripts" / "restart_litellm.sh"
    before = stack.status()["processes"]
    litellm = before["litellm"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sent = stack.request_count()
    proc = subprocess.Popen(["bash", str(script), "--kill", "--config", str(stack.config),
                             "--state-dir", str(stack.state)],
                            cwd=elsewhere, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answers: list[tuple[int, int, str]] = []  # (request number, status, body)

    def one(i: int) -> None:
        body = {**PLAIN, "messages": [{"role": "user", "content": f"trickle {i}"}]}
        with stack.client() as c:
            answer = c.post(CHAT, json=body, timeout=180)
        answers.append((i, answer.status_code, answer.text[:300]))

    threads: list[threading.Thread] = []
    most_waiting, degraded = 0, None  # degraded: the number of the first request sent after LiteLLM was seen gone
    with stack.client() as client:
        while proc.poll() is None:
            threads.append(threading.Thread(target=one, args=(len(threads),)))
            threads[-1].start()
            health = client.get("/health")
            if health.status_code == 503:
                degraded = len(threads) if degraded is None else degraded
                assert health.json()["litellm"]["ready"] is False and health.json()["memory_proxy"]["status"] == "ok"
            most_waiting = max(most_waiting, health.json()["memory_proxy"]["waiting_for_litellm"])
            time.sleep(0.3)
        out, err = proc.communicate()
        for t in threads:
            t.join(timeout=200)
        assert proc.returncode == 0, out + err
        assert f"recorded pid {litellm['pid']}, SIGKILL" in out and "LiteLLM is back" in out
        assert degraded is not None and most_waiting >= 1, "no request was sent while LiteLLM was away"
        assert len(answers) == len(threads)
        failed = [a for a in answers if a[1] != 200]
        # Only one LiteLLM had when it died (sent before LiteLLM was seen gone) may fail.
        assert all(i < degraded and '"upstream_disconnected"' in text for i, _, text in failed), (degraded, failed)
        assert len(threads) > degraded
        # The others reached the provider exactly once: none was lost, none sent twice.
        chats = [r for r in stack.requests_since(sent) if r["path"].endswith("/chat/completions")
                 and "trickle" in json.dumps(r.get("body"))]
        ok = {f"trickle {i}" for i, status, _ in answers if status == 200}
        arrived = [m["content"] for r in chats for m in r["body"]["messages"]]
        assert ok <= set(arrived) and len(arrived) == len(set(arrived)), (sorted(ok - set(arrived)), len(arrived))
        after = stack.status()["processes"]
        assert after["litellm"]["healthy"] and after["litellm"]["pid"] != litellm["pid"]
        assert after["litellm"]["restarts"] == litellm["restarts"] + 1
        assert after["memory_proxy"]["pid"] == before["memory_proxy"]["pid"], "the memory proxy kept running"
        assert after["memory_proxy"]["waiting_for_litellm"] == 0
    log = (stack.state / "logs" / "supervisor.log").read_text()
    assert f"litellm (pid {litellm['pid']}) exited (signal SIGKILL)" in log
    assert "litellm restarted" in log and "litellm is ready again" in log
    nothing = subprocess.run(["bash", str(script), "--state-dir", str(tmp_path / "no-state")], cwd=elsewhere,
                             env=stack.env, capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 1 and "no running LiteLLM is recorded" in nothing.stderr


def test_litellm_url_mode_starts_only_the_memory_proxy(stack, tmp_path):
    port = free_port()
    config = tmp_path / "remote.yaml"
    config.write_text(config_text(stack.provider_port, stack.supermemory_port, port, free_port()))
    state = tmp_path / "state"
    url = f"http://127.0.0.1:{stack.litellm_port}"
    refused = stack.cli("up", "--detach", "--litellm-url", url, config=config, state=state)
    assert refused.returncode != 0 and "LITELLM_MASTER_KEY" in refused.stderr
    key = (stack.state / "litellm_master_key").read_text().strip()
    env = cli_env(LITELLM_MASTER_KEY=key)
    litellm_pid = stack.status()["processes"]["litellm"]["pid"]
    started = stack.cli("up", "--detach", "--litellm-url", url, config=config, state=state, env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = json.loads(stack.cli("status", "--json", config=config, state=state, env=env).stdout)
        assert status["healthy"] and status["processes"]["litellm"]["external_url"] == url
        assert status["processes"]["litellm"]["pid"] is None
        assert not (state / "litellm_config.generated.yaml").exists()
        import httpx

        answer = httpx.post(f"http://127.0.0.1:{port}{CHAT}", json=PLAIN, headers={"user-agent": "curl/8.5.0"},
                            trust_env=False, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-supermemory-user-id"] == "curl"
    finally:
        stopped = stack.cli("down", config=config, state=state, env=env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not port_taken(port)
    assert stack.status()["processes"]["litellm"]["pid"] == litellm_pid, "the shared LiteLLM was left alone"


def test_foreground_up_streams_prefixed_logs_and_ctrl_c_stops_it(stack, tmp_path):
    """Foreground ``up`` (here in --litellm-url mode, so no second LiteLLM has to start)."""
    port = free_port()
    config = tmp_path / "fg.yaml"
    config.write_text(config_text(stack.provider_port, stack.supermemory_port, port, free_port()))
    state = tmp_path / "state"
    env = cli_env(LITELLM_MASTER_KEY=(stack.state / "litellm_master_key").read_text().strip())
    argv = [sys.executable, str(ROOT / "start_proxies.py"), "--config", str(config), "--state-dir", str(state),
            "up", "--litellm-url", f"http://127.0.0.1:{stack.litellm_port}"]
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    watchdog = threading.Timer(120, proc.send_signal, (signal.SIGINT,))  # a line that never comes ends the wait
    watchdog.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl+C stops both" in line:
                break
        assert any(f"is up on http://127.0.0.1:{port}" in line for line in lines), "".join(lines)
        assert any("pycharm-ai" in line for line in lines) and any("claude-cli" in line for line in lines)
        status = json.loads(stack.cli("status", "--json", config=config, state=state, env=env).stdout)
        assert status["healthy"] and status["detached"] is False
        assert status["processes"]["supervisor"]["pid"] == proc.pid
        import httpx

        answer = httpx.post(f"http://127.0.0.1:{port}{CHAT}", json=PLAIN, trust_env=False, timeout=60,
                            headers={"user-agent": "curl/8.5.0"})
        assert answer.status_code == 200
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("[memory_proxy]") and "client=curl" in line:
                break
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopped; nothing is left running" in rest
    assert not port_taken(port) and not (state / "processes.json").exists()
    assert not processes_mentioning(str(state))


def test_down_leaves_nothing_behind_and_up_keeps_the_cookies(stack):
    record = stack.record()
    recorded = {name: (entry["pid"], entry["create_time"]) for name, entry in record["processes"].items()}
    assert set(recorded) == {"supervisor", "litellm", "memory_proxy"}
    with stack.client() as client:  # at least one Supermemory exchange, so there are cookies to keep
        answer = client.post(CHAT, json={"model": "memory/gpt-4o-mini",
                                         "messages": [{"role": "user", "content": "before the restart"}]})
    assert answer.status_code == 200, answer.text
    jar = json.loads((stack.state / "supermemory_cookies.json").read_text())
    clearance = next(c["value"] for c in jar["cookies"] if c["name"] == "cf_clearance")

    result = stack.cli("down", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, (pid, create_time) in recorded.items():
        alive = psutil.pid_exists(pid) and abs(psutil.Process(pid).create_time() - create_time) < 0.05
        assert not alive, f"{name} (pid {pid}) is still running"
    assert not processes_mentioning(str(stack.state)), processes_mentioning(str(stack.state))
    assert not port_taken(stack.proxy_port) and not port_taken(stack.litellm_port)
    assert not (stack.state / "processes.json").exists()
    status = stack.cli("status", "--json", timeout=30)
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False
    again = stack.cli("down", timeout=30)
    assert again.returncode == 0 and "Nothing was running" in again.stdout

    stack.up()
    since = stack.request_count()
    with stack.client() as client:
        answer = client.post(CHAT, json={"model": "memory/gpt-4o-mini",
                                         "messages": [{"role": "user", "content": "after the restart"}]})
    assert answer.status_code == 200, answer.text
    (call,) = [r for r in stack.requests_since(since) if r["path"].startswith("/v3/")]
    assert call["cookies"].get("cf_clearance") == clearance, "the cookie jar did not outlive down/up"
