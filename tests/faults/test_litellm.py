"""LiteLLM killed (SIGKILL) or frozen (SIGSTOP) under live requests and streams.

Killed: a request in flight gets a 503 with Retry-After, streams end with an error event in
their own format, at once (nothing LiteLLM may have seen is sent again); a request sent while
it is away waits for it; the supervisor restarts LiteLLM with back-off (1 s, then 2 s for a
second death soon after); once it is back every request succeeds. Frozen: the request gets a
504 after ``timeouts.read``, streams an error event; after SIGCONT everything works. The
memory proxy is the same process throughout. (SIGKILL first: it also ends the LiteLLM request
that test_upstream.py left reading a never-ending answer; see the run order in tests/conftest.py.)
"""

from __future__ import annotations

import functools
import json
import re
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.readiness import until

from .conftest import (
    ANTHROPIC_HEADERS,
    CHAT,
    MESSAGES,
    PLAIN,
    READ_TIMEOUT,
    assert_openai_error,
    bad_input,
    fault,
    metric,
    post_bytes,
    seen,
    start_direct,
)

SLACK = 2.5


class InFlight:
    """One request or stream running in a thread while the test signals LiteLLM."""

    def __init__(self, url: str, path: str, model: str, stream: bool) -> None:
        self.path, self.stream = path, stream
        self.body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "in flight"}]}
        if path == MESSAGES:
            self.body["max_tokens"] = 32
        self.url = url
        self.first_chunk = threading.Event()
        self.status: int | None = None
        self.data = b""
        self.ended = 0.0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            with httpx.stream("POST", self.url + self.path, json=self.body, headers=ANTHROPIC_HEADERS,
                              timeout=60, trust_env=False) as answer:
                self.status = answer.status_code
                self.headers = answer.headers
                for chunk in answer.iter_raw():
                    self.data += chunk
                    if b"data: " in self.data:
                        self.first_chunk.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.ended = time.monotonic()
            self.first_chunk.set()

    def join(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), f"{self.path} stream={self.stream} never ended"
        assert self.error is None, f"{self.path}: the client saw {self.error!r} instead of an answer"

    def stream_error(self) -> dict:
        text = self.data.decode()
        assert text.endswith("\n\n"), text[-300:]
        if self.path == MESSAGES:
            event = text[text.rindex("event: error\ndata: ") + 19:].split("\n\n")[0]
            return json.loads(event)["error"]
        return json.loads(text[text.rindex('data: {"error": ') + 6:].split("\n\n")[0])["error"]


def start_streams(stack) -> list[InFlight]:
    stack.emu.fault("endless_stream", count=2, delay=0.2)
    streams = [InFlight(stack.proxy_url, CHAT, "faulty", True), InFlight(stack.proxy_url, MESSAGES, "faulty-claude",
                                                                          True)]
    for s in streams:
        assert s.first_chunk.wait(30) and s.status == 200, (s.status, s.data[:300], s.error)
    return streams


def start_request(stack) -> InFlight:
    stack.emu.fault("slow", count=1, delay=1.5)
    request = InFlight(stack.proxy_url, CHAT, "faulty", False)
    time.sleep(0.5)  # LiteLLM has it and waits for the (slow) upstream
    assert request.status is None
    return request


