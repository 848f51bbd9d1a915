"""The upstream misbehaves behind the real LiteLLM: slow, 4xx/5xx, invalid JSON, a connection
closed mid-stream, a stream that never ends. Each gives the client a truthful answer within
the configured timeouts (read 3 s, total 8 s), and clients that walk away mid-stream cancel
the upstream request at once."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from .conftest import (
    ANTHROPIC_HEADERS,
    CHAT,
    MESSAGES,
    READ_TIMEOUT,
    TOTAL_TIMEOUT,
    assert_openai_error,
    fault,
    metric,
    post_bytes,
    seen,
    walk_away,
)

SLACK = 2.5  # seconds on top of a configured timeout before an answer counts as late (2 busy cores)


def body(model: str, path: str, stream: bool, text: str = "hello fault") -> dict:
    out = {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
    if path == MESSAGES:
        out["max_tokens"] = 32
    return out


def call(client: httpx.Client, path: str, model: str, stream: bool) -> tuple[httpx.Response, bytes, float]:
    started = time.monotonic()
    with client.stream("POST", path, json=body(model, path, stream), headers=ANTHROPIC_HEADERS) as answer:
        data = answer.read()
    return answer, data, time.monotonic() - started


def sse_error(data: bytes, path: str) -> dict:
    """The error event at the end of a stream, in that stream's own format."""
    text = data.decode()
    if path == MESSAGES:
        assert "event: error\ndata: " in text, text[-500:]
        event = text[text.rindex("event: error\ndata: ") + len("event: error\ndata: "):].split("\n\n")[0]
        parsed = json.loads(event)
        assert parsed["type"] == "error"
        return parsed["error"]
    assert 'data: {"error": ' in text, text[-500:]
    return json.loads(text[text.rindex('data: {"error": ') + 6:].split("\n\n")[0])["error"]


ENDPOINTS = [(CHAT, "faulty"), (MESSAGES, "faulty-claude"), (CHAT, "memory/faulty")]
STATUS_FAULTS = {"error_400": 400, "error_429": 429, "error_500": 500}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", list(STATUS_FAULTS))
@pytest.mark.parametrize("path, model", ENDPOINTS)
def test_upstream_errors_pass_through_as_json(stack, client, path, model, mode, stream):
    stack.emu.fault(mode, count=1)
    answer, data, seconds = call(client, path, model, stream)
    assert answer.status_code == STATUS_FAULTS[mode], data[:500]
    assert seconds < READ_TIMEOUT, f"{mode} took {seconds:.1f} s"
    error = json.loads(data)["error"]
    assert "Emulated fault" in error["message"] and error["message"] == error["message"].strip()
    seen(f"{mode} through LiteLLM", data)
    fault(f"upstream answers {STATUS_FAULTS[mode]}")


@pytest.mark.parametrize("path, model", ENDPOINTS)
def test_invalid_json_from_the_upstream(stack, client, path, model):
    """Non-streaming: LiteLLM's 500 naming the parse error. (Streaming: LiteLLM turns an
    unparseable answer into an empty stream that ends normally; that is LiteLLM's doing, see
    docs/faults.md.)"""
    stack.emu.fault("invalid_json", count=1)
    answer, data, seconds = call(client, path, model, False)
    error = json.loads(data)["error"]
    assert answer.status_code == 500 and seconds < READ_TIMEOUT, data[:500]
    assert error["message"]
    seen("invalid JSON through LiteLLM", data)
    fault("upstream sends invalid JSON")


@pytest.mark.parametrize("path, model", ENDPOINTS)
def test_slow_upstream_is_a_504_after_the_read_timeout(stack, client, path, model):
    stack.emu.fault("slow", count=2, delay=READ_TIMEOUT + 3)
    for stream in (False, True):
        answer, data, seconds = call(client, path, model, stream)
        error = assert_openai_error(httpx.Response(answer.status_code, headers=answer.headers, content=data), 504,
                                    f"slow {model} stream={stream}")
        assert error["code"] == "upstream_timeout"
        assert READ_TIMEOUT - 0.2 <= seconds < READ_TIMEOUT + SLACK, f"504 after {seconds:.1f} s"
        fault("upstream too slow (504)")


@pytest.mark.parametrize("path, model", ENDPOINTS)
def test_connection_closed_mid_stream_ends_with_an_error_event(stack, client, path, model):
    stack.emu.fault("close_mid_stream", count=1)
    answer, data, seconds = call(client, path, model, True)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
    error = sse_error(data, path)
    assert error["message"] and seconds < READ_TIMEOUT, (error, seconds)
    assert data.endswith(b"\n\n")
    fault("upstream closes the connection mid-stream")
    stack.emu.fault("close_mid_stream", count=1)
    answer, data, seconds = call(client, path, model, False)
    assert answer.status_code >= 500 and json.loads(data)["error"]["message"], data[:300]
    fault("upstream closes the connection mid-answer (not streaming)")


