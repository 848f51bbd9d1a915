"""The memory proxy stopping (``down``, the supervisor stopping it, Ctrl+C) while requests wait
for LiteLLM (held while it is not back, or inside it past the 5 s uvicorn gives requests to
end): each gets a 503 in OpenAI's shape and its usage record, and the log has no traceback.
(uvicorn used to cancel them: a plain-text 500, a traceback per request, no record.)"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from memory_proxy.server.ingress import STOPPED_BEFORE_ANSWER
from tests.support.configs import build_config, model
from tests.support.ports import free_port
from tests.support.readiness import until
from tests.support.servers import ServerThread
from tests.support.stacks import start_memory_proxy

WAITING = 3


def held_requests(url: str) -> int:
    return httpx.get(url + "/health", trust_env=False).json()["memory_proxy"]["waiting_for_litellm"]


def stop_while_waiting(tmp_path: Path, litellm_url: str, waiting: Callable[[str], bool]) -> list[httpx.Response]:
    """``python -m memory_proxy`` in front of ``litellm_url``: ``WAITING`` requests sent, SIGTERM
    once ``waiting(proxy url)``; their answers. Checks the log has no traceback and the store a
    503 record for each."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(build_config([model("gpt-4o-mini", "openai/gpt-4o-mini", litellm_url + "/v1")],
                                   proxy={"port": port, "startup_wait": 600}))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proxy = start_memory_proxy(config, tmp_path / "state", port, "--litellm-url", litellm_url, env=env)
    try:
        with ThreadPoolExecutor(WAITING) as pool:
            sent = [pool.submit(httpx.post, proxy.url + "/v1/chat/completions", trust_env=False, timeout=120,
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                    for _ in range(WAITING)]
            until(lambda: waiting(proxy.url), f"{WAITING} requests waiting for LiteLLM")
            proxy.proc.send_signal(signal.SIGTERM)
            answers = [future.result() for future in sent]
        proxy.proc.wait(timeout=60)
    finally:
        proxy.kill()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "2"
    assert "Traceback" not in proxy.log.read_text()
    with sqlite3.connect(tmp_path / "state" / "usage.sqlite3") as db:
        assert db.execute("SELECT status, count(*) FROM usage_requests GROUP BY status").fetchall() == [(503, WAITING)]
    return answers


def test_requests_held_for_litellm_get_a_503_when_the_proxy_stops(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # LiteLLM restarting: its port refuses connections
    answers = stop_while_waiting(tmp_path, closed, lambda url: held_requests(url) == WAITING)
    assert all("the memory proxy is stopping" in answer.json()["error"]["message"] for answer in answers)


def test_requests_inside_a_slow_litellm_get_a_503_when_the_proxy_stops(tmp_path):
    from tests import emulator

    with ServerThread(emulator.create_app()) as litellm:  # the emulator answers as LiteLLM would
        httpx.post(litellm.url + "/_emulator/faults", json={"mode": "slow", "count": WAITING, "delay": 600})
        answers = stop_while_waiting(tmp_path, litellm.url, lambda url: arrived(litellm.url) == WAITING)
    assert all(answer.json()["error"]["message"] == STOPPED_BEFORE_ANSWER for answer in answers)


def arrived(emulator_url: str) -> int:
    """Requests the emulator has had (not counting its control endpoints)."""
    return httpx.get(emulator_url + "/_emulator/stats", trust_env=False).json()["requests"]