def every_request_succeeds(stack, n: int = 12) -> None:
    kinds = [(CHAT, "gpt-4o-mini", False), (CHAT, "memory/gpt-4o-mini", True),
             (MESSAGES, "claude-3-5-haiku-latest", True), (MESSAGES, "claude-sonnet-4-5", False)]
    with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=60) as c:
        for i in range(n):
            path, model, stream = kinds[i % len(kinds)]
            body = {"model": model, "stream": stream, "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"after {i}"}]}
            with c.stream("POST", path, json=body, headers=ANTHROPIC_HEADERS) as answer:
                data = answer.read()
            assert answer.status_code == 200, (i, path, model, data[:300])
            assert b'"error"' not in data, data[-300:]
        assert c.get("/health").status_code == 200


def wait_ready_again(stack, old_pid: int, timeout: float = 180) -> float:
    started = time.monotonic()
    stack.wait_healthy(timeout=timeout, changed_from=old_pid)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def proxy_pid(stack):
    pid = stack.pid("memory_proxy")
    yield pid
    assert stack.pid("memory_proxy") == pid, "the memory proxy was restarted"


def test_sigkill_mid_request_and_mid_stream(stack, proxy_pid):
    streams = start_streams(stack)
    request = start_request(stack)
    killed_pid = stack.signal_litellm(signal.SIGKILL)
    killed = time.monotonic()
    for s in (*streams, request):
        s.join()
    assert request.status == 503 and request.headers.get("retry-after"), (request.status, request.data)
    error = json.loads(request.data)["error"]
    assert error["type"] == "service_unavailable", error
    seen("503 after SIGKILL", request.data)
    assert request.ended - killed < 1.0, f"the 503 took {request.ended - killed:.2f} s"
    fault("LiteLLM SIGKILLed mid-request (503)")
    for s in streams:
        error = s.stream_error()
        assert error["message"] and s.ended - killed < 1.0, (error, s.ended - killed)
        seen("stream error after SIGKILL", s.data[-400:])
        fault(f"LiteLLM SIGKILLed mid-stream ({'Anthropic' if s.path == MESSAGES else 'OpenAI'} format error event)")
    # While it is away a new request waits for it (memory_proxy.startup_wait), and /health says
    # degraded and how many wait; once LiteLLM is back the request is answered.
    held = InFlight(stack.proxy_url, CHAT, "faulty", False)
    with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=30) as c:
        deadline = time.monotonic() + 30
        while (health := c.get("/health")).json()["memory_proxy"]["waiting_for_litellm"] < 1:
            assert held.status is None and time.monotonic() < deadline, (held.status, held.data[:300])
            time.sleep(0.05)
        assert health.status_code == 503 and health.json()["memory_proxy"]["status"] == "ok"
    took = wait_ready_again(stack, killed_pid)
    held.join()
    assert held.status == 200 and json.loads(held.data)["choices"], held.data[:300]
    fault("request while LiteLLM is down (held, answered once it is back)")
    metric(f"LiteLLM back {took:.0f} s after SIGKILL (supervisor restart + LiteLLM startup)")
    log = (stack.state / "logs" / "supervisor.log").read_text()
    assert f"litellm (pid {killed_pid}) exited (signal SIGKILL)" in log and "restarting in 1 s" in log, log[-1500:]
    every_request_succeeds(stack)


def test_a_second_death_soon_after_backs_off_longer(stack, proxy_pid):
    pid = stack.signal_litellm(signal.SIGKILL)
    wait_ready_again(stack, pid)
    log = (stack.state / "logs" / "supervisor.log").read_text()
    line = next(line for line in log.splitlines() if f"litellm (pid {pid}) exited" in line)
    assert re.search(r"restarting in 2 s", line), line
    every_request_succeeds(stack, n=4)
    assert stack.status()["processes"]["litellm"]["restarts"] >= 2
    fault("LiteLLM SIGKILLed again soon after (back-off 2 s)")