@pytest.mark.parametrize("path, model", ENDPOINTS)
def test_a_never_ending_stream_is_cut_at_the_total_timeout(stack, client, path, model):
    before = stack.emu.stats()
    stack.emu.fault("endless_stream", count=1, delay=0.1)
    answer, data, seconds = call(client, path, model, True)
    assert answer.status_code == 200
    error = sse_error(data, path)
    assert "timeouts.total" in error["message"], error
    assert TOTAL_TIMEOUT - 0.2 <= seconds < TOTAL_TIMEOUT + SLACK, f"cut after {seconds:.1f} s"
    after = stack.emu.wait_streams(before["active_streams"])
    assert after["active_streams"] == before["active_streams"], "the endless upstream stream was not cancelled"
    fault("never-ending upstream stream (cut at timeouts.total)")


def test_upstream_streams_are_cancelled_when_clients_walk_away(stack):
    """50 clients drop their streams after the first chunk, 5 at a time, through LiteLLM: the
    emulator sees each upstream request end, and the memory proxy keeps no connection."""
    before = stack.emu.stats()
    proxy_before = len(stack.proxy_connections())
    stack.emu.fault("endless_stream", count=50, delay=0.05)

    def request(i: int) -> bytes:
        path, model = ENDPOINTS[i % len(ENDPOINTS)]
        return post_bytes(path, body(model, path, True), close=False)

    walk_away(stack.proxy_port, 50, 5, request)
    after = stack.emu.wait_streams(before["active_streams"], timeout=10)
    assert after["active_streams"] == before["active_streams"], after
    assert after["client_disconnects"] - before["client_disconnects"] == 50, after
    deadline = time.monotonic() + 5
    while len(stack.proxy_connections()) > proxy_before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stack.proxy_connections()) <= proxy_before + 2, stack.proxy_connections()
    fault("client walks away mid-stream (through LiteLLM)", 50)


def test_one_walk_away_is_seen_upstream_at_once(stack, client):
    before = stack.emu.stats()
    stack.emu.fault("endless_stream", count=1, delay=0.05)
    with client.stream("POST", CHAT, json=body("faulty", CHAT, True)) as answer:
        next(answer.iter_raw())
        gone = time.monotonic()
    while stack.emu.stats()["client_disconnects"] == before["client_disconnects"]:
        assert time.monotonic() - gone < 2.0, "the upstream did not see the client go"
        time.sleep(0.02)
    metric(f"walk-away seen by the upstream after {time.monotonic() - gone:.2f} s (through LiteLLM)")
    fault("client walks away mid-stream (through LiteLLM)")


def test_a_never_ending_non_streaming_answer_is_a_504(stack, client):
    """LiteLLM reads a non-streaming answer whole before it sends a byte, so the proxy's read
    timeout answers. (LiteLLM itself keeps reading that upstream answer after the client has
    gone; docs/faults.md, limits.) Last in this module: it leaves that LiteLLM request running."""
    stack.emu.fault("endless_stream", count=1, delay=1.0)
    answer, data, seconds = call(client, CHAT, "faulty", False)
    assert answer.status_code == 504 and json.loads(data)["error"]["code"] == "upstream_timeout"
    assert seconds < READ_TIMEOUT + SLACK
    fault("never-ending non-streaming answer (504)")



def test_a_fallback_a_client_names_never_takes_the_memory_headers_to_an_ordinary_model(stack, client):
    """LiteLLM makes a fallback call with the headers it forwarded for the first group: a request
    to a Supermemory-backed group loses the fallbacks it names, or the ordinary model's provider
    would get x-supermemory-user-id (and every forwarded x-* header)."""
    since = stack.emu.request_count()
    stack.emu.fault("error_500", count=1)
    body = {"model": "memory/faulty", "messages": [{"role": "user", "content": "hi"}], "fallbacks": ["faulty"]}
    answer = client.post(CHAT, json=body, headers={"x-memory-user-id": "alice", "x-claude-code-session-id": "s1"})
    assert answer.status_code == 500, answer.text
    seen_upstream = stack.emu.requests_since(since)
    assert [r["path"] for r in seen_upstream] == [r["path"] for r in seen_upstream if r["path"].startswith("/v3/")]
    assert not [r for r in seen_upstream if not r["path"].startswith("/v3/")
                and any(k.startswith("x-supermemory") for k in r["headers"])]
    fault("upstream answers 500")
