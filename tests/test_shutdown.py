"""The memory proxy stopping (``down``, the supervisor stopping it, Ctrl+C) while requests wait
for a LiteLLM that is not back: each gets its 503 in OpenAI's shape and its usage record, and
the log has no traceback. (uvicorn cancelled them once its 5 s of graceful shutdown were over:
a plain-text 500, a traceback per request, no record.)"""

from __future__ import annotations

import os
import signal
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.configs import build_config, model
from tests.support.ports import free_port
from tests.support.readiness import until
from tests.support.stacks import start_memory_proxy

HELD = 3


def held_requests(url: str) -> int:
    return httpx.get(url + "/health", trust_env=False).json()["memory_proxy"]["waiting_for_litellm"]


def test_requests_held_for_litellm_get_a_503_when_the_proxy_stops(tmp_path):
    port = free_port()
    closed = f"http://127.0.0.1:{free_port()}"  # LiteLLM restarting: its port refuses connections
    config = tmp_path / "config.yaml"
    config.write_text(build_config([model("gpt-4o-mini", "openai/gpt-4o-mini", closed + "/v1")],
                                   proxy={"port": port, "startup_wait": 600}))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    proxy = start_memory_proxy(config, tmp_path / "state", port, "--litellm-url", closed, env=env)
    try:
        with ThreadPoolExecutor(HELD) as pool:
            sent = [pool.submit(httpx.post, proxy.url + "/v1/chat/completions", trust_env=False, timeout=120,
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                    for _ in range(HELD)]
            until(lambda: held_requests(proxy.url) == HELD, f"{HELD} requests held for LiteLLM")
            proxy.proc.send_signal(signal.SIGTERM)
            answers = [future.result() for future in sent]
        proxy.proc.wait(timeout=60)
    finally:
        proxy.kill()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "2"
        assert "the memory proxy is stopping" in answer.json()["error"]["message"]
    assert "Traceback" not in proxy.log.read_text()
    with sqlite3.connect(tmp_path / "state" / "usage.sqlite3") as db:
        assert db.execute("SELECT status, count(*) FROM usage_requests GROUP BY status").fetchall() == [(503, HELD)]