def test_every_start_warms_litellm_up_without_calling_a_provider(stack, proxy_pid):
    """``up`` and every restart send LiteLLM one mock answer per API shape and provider family
    (memory_proxy/config/warmup.py) before anything says healthy; none of them reaches a provider."""
    lines = (stack.state / "logs" / "supervisor.log").read_text().splitlines()
    ready = next(i for i, line in enumerate(lines) if "LiteLLM is ready (pid" in line)
    warmed = next(i for i, line in enumerate(lines) if "warmed LiteLLM" in line)
    proxy_ready = next(i for i, line in enumerate(lines) if "memory proxy is ready" in line)
    assert ready < warmed < proxy_ready, lines[ready:proxy_ready + 1]
    assert "for openai, anthropic (8 of 8 answered)" in lines[warmed], lines[warmed]
    before = stack.emu.request_count()
    pid = stack.signal_litellm(signal.SIGKILL)
    wait_ready_again(stack, pid)
    assert stack.emu.requests_since(before) == []  # the warm-up after the restart called no provider
    lines = (stack.state / "logs" / "supervisor.log").read_text().splitlines()
    died = next(i for i, line in enumerate(lines) if f"litellm (pid {pid}) exited" in line)
    again = next(i for i, line in enumerate(lines[died:], died) if "litellm is ready again" in line)
    assert "(8 of 8 answered)" in lines[again + 1] and "warmed LiteLLM" in lines[again + 1], lines[died:]
    # Nothing a warm-up sent has ever reached the emulator in this session.
    assert not [r for r in stack.emu.requests_since(0) if "warm-up" in json.dumps(r.get("body"))]
    every_request_succeeds(stack, n=4)
    fault("LiteLLM warmed up after a restart, no provider called")


def test_the_warm_up_groups_answer_in_every_shape_from_the_canned_answers(stack, client):
    """The OpenAI and Anthropic warm-up groups call the memory proxy's canned provider answers
    (server/warmup_answers.py): LiteLLM parses each of them, JSON and stream, and nothing reaches
    a provider."""
    before = stack.emu.request_count()
    for family in ("openai", "anthropic"):
        for path in (CHAT, MESSAGES):
            for stream in (False, True):
                body = {"model": f"memory-proxy-warmup/{family}", "max_tokens": 8, "stream": stream,
                        "messages": [{"role": "user", "content": "warm-up"}]}
                answer = client.post(path, json=body, headers=ANTHROPIC_HEADERS)
                assert answer.status_code == 200, (family, path, stream, answer.text)
                if not stream:
                    data = answer.json()
                    text = (data["choices"][0]["message"]["content"] if path == CHAT
                            else data["content"][0]["text"])
                    assert text == "ok", (family, path, data)
                else:
                    assert '"ok"' in answer.text and "error" not in answer.text, (family, path, answer.text)
                    assert answer.text.rstrip().endswith("data: [DONE]" if path == CHAT else "}"), answer.text
    assert stack.emu.requests_since(before) == []
    fault("the warm-up's canned provider answers parsed by LiteLLM in every shape")


