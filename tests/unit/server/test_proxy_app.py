"""The memory proxy app on a real loopback port, against the emulator on another.

Here the emulator stands in for LiteLLM behind the ingress (as with ``up --litellm-url``)
and for Supermemory behind the egress; the full chain with the real LiteLLM binary is
tested in ``tests/e2e``.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time

import httpx
import pytest

from tests import emulator
from tests.support.ports import free_port
from tests.support.readiness import poll, until
from tests.support.servers import MASTER, SECRET, SM_KEY, ServerThread, raw_http, running_proxy

PYCHARM = "OpenAIClientImpl/Java unknown"
CLAUDE = "claude-cli/2.0.14 (external, cli)"
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}


def records(emu, path_prefix: str = "/") -> list[dict]:
    return [r for r in httpx.get(emu.url + "/_emulator/requests").json() if r["path"].startswith(path_prefix)]


@pytest.fixture
def proxy(emu, tmp_path):
    with running_proxy(emu.url, state_dir=tmp_path) as server:
        yield server


# --- ingress ------------------------------------------------------------------------------


def test_each_client_gets_its_id_and_litellm_gets_the_master_key(emu, proxy):
    cases = [({"user-agent": PYCHARM}, "pycharm-ai"), ({"user-agent": CLAUDE}, "claude-cli"),
             ({"user-agent": "something/1.0"}, "default-dev"),
             ({"user-agent": CLAUDE, "x-memory-user-id": "project-x"}, "project-x")]
    for headers, expected in cases:
        r = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT,
                       headers={**headers, "authorization": "Bearer client-key"})
        assert r.status_code == 200, r.text
        assert r.headers["x-supermemory-user-id"] == expected
        assert len(r.headers["x-request-id"]) == 32
    seen = records(emu, "/v1/chat/completions")
    assert [r["headers"]["x-supermemory-user-id"] for r in seen] == [e for _, e in cases]
    for r in seen:
        assert r["headers"]["authorization"] == f"Bearer {MASTER}"
        assert "x-memory-user-id" not in r["headers"]


def test_forged_memory_headers_and_body_extra_headers_are_dropped(emu, proxy):
    body = {**CHAT, "extra_headers": {"x-supermemory-user-id": "victim"}}
    r = httpx.post(proxy.url + "/v1/chat/completions", json=body, headers={
        "user-agent": PYCHARM, "x-sm-user-id": "victim", "x-supermemory-user-id": "victim",
        "x-supermemory-api-key": "stolen", "x-memory-proxy-egress-secret": "guess"})
    assert r.status_code == 200
    [seen] = records(emu, "/v1/")
    assert seen["headers"]["x-supermemory-user-id"] == "pycharm-ai"
    assert not any(h.startswith("x-sm-") for h in seen["headers"])
    assert "x-supermemory-api-key" not in seen["headers"] and "x-memory-proxy-egress-secret" not in seen["headers"]
    assert "extra_headers" not in seen["body"] and seen["body"]["messages"] == CHAT["messages"]


def test_query_string_and_scope_path(emu, proxy):
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(proxy.url + "/v1/messages?beta=true", json=body, headers={"user-agent": CLAUDE})
    assert r.status_code == 200 and r.json()["type"] == "message"
    r = httpx.post(proxy.url + "/scope/my-project/v1/chat/completions?a=1&b=%2F", json=CHAT,
                   headers={"user-agent": PYCHARM})
    assert r.status_code == 200 and r.headers["x-supermemory-user-id"] == "my-project"
    first, second = records(emu, "/v1/")
    assert (first["path"], first["query"]) == ("/v1/messages", "beta=true")
    assert (second["path"], second["query"]) == ("/v1/chat/completions", "a=1&b=%2F")
    assert second["headers"]["x-supermemory-user-id"] == "my-project"


def _timed_chunks(url: str, body: dict, headers: dict) -> tuple[list[float], bytes, httpx.Response]:
    start, times, data = time.monotonic(), [], b""
    with httpx.stream("POST", url, json=body, headers=headers, timeout=10) as r:
        for chunk in r.iter_raw():
            times.append(time.monotonic() - start)
            data += chunk
    return times, data, r


def test_openai_stream_arrives_chunk_by_chunk(emu, proxy):
    times, data, r = _timed_chunks(proxy.url + "/v1/chat/completions", {**CHAT, "stream": True},
                                   {"user-agent": PYCHARM})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert "content-length" not in r.headers
    assert data.rstrip().endswith(b"data: [DONE]")
    # five pieces 0.15 s apart: buffered, everything would arrive at once at the end
    assert len(times) >= 5 and times[-1] - times[0] >= 0.45, times


def test_anthropic_stream_arrives_chunk_by_chunk(emu, proxy):
    body = {"model": "claude", "max_tokens": 10, "stream": True,
            "messages": [{"role": "user", "content": "a longer message"}]}
    times, data, _ = _timed_chunks(proxy.url + "/v1/messages?beta=true", body, {"user-agent": CLAUDE})
    events = [line[7:] for line in data.decode().splitlines() if line.startswith("event: ")]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert len(times) >= 5 and times[-1] - times[0] >= 0.45, times


def test_malformed_json_and_bad_ids_get_openai_errors(emu, proxy):
    r = httpx.post(proxy.url + "/v1/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "has space"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_client_id"
    r = httpx.get(proxy.url + "/scope/" + "a" * 129 + "/v1/models")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert records(emu) == []  # nothing reached the upstream


def test_body_over_limit_is_413(emu, proxy):
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    r = httpx.post(proxy.url + "/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    def chunked():
        for _ in range(10):
            yield b"y" * 1000
    r = httpx.post(proxy.url + "/v1/audio/transcriptions", content=chunked(),
                   headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413
    assert records(emu) == []


def test_litellm_down_is_a_quick_503_when_nothing_may_wait(emu, tmp_path):
    closed = free_port()
    with running_proxy(emu.url, litellm_url=f"http://127.0.0.1:{closed}", extra="  startup_wait: 0") as server:
        start = time.monotonic()
        r = httpx.post(server.url + "/v1/chat/completions", json=CHAT)
        assert time.monotonic() - start < 1.0
        assert r.status_code == 503 and r.headers["retry-after"]
        assert r.json()["error"]["type"] == "service_unavailable"
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503
        assert health.json()["memory_proxy"]["status"] == "ok" and health.json()["litellm"]["ready"] is False


def _health(server) -> dict:
    return httpx.get(server.url + "/health").json()["memory_proxy"]


_until = until


def test_a_request_waits_for_litellm_to_listen_then_is_relayed_once(emu, tmp_path):
    port = free_port()
    with running_proxy(emu.url, litellm_url=f"http://127.0.0.1:{port}") as server:
        answers: dict[str, httpx.Response] = {}

        def ask(name: str, path: str, **kwargs) -> None:
            answers[name] = httpx.request(kwargs.pop("method", "POST"), server.url + path, timeout=30, **kwargs)

        threads = [threading.Thread(target=ask, args=("chat", "/v1/chat/completions"), kwargs={"json": CHAT}),
                   threading.Thread(target=ask, args=("models", "/v1/models"),
                                    kwargs={"method": "GET", "headers": {"anthropic-version": "2023-06-01"}})]
        for t in threads:
            t.start()
        _until(lambda: _health(server)["waiting_for_litellm"] == 2, "both requests wait")
        with ServerThread(emulator.create_app(chunk_delay=0.01, chunks=2), port=port) as late:
            for t in threads:
                t.join(timeout=30)
            assert answers["chat"].status_code == 200, answers["chat"].text
            assert answers["chat"].json()["choices"][0]["message"]["content"]
            assert answers["models"].status_code == 200 and answers["models"].json()["data"] is not None
            assert len(records(late, "/v1/chat/completions")) == 1  # sent once
            assert _health(server)["waiting_for_litellm"] == 0


def test_a_streamed_body_waits_too_and_arrives_whole_once(emu, tmp_path):
    """A body the proxy streams (a form) was not read when LiteLLM's port refused: it is read
    then (bounded), waits like a JSON one, and LiteLLM gets it once, byte for byte."""
    port = free_port()

    def chunked():
        for i in range(3):
            yield bytes([65 + i]) * 500

    with running_proxy(emu.url, litellm_url=f"http://127.0.0.1:{port}") as server:
        answers = []
        t = threading.Thread(target=lambda: answers.append(httpx.post(
            server.url + "/v1/audio/transcriptions", content=chunked(), timeout=30,
            headers={"content-type": "multipart/form-data; boundary=b"})))
        t.start()
        _until(lambda: _health(server)["waiting_for_litellm"] == 1, "the streamed request waits")
        with ServerThread(emulator.create_app(), port=port) as late:
            t.join(timeout=30)
            arrived = records(late, "/v1/audio/transcriptions")
        assert answers and answers[0].status_code == 404  # the emulator's answer, relayed
        assert len(arrived) == 1 and arrived[0]["body"] == "A" * 500 + "B" * 500 + "C" * 500
        over = httpx.post(server.url + "/v1/audio/transcriptions", content=(b"x" * 1000 for _ in range(10)),
                          headers={"content-type": "multipart/form-data; boundary=b"}, timeout=30)
        assert over.status_code == 413  # LiteLLM is gone again: read past the limit, never held


def test_past_the_queue_or_the_wait_a_request_gets_503_with_retry_after(emu, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with running_proxy(emu.url, litellm_url=url, extra="  startup_wait: 0.3\n  startup_queue: 1") as server:
        held = []
        t = threading.Thread(target=lambda: held.append(httpx.post(server.url + "/v1/chat/completions", json=CHAT,
                                                                   timeout=30)))
        t.start()
        _until(lambda: _health(server)["waiting_for_litellm"] == 1, "the first request waits")
        over = httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=30)
        t.join(timeout=30)
    assert over.status_code == 503 and over.headers["retry-after"], over.text
    assert "startup_queue" in over.json()["error"]["message"]
    assert held[0].status_code == 503 and held[0].headers["retry-after"], held[0].text
    assert "startup_wait" in held[0].json()["error"]["message"]
    assert held[0].json()["error"]["type"] == "service_unavailable"


def test_a_client_that_leaves_while_waiting_leaves_no_task_behind(emu, tmp_path):
    with running_proxy(emu.url, litellm_url=f"http://127.0.0.1:{free_port()}") as server:
        before = _health(server)["tasks"]
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                body = json.dumps(CHAT).encode()
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                             b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                _until(lambda: _health(server)["waiting_for_litellm"] == 1, "the request waits")
            _until(lambda: _health(server)["waiting_for_litellm"] == 0, "the request stops waiting")
            _until(lambda: _health(server)["tasks"] <= before, "its tasks end")


def test_upstream_timeout_is_504_and_protocol_breakage_502(emu, proxy):
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "slow", "delay": 3})
    r = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=10)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "close_mid_stream"})
    r = httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=10)
    # headers went out before the break: the client sees a cut body, never a hang
    assert r.status_code in (200, 502)


@pytest.mark.parametrize("path, body, expected", [
    ("/v1/chat/completions", {**CHAT, "stream": True}, b'data: {"error": {'),
    ("/v1/messages", {"model": "c", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]},
     b"event: error\ndata: {"),
])
def test_broken_stream_ends_with_an_error_event(emu, proxy, path, body, expected):
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "close_mid_stream"})
    r = httpx.post(proxy.url + path, json=body, timeout=10)
    assert r.status_code == 200
    assert expected in r.content and r.content.endswith(b"\n\n")
    event = r.content[r.content.rindex(b"data: "):].decode()
    assert json.loads(event[6:])["error"]["message"].startswith("the upstream stream broke")


def test_client_disconnect_cancels_the_upstream(emu, proxy):
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "endless_stream", "delay": 0.05})
    with httpx.stream("POST", proxy.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        it = r.iter_raw()
        next(it)
        next(it)
    stats = poll(lambda: httpx.get(emu.url + "/_emulator/stats").json(),
                 lambda stats: stats["client_disconnects"] == 1 and stats["active_streams"] == 0, 2)
    assert stats == {**stats, "client_disconnects": 1, "active_streams": 0}


def test_front_door_keys(emu, tmp_path):
    with running_proxy(emu.url, extra="  api_keys: [os.environ/FRONT_KEY]") as server:
        assert httpx.post(server.url + "/v1/chat/completions", json=CHAT).status_code == 401
        bad = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
        assert httpx.get(server.url + "/memory-routing/info").status_code == 401
        ok = httpx.post(server.url + "/v1/chat/completions", json=CHAT,
                        headers={"authorization": "Bearer front-door-key-0123456789"})
        assert ok.status_code == 200
        ok = httpx.post(server.url + "/v1/chat/completions", json=CHAT,
                        headers={"x-api-key": "front-door-key-0123456789"})
        assert ok.status_code == 200
        assert httpx.get(server.url + "/health").status_code in (200, 503)  # never needs a key
        for seen in records(emu, "/v1/"):
            assert seen["headers"]["authorization"] == f"Bearer {MASTER}" and "x-api-key" not in seen["headers"]


def test_routing_info_explains_without_credentials(proxy):
    r = httpx.get(proxy.url + "/memory-routing/info",
                  headers={"user-agent": CLAUDE, "authorization": "Bearer sk-very-secret-client-key"})
    info = r.json()
    assert (info["user_id"], info["source"]) == ("claude-cli", "pattern")
    assert "header_patterns[1]" in info["reason"]
    assert info["supermemory_backed_models"] == ["mem"]
    assert "sk-very-secret" not in r.text and SM_KEY not in r.text and MASTER not in r.text
    info = httpx.get(proxy.url + "/scope/proj/memory-routing/info").json()
    assert (info["user_id"], info["source"]) == ("proj", "scope_path")
    info = httpx.get(proxy.url + "/memory-routing/info", headers={"x-memory-user-id": "p1"}).json()
    assert (info["user_id"], info["source"]) == ("p1", "custom_header")


def test_anthropic_clients_get_models_in_anthropic_shape(proxy):
    r = httpx.get(proxy.url + "/v1/models", headers={"anthropic-version": "2023-06-01", "user-agent": CLAUDE})
    listing = r.json()
    assert listing["has_more"] is False and listing["data"][0]["type"] == "model"
    assert {"id", "display_name", "created_at"} <= set(listing["data"][0])
    assert listing["first_id"] == listing["data"][0]["id"]
    openai_shape = httpx.get(proxy.url + "/v1/models").json()
    assert openai_shape["object"] == "list"


# --- egress -------------------------------------------------------------------------------


def egress(proxy, emu, *, user="u1", secret=SECRET, content="hello", extra_headers=None, path=None):
    headers = {"authorization": "Bearer provider-key", "x-supermemory-user-id": user,
               "x-memory-proxy-egress-secret": secret, **(extra_headers or {})}
    if secret is None:
        del headers["x-memory-proxy-egress-secret"]
    body = {"model": "x", "messages": [{"role": "user", "content": content}]}
    path = path or f"/_egress/v3/{emu.url}/v1/chat/completions"
    return httpx.post(proxy.url + path, json=body, headers=headers)


def test_egress_refuses_without_its_secret(emu, proxy):
    assert egress(proxy, emu, secret=None).status_code == 403
    assert egress(proxy, emu, secret="wrong").status_code == 403
    assert records(emu) == []


def test_egress_refuses_paths_leaving_the_host_and_missing_ids(emu, proxy):
    for raw_path in (b"/_egress/v3/../../etc/passwd", b"/_egress/v3/%2e%2e/x", b"/_egress/..%2fadmin",
                     b"/_egress/v3/x%5c..%5cy"):
        status, answer = raw_http(proxy.port, f"POST {raw_path.decode()} HTTP/1.1",
                                  {"x-memory-proxy-egress-secret": SECRET, "x-supermemory-user-id": "u"}, b"{}")
        assert status == 400 and b'"bad_path"' in answer, raw_path
    r = egress(proxy, emu, user="")
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_client_id"
    assert records(emu) == []


def test_egress_sets_supermemory_headers_and_keeps_memories_apart(emu, proxy):
    assert egress(proxy, emu, user="alice-id", content="My name is Alice").status_code == 200
    r = egress(proxy, emu, user="alice-id", content="What is my name?",
               extra_headers={"x-sm-user-id": "bob-id", "x-supermemory-conversation-id": "sess-9"})
    assert r.json()["choices"][0]["message"]["content"] == "Your name is Alice."
    r = egress(proxy, emu, user="bob-id", content="What is my name?")
    assert r.json()["choices"][0]["message"]["content"] == "I don't know your name."
    seen = records(emu, "/v3/")
    assert [s["headers"]["x-sm-user-id"] for s in seen] == ["alice-id", "alice-id", "bob-id"]
    assert seen[1]["headers"]["x-sm-conversation-id"] == "sess-9"
    for s in seen:
        assert s["headers"]["x-supermemory-api-key"] == SM_KEY
        assert s["headers"]["authorization"] == "Bearer provider-key"
        assert "x-memory-proxy-egress-secret" not in s["headers"]
        assert "x-supermemory-user-id" not in s["headers"]


def test_cookies_kept_between_requests_and_across_restart(emu, tmp_path):
    with running_proxy(emu.url, state_dir=tmp_path) as server:
        first_answer = egress(server, emu)
        assert first_answer.status_code == 200 and "set-cookie" not in first_answer.headers  # kept in the jar only
        assert egress(server, emu).status_code == 200
    jar = tmp_path / "supermemory_cookies.json"
    assert stat.S_IMODE(os.stat(jar).st_mode) == 0o600
    assert {c["name"] for c in json.loads(jar.read_text())["cookies"]} == {"cf_clearance", "__cf_bm"}
    with running_proxy(emu.url, state_dir=tmp_path) as server:
        assert egress(server, emu).status_code == 200
    first, second, third = records(emu, "/v3/")
    assert first["cookies"] == {}
    assert set(second["cookies"]) == {"cf_clearance", "__cf_bm"}
    assert third["cookies"] == second["cookies"]  # loaded from the jar after the restart


def test_cloudflare_refusal_is_retried_once(emu, proxy):
    assert egress(proxy, emu).status_code == 200  # gets cookies
    httpx.post(emu.url + "/_emulator/cloudflare", json={"refuse_next": 1})
    assert egress(proxy, emu).status_code == 200
    assert len(records(emu, "/v3/")) == 3
    httpx.post(emu.url + "/_emulator/cloudflare", json={"refuse_next": 2})
    r = egress(proxy, emu)
    assert r.status_code == 503 and r.json()["error"]["code"] == "cloudflare_1200"
    assert "1200" in r.json()["error"]["message"] and r.headers["retry-after"]
    assert len(records(emu, "/v3/")) == 5


def test_egress_streams_back_unbuffered(emu, proxy):
    body = {"model": "x", "stream": True, "messages": [{"role": "user", "content": "a longer message"}]}
    headers = {"authorization": "Bearer p", "x-supermemory-user-id": "u", "x-memory-proxy-egress-secret": SECRET}
    times, data, _ = _timed_chunks(proxy.url + f"/_egress/v3/{emu.url}/v1/chat/completions", body, headers)
    assert data.rstrip().endswith(b"data: [DONE]")
    assert len(times) >= 5 and times[-1] - times[0] >= 0.45, times


def test_supermemory_error_header_is_passed_on_and_counted(emu, proxy):
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "memory_error"})
    r = egress(proxy, emu, user="u1")
    assert r.status_code == 200 and r.headers["x-supermemory-error"].startswith("Emulated fault")
    assert httpx.get(proxy.url + "/health").json()["memory_proxy"]["supermemory_errors"] == 1


def test_rate_limit_is_per_client(emu, tmp_path):
    with running_proxy(emu.url, extra="  requests_per_minute: 2") as server:
        pycharm, claude = {"user-agent": PYCHARM}, {"user-agent": CLAUDE}
        assert [httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers=pycharm).status_code
                for _ in range(2)] == [200, 200]
        limited = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers=pycharm)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limit_error"
        assert httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers=claude).status_code == 200
    assert len(records(emu, "/v1/")) == 3


def test_odd_methods_and_oversized_headers_get_json_errors(emu, proxy):
    for method in ("TRACE", "PROPFIND", "CONNECT"):
        r = httpx.request(method, proxy.url + "/v1/chat/completions")
        assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed", method
    r = httpx.get(proxy.url + "/v1/models", headers={f"x-big-{i}": "v" * 1000 for i in range(70)})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    r = httpx.get(proxy.url + "/no/such/path")
    assert r.status_code == 404 and "error" in r.json()
    assert httpx.get(proxy.url + "/health").json()["memory_proxy"]["status"] == "ok"  # still up


# --- the front door: nothing reaches LiteLLM (here the emulator) unless it is a model route -------


ADMIN_PATHS = ["/model/info", "/v1/model/info", "/get/config/callbacks", "/routes", "/sso/key/generate",
               "/debug/asyncio-tasks",
               "/key/generate", "/model/new", "/config/update", "/cache/flushall", "/spend/logs",
               "/anthropic/v1/messages", "/openai/v1/chat/completions", "/mcp/tools", "/v1/files", "/v1/batches",
               "/v1/assistants", "/v1/vector_stores", "/scope/proj/key/generate", "/v1/models/../../key/generate"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_admin_and_other_routes_are_404_and_never_relayed(emu, proxy, method):
    for path in ADMIN_PATHS:
        r = httpx.request(method, proxy.url + path, json={"models": ["x"]})
        assert r.status_code == 404, path
        error = r.json()["error"]
        assert error["code"] == "route_not_served" and "LiteLLM's own port" in error["message"], path
    assert records(emu) == []


def test_foreign_hosts_origins_and_cross_site_fetches_are_refused_before_relaying(emu, proxy):
    cases = [({"host": "attacker.example"}, "host_not_allowed"),
             ({"host": f"attacker.example:{proxy.port}"}, "host_not_allowed"),
             ({"origin": "http://attacker.example"}, "origin_not_allowed"),
             ({"origin": "null"}, "origin_not_allowed"),
             ({"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}, "origin_not_allowed")]
    for path in ("/v1/chat/completions", "/health", "/memory-routing/info", "/_egress/v3/x/v1/chat"):
        for headers, code in cases:
            r = httpx.post(proxy.url + path, json=CHAT, headers={"content-type": "text/plain", **headers})
            assert (r.status_code, r.json()["error"]["code"]) == (403, code), (path, headers)
            assert not any(n.startswith("access-control-") for n in r.headers), (path, headers)
    assert records(emu) == []
    # IDEs, SDKs and CLIs send no Origin: they are served.
    assert httpx.post(proxy.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_a_listed_origin_gets_its_preflight_and_readable_answers(emu, tmp_path):
    with running_proxy(emu.url, state_dir=tmp_path, extra="  cors_origins: ['http://localhost:5173']\n") as server:
        origin = {"origin": "http://localhost:5173", "sec-fetch-site": "cross-site"}
        preflight = httpx.options(server.url + "/v1/chat/completions", headers={
            **origin, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, authorization"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert preflight.headers["access-control-allow-headers"] == "content-type, authorization"
        assert records(emu) == []  # answered by the proxy itself
        r = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers=origin)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "x-request-id" in r.headers["access-control-expose-headers"]
        other = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers={"origin": "http://localhost:5174"})
        assert other.status_code == 403


def test_claude_codes_telemetry_is_answered_here_and_dropped(emu, proxy):
    r = httpx.post(proxy.url + "/api/event_logging/batch", json={"events": [{"name": "x"}]},
                   headers={"user-agent": CLAUDE})
    assert r.status_code == 200 and r.json() == {}
    assert records(emu) == []


def test_health_under_a_scope_and_health_only_by_get(emu, proxy):
    assert httpx.get(proxy.url + "/scope/proj/health").json()["memory_proxy"]["status"] == "ok"
    r = httpx.post(proxy.url + "/health")
    assert r.status_code == 405 and records(emu) == []


def test_metrics_needs_the_front_door_key_when_keys_are_set(emu):
    with running_proxy(emu.url, extra="  api_keys: [os.environ/FRONT_KEY]") as server:
        refused = httpx.get(server.url + "/metrics")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        ok = httpx.get(server.url + "/metrics", headers={"authorization": "Bearer front-door-key-0123456789"})
        assert ok.status_code == 200 and "memory_proxy_litellm_up" in ok.text
    with running_proxy(emu.url) as server:  # no keys, loopback: like every other path
        assert httpx.get(server.url + "/metrics").status_code == 200


# --- the warm-up's canned provider answers ------------------------------------------------------


def test_the_warm_up_answers_only_with_the_egress_secret_and_in_each_providers_shape(emu, proxy):
    """``/_warmup/`` answers as OpenAI and Anthropic would (LiteLLM parsing them is in
    tests/faults/test_litellm.py); without the per-run secret it answers nothing, and it never
    reaches the upstream."""
    base = proxy.url + "/_warmup"
    body = {"model": "m", "messages": [{"role": "user", "content": "warm-up"}]}
    openai_key, anthropic_key = {"authorization": f"Bearer {SECRET}"}, {"x-api-key": SECRET}
    for url, headers in ((base + "/openai/v1/chat/completions", {"authorization": "Bearer wrong"}),
                         (base + "/openai/v1/chat/completions", {}), (base + "/anthropic/v1/messages", openai_key),
                         (base + "/anthropic/v1/messages", {"x-api-key": MASTER})):
        assert httpx.post(url, json=body, headers=headers).status_code == 403, (url, headers)
    assert httpx.post(base + "/openai/v1/embeddings", json=body, headers=openai_key).status_code == 404
    assert httpx.post(base + "/openai/v1/chat/completions", content=b"[1]", headers=openai_key).status_code == 400

    chat = httpx.post(base + "/openai/v1/chat/completions", json=body, headers=openai_key).json()
    assert chat["object"] == "chat.completion" and chat["choices"][0]["message"]["content"] == "ok"
    streamed = httpx.post(base + "/openai/v1/chat/completions", json={**body, "stream": True}, headers=openai_key)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.endswith("data: [DONE]\n\n") and '"content": "ok"' in streamed.text
    response = httpx.post(base + "/openai/v1/responses", json=body, headers=openai_key).json()
    assert response["status"] == "completed" and response["output"][0]["content"][0]["text"] == "ok"
    events = httpx.post(base + "/openai/v1/responses", json={**body, "stream": True}, headers=openai_key).text
    assert events.startswith("event: response.created\n") and "event: response.completed\n" in events
    message = httpx.post(base + "/anthropic/v1/messages", json=body, headers=anthropic_key).json()
    assert message["type"] == "message" and message["content"][0]["text"] == "ok"
    events = httpx.post(base + "/anthropic/v1/messages", json={**body, "stream": True}, headers=anthropic_key).text
    assert events.startswith("event: message_start\n") and events.rstrip().endswith('{"type": "message_stop"}')
    assert records(emu) == []
