"""The memory proxy stopping (``down``, the supervisor stopping it, Ctrl+C) while requests wait
for LiteLLM (held while it is not back, or inside it past the 5 s uvicorn gives requests to
end): each gets a 503 in OpenAI's shape, or its stream an error event and a clean end, and its
usage record; the log has no traceback. (uvicorn used to cancel them: a plain-text 500 or a cut
stream, a traceback per request, no record.) The same in SDK mode (``python -m
memory_proxy.sdk``), LiteLLM's Router in-process calling the emulator as its provider, on
``/v1/chat/completions`` and ``/v1/messages``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from memory_proxy.server.errors import error_body, stream_error_event
from memory_proxy.server.ingress import STOPPED_BEFORE_ANSWER
from memory_proxy.server.relay import STOPPED_MID_STREAM
from tests.support.configs import ANTHROPIC_KEY, build_config, model
from tests.support.ports import free_port
from tests.support.readiness import until
from tests.support.servers import ServerThread
from tests.support.stacks import ProxyProcess, start_memory_proxy

WAITING = 3
CHAT, MESSAGES = "/v1/chat/completions", "/v1/messages"
ENV = {**{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
       "OPENAI_API_KEY": "sk-test-shutdown", "ANTHROPIC_API_KEY": "sk-ant-test-shutdown"}


def held_requests(url: str) -> int:
    return httpx.get(url + "/health", trust_env=False).json()["memory_proxy"]["waiting_for_litellm"]


def stop_while_waiting(tmp_path: Path, litellm_url: str, waiting: Callable[[str], bool], *,
                       stream: bool = False) -> tuple[list[httpx.Response], list[tuple]]:
    """``python -m memory_proxy`` in front of ``litellm_url``: ``WAITING`` requests sent, SIGTERM
    once ``waiting(proxy url)``; their answers and the (status, completed) of their usage records.
    Checks the log has no traceback."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(build_config([model("gpt-4o-mini", "openai/gpt-4o-mini", litellm_url + "/v1")],
                                   proxy={"port": port, "startup_wait": 600}))
    proxy = start_memory_proxy(config, tmp_path / "state", port, "--litellm-url", litellm_url, env=ENV)
    answers, records = stop_while_sending(proxy, [(CHAT, chat(stream))] * WAITING, waiting)
    return answers, [(status, completed) for _, status, completed in records]


def stop_while_sending(proxy: ProxyProcess, requests: list[tuple[str, dict]], waiting: Callable[[str], bool],
                       ) -> tuple[list[httpx.Response], list[tuple]]:
    """``requests`` (path, body) sent to ``proxy``, SIGTERM once ``waiting(proxy url)``; their
    answers and the (path, status, completed) of their usage records, by path. Checks the log
    has no traceback."""
    try:
        with ThreadPoolExecutor(len(requests)) as pool:
            sent = [pool.submit(httpx.post, proxy.url + path, trust_env=False, timeout=120, json=body)
                    for path, body in requests]
            until(lambda: waiting(proxy.url), f"{len(requests)} requests waiting for LiteLLM")
            proxy.proc.send_signal(signal.SIGTERM)
            answers = [future.result() for future in sent]
        proxy.proc.wait(timeout=60)
    finally:
        proxy.kill()
    assert "Traceback" not in proxy.log.read_text()
    with sqlite3.connect(proxy.state / "usage.sqlite3") as db:
        return answers, db.execute("SELECT path, status, completed FROM usage_requests ORDER BY path").fetchall()