def test_sigstop_mid_request_is_a_504_and_mid_stream_an_error_event_then_sigcont_recovers(stack, proxy_pid):
    litellm_pid = stack.pid("litellm")
    before = stack.emu.stats()
    streams = start_streams(stack)
    request = start_request(stack)
    stack.signal_litellm(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=30) as c:
            health = c.get("/health")  # asks LiteLLM with its own 2 s limit
            assert health.status_code == 503 and health.json()["memory_proxy"]["status"] == "ok", health.text
            started = time.monotonic()
            answer = c.post(CHAT, json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
            waited = time.monotonic() - started
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "upstream_timeout", answer.text
        assert READ_TIMEOUT - 0.2 <= waited < READ_TIMEOUT + SLACK, waited
        seen("504 while LiteLLM is frozen", answer.text)
        fault("request while LiteLLM is frozen (504)")
        for s in (*streams, request):
            s.join()
        assert request.status == 504 and json.loads(request.data)["error"]["code"] == "upstream_timeout"
        assert request.ended - stopped < READ_TIMEOUT + SLACK, request.ended - stopped
        fault("LiteLLM SIGSTOPped mid-request (504)")
        for s in streams:
            error = s.stream_error()
            assert "timeouts.read" in error["message"], error
            assert s.ended - stopped < READ_TIMEOUT + SLACK, s.ended - stopped
            fault(f"LiteLLM SIGSTOPped mid-stream ({'Anthropic' if s.path == MESSAGES else 'OpenAI'} format "
                  "error event)")
    finally:
        stack.signal_litellm(signal.SIGCONT)
    # Thawed, LiteLLM notices its clients went away and cancels the upstream streams.
    after = stack.emu.wait_streams(before["active_streams"], timeout=10)
    assert after["active_streams"] == before["active_streams"], after
    every_request_succeeds(stack)
    assert stack.pid("litellm") == litellm_pid, "a frozen LiteLLM was restarted instead of thawed"


# --- waiting for a LiteLLM that is not there: a memory proxy alone, in front of a closed port ---


def _alone(stack, tmp_path, name: str, keys: str):
    """``python -m memory_proxy`` (a real process, no supervisor) in front of a port nothing
    listens on, with ``keys`` in place of the suite's ``startup_wait``."""
    closed = free_port()
    config = tmp_path / f"{name}.yaml"
    text = stack.config.read_text()
    assert "  startup_wait: 120\n" in text
    config.write_text(text.replace("  startup_wait: 120\n", keys))
    return start_direct(config, tmp_path / f"{name}-state", free_port(), f"http://127.0.0.1:{closed}",
                        secret="s" * 32)


def _waiting(proxy) -> dict:
    return httpx.get(proxy.url + "/health", trust_env=False, timeout=10).json()["memory_proxy"]


_until = functools.partial(until, timeout=30.0)


def test_past_startup_queue_or_startup_wait_a_request_gets_503_with_retry_after(stack, tmp_path):
    proxy = _alone(stack, tmp_path, "bounds", "  startup_wait: 1.5\n  startup_queue: 2\n")
    try:
        held: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: held.append(
            httpx.post(proxy.url + CHAT, json=PLAIN, trust_env=False, timeout=30))) for _ in range(2)]
        for t in threads:
            t.start()
        _until(lambda: _waiting(proxy)["waiting_for_litellm"] == 2, "two requests wait")
        over = httpx.post(proxy.url + CHAT, json=PLAIN, trust_env=False, timeout=30)
        error = assert_openai_error(over, 503, "over startup_queue")
        assert "startup_queue" in error["message"] and over.headers["retry-after"], over.text
        bad_input("a request over memory_proxy.startup_queue (503)")
        for t in threads:
            t.join(30)
        assert len(held) == 2
        for answer in held:
            error = assert_openai_error(answer, 503, "past startup_wait")
            assert "startup_wait (1.5 s)" in error["message"] and answer.headers["retry-after"], answer.text
            assert error["type"] == "service_unavailable"
        fault("LiteLLM away past memory_proxy.startup_wait (503)", 2)
        assert _waiting(proxy)["waiting_for_litellm"] == 0
    finally:
        proxy.stop()


def test_clients_that_walk_away_while_waiting_leave_no_task_behind(stack, tmp_path):
    proxy = _alone(stack, tmp_path, "walk-away", "  startup_wait: 120\n")
    try:
        baseline = _waiting(proxy)["tasks"]
        for messages in (False, True):
            socks = []
            for i in range(10):
                sock = socket.create_connection(("127.0.0.1", proxy.port))
                body = {"model": "faulty-claude" if messages else "faulty", "max_tokens": 8, "stream": i % 2 == 0,
                        "messages": [{"role": "user", "content": f"leaving {i}"}]}
                sock.sendall(post_bytes(MESSAGES if messages else CHAT, body, close=False))
                socks.append(sock)
            _until(lambda: _waiting(proxy)["waiting_for_litellm"] == 10, "ten requests wait")
            assert _waiting(proxy)["tasks"] > baseline
            for i, sock in enumerate(socks):
                if i % 2:  # reset, as a killed client does; else a plain close
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()
            _until(lambda: _waiting(proxy)["waiting_for_litellm"] == 0, "nobody waits any more")
            _until(lambda: _waiting(proxy)["tasks"] <= baseline, "every task of theirs ended")
        fault("clients walked away while waiting for LiteLLM (no task left)", 20)
        health = httpx.get(proxy.url + "/health", trust_env=False, timeout=10)
        assert health.status_code == 503 and health.json()["memory_proxy"]["status"] == "ok"
        assert proxy.proc.poll() is None
    finally:
        proxy.stop()