def chat(stream: bool = False) -> dict:
    return {"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def message(stream: bool = False) -> dict:
    return {"model": "claude", "max_tokens": 30, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}


def sdk_proxy(tmp_path: Path, emulator_url: str) -> ProxyProcess:
    """``python -m memory_proxy.sdk`` with the emulator as its providers, OpenAI's and Anthropic's."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(build_config([model("gpt-4o-mini", "openai/gpt-4o-mini", emulator_url + "/v1"),
                                    model("claude", "anthropic/claude-3-5-haiku-latest", emulator_url,
                                          ANTHROPIC_KEY)], proxy={"port": port}))
    return start_memory_proxy(config, tmp_path / "state", port, env=ENV, module="memory_proxy.sdk", timeout=120)


def assert_503s(answers: list[httpx.Response], message: str) -> None:
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"] == "2"
        assert message in answer.json()["error"]["message"]


def test_requests_held_for_litellm_get_a_503_when_the_proxy_stops(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # LiteLLM restarting: its port refuses connections
    answers, records = stop_while_waiting(tmp_path, closed, lambda url: held_requests(url) == WAITING)
    assert_503s(answers, "the memory proxy is stopping")
    assert [status for status, _ in records] == [503] * WAITING


def test_requests_inside_a_slow_litellm_get_a_503_when_the_proxy_stops(tmp_path):
    from tests import emulator

    with ServerThread(emulator.create_app()) as litellm:  # the emulator answers as LiteLLM would
        httpx.post(litellm.url + "/_emulator/faults", json={"mode": "slow", "count": WAITING, "delay": 600})
        answers, records = stop_while_waiting(tmp_path, litellm.url, lambda url: emulator_stats(litellm.url)[
            "requests"] == WAITING)
    assert_503s(answers, STOPPED_BEFORE_ANSWER)
    assert [status for status, _ in records] == [503] * WAITING


def test_streams_under_way_end_with_an_error_event_when_the_proxy_stops(tmp_path):
    from tests import emulator

    with ServerThread(emulator.create_app()) as litellm:
        httpx.post(litellm.url + "/_emulator/faults", json={"mode": "endless_stream", "count": WAITING})
        answers, records = stop_while_waiting(tmp_path, litellm.url, lambda url: emulator_stats(litellm.url)[
            "active_streams"] == WAITING, stream=True)
    for answer in answers:
        assert answer.status_code == 200
        assert answer.text.rstrip().endswith(json.dumps(error_body(503, STOPPED_MID_STREAM)))
    assert records == [(200, 0)] * WAITING  # cut: not completed


def test_sdk_mode_requests_inside_litellm_get_a_503_when_the_proxy_stops(tmp_path):
    from tests import emulator

    with ServerThread(emulator.create_app()) as provider:  # slower than the 5 s of grace
        httpx.post(provider.url + "/_emulator/faults", json={"mode": "slow", "count": 2, "delay": 600})
        answers, records = stop_while_sending(sdk_proxy(tmp_path, provider.url),
                                              [(CHAT, chat()), (MESSAGES, message())],
                                              lambda url: emulator_stats(provider.url)["requests"] == 2)
    assert_503s(answers, STOPPED_BEFORE_ANSWER)  # the proxy's own answer: OpenAI's shape, as in binary mode
    assert records == [(CHAT, 503, 1), (MESSAGES, 503, 1)]


def test_sdk_mode_streams_under_way_end_with_an_error_event_when_the_proxy_stops(tmp_path):
    from tests import emulator

    with ServerThread(emulator.create_app()) as provider:
        # one event a second: LiteLLM ends a chat stream that repeats one chunk 100 times (its
        # REPEATED_STREAMING_CHUNK_LIMIT), which 5 s of grace at the default 0.05 s would reach
        httpx.post(provider.url + "/_emulator/faults", json={"mode": "endless_stream", "count": 2, "delay": 1})
        answers, records = stop_while_sending(sdk_proxy(tmp_path, provider.url),
                                              [(CHAT, chat(stream=True)), (MESSAGES, message(stream=True))],
                                              lambda url: emulator_stats(provider.url)["active_streams"] == 2)
    for answer, stream_format in zip(answers, ("openai", "anthropic"), strict=True):
        assert answer.status_code == 200
        assert answer.text.endswith(stream_error_event(stream_format, STOPPED_MID_STREAM, 503).decode()), answer.text
    assert records == [(CHAT, 200, 0), (MESSAGES, 200, 0)]  # cut: not completed


def emulator_stats(emulator_url: str) -> dict:
    """Its requests (not counting its control endpoints) and open streams."""
    return httpx.get(emulator_url + "/_emulator/stats", trust_env=False).json()
