"""Tests of the offline emulator (tests/emulator/)."""
from __future__ import annotations

import gc
import json
import re
import threading
import time

import httpx
import pytest
import uvicorn

from tests.emulator import NO_USER_ID, AbortStream, RequestLog, create_app, fast_chat_protocol
from tests.support.ports import free_port
from tests.support.servers import ServerThread

OPENAI_AUTH = {"authorization": "Bearer sk-test"}
ANTHROPIC_AUTH = {"x-api-key": "sk-ant-test"}
SM = {"x-supermemory-api-key": "sm-test"}
ROUTER_CHAT = "/v3/https://api.openai.com/v1/chat/completions"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def client_for(app=None) -> httpx.AsyncClient:
    app = app if app is not None else create_app(chunk_delay=0)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://emulator.test")


def chat(text: str, **extra) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def sse_data(body: str) -> list[str]:
    return [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]


def sse_events(body: str) -> list[tuple[str, dict]]:
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.mark.anyio
async def test_openai_chat_json():
    async with client_for() as c:
        r = await c.post("/v1/chat/completions", json=chat("hello there"), headers=OPENAI_AUTH)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert set(data["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}


@pytest.mark.anyio
async def test_openai_chat_stream_ends_with_done():
    body = chat("stream me please", stream=True, stream_options={"include_usage": True})
    async with client_for(create_app(chunk_delay=0, chunks=3)) as c:
        r = await c.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [ch["choices"][0]["delta"]["content"] for ch in chunks[1:-2]]
    assert len(content) == 3 and "".join(content) == "echo: stream me please"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.anyio
async def test_anthropic_json_and_stream_event_order():
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 50,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    async with client_for() as c:
        r = await c.post("/v1/messages", json=body, headers=ANTHROPIC_AUTH)
        s = await c.post("/v1/messages", json={**body, "stream": True}, headers=ANTHROPIC_AUTH)
    data = r.json()
    assert data["type"] == "message" and data["stop_reason"] == "end_turn"
    assert data["content"] == [{"type": "text", "text": "echo: hi"}]
    assert set(data["usage"]) == {"input_tokens", "output_tokens"}
    events = sse_events(s.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = events[3:-3]
    assert deltas and all(name == "content_block_delta" for name, _ in deltas)
    assert "".join(d["delta"]["text"] for _, d in deltas) == "echo: hi"
    assert all(d["type"] == name for name, d in events)
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


@pytest.mark.anyio
async def test_responses_embeddings_models():
    async with client_for() as c:
        r = await c.post("/v1/responses", json={"model": "gpt-4o", "input": "yo"}, headers=OPENAI_AUTH)
        s = await c.post("/v1/responses", json={"model": "gpt-4o", "input": "yo", "stream": True},
                         headers=OPENAI_AUTH)
        e = await c.post("/v1/embeddings", json={"model": "m", "input": ["a", "b"]}, headers=OPENAI_AUTH)
        e2 = await c.post("/v1/embeddings", json={"model": "m", "input": "a"}, headers=OPENAI_AUTH)
        m = await c.get("/v1/models", headers=OPENAI_AUTH)
    data = r.json()
    assert data["object"] == "response"
    assert data["output"][0]["content"][0] == {"type": "output_text", "text": "echo: yo", "annotations": []}
    names = [name for name, _ in sse_events(s.text)]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert "response.output_text.delta" in names
    vectors = [d["embedding"] for d in e.json()["data"]]
    assert len(vectors) == 2 and vectors[0] != vectors[1] and vectors[0] == e2.json()["data"][0]["embedding"]
    assert m.json()["object"] == "list" and m.json()["data"][0]["object"] == "model"


@pytest.mark.anyio
async def test_auth_and_malformed_json():
    async with client_for() as c:
        no_key = await c.post("/v1/chat/completions", json=chat("x"))
        empty = await c.post("/v1/chat/completions", json=chat("x"), headers={"authorization": "Bearer "})
        anthropic = await c.post("/v1/messages", json=chat("x"))
        anthropic_bearer = await c.post("/v1/messages", json=chat("x"), headers=OPENAI_AUTH)
        no_sm_key = await c.post(ROUTER_CHAT, json=chat("x", user="a"), headers=OPENAI_AUTH)
        no_provider_key = await c.post(ROUTER_CHAT, json=chat("x", user="a"), headers=SM)
        bad_openai = await c.post("/v1/chat/completions", content=b"{oops", headers=OPENAI_AUTH)
        bad_anthropic = await c.post("/v1/messages", content=b"{oops", headers=ANTHROPIC_AUTH)
    assert no_key.status_code == empty.status_code == 401
    assert no_key.json()["error"]["code"] == "invalid_api_key"
    assert anthropic.status_code == 401
    assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["type"] == "authentication_error"
    assert anthropic_bearer.status_code == 200
    assert no_sm_key.status_code == 401 and "x-supermemory-api-key" in no_sm_key.json()["error"]["message"]
    assert no_provider_key.status_code == 401 and no_provider_key.json()["error"]["code"] == "invalid_api_key"
    assert bad_openai.status_code == 400 and bad_openai.json()["error"]["type"] == "invalid_request_error"
    assert bad_anthropic.status_code == 400 and bad_anthropic.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.anyio
async def test_supermemory_user_id_sources():
    headers = {**OPENAI_AUTH, **SM}
    async with client_for() as c:
        missing = await c.post(ROUTER_CHAT, json=chat("x"), headers=headers)
        by_body = await c.post(ROUTER_CHAT, json=chat("x", user="u1"), headers=headers)
        by_query = await c.post(ROUTER_CHAT, params={"userId": "u2"}, json=chat("x"), headers=headers)
        by_header = await c.post("/v3/api.anthropic.com/v1/messages", json=chat("x"),
                                 headers={**ANTHROPIC_AUTH, **SM, "x-sm-user-id": "u3",
                                          "x-sm-conversation-id": "conv-1"})
        memories = (await c.get("/_emulator/memories")).json()
    assert missing.status_code == 400
    assert missing.json() == {"error": {"message": NO_USER_ID, "type": "invalid_request_error"}}
    assert by_body.status_code == by_query.status_code == by_header.status_code == 200
    assert by_header.json()["type"] == "message"
    assert set(memories["memories"]) == {"u1", "u2", "u3"}
    assert memories["conversations"] == {"u3": ["conv-1"]}


@pytest.mark.anyio
async def test_memory_is_per_user_and_only_on_the_router():
    async with client_for() as c:
        def router(user, text):
            return c.post(ROUTER_CHAT, json=chat(text), headers={**OPENAI_AUTH, **SM, "x-sm-user-id": user})
        await router("a", "Hi, my name is Alice")
        alice = await router("a", "What is my name?")
        other = await router("b", "What is my name?")
        plain = await c.post("/v1/chat/completions", json=chat("What is my name?"), headers=OPENAI_AUTH)
        await router("a", "Actually my name is Bob")
        bob = await router("a", "what is my name")
    assert alice.json()["choices"][0]["message"]["content"] == "Your name is Alice."
    assert other.json()["choices"][0]["message"]["content"] == "I don't know your name."
    assert plain.json()["choices"][0]["message"]["content"] == "I don't know your name."
    assert bob.json()["choices"][0]["message"]["content"] == "Your name is Bob."


@pytest.mark.anyio
async def test_cloudflare_challenge_and_retry():
    headers = {**OPENAI_AUTH, **SM, "x-sm-user-id": "a"}
    async with client_for() as c:
        first = await c.post(ROUTER_CHAT, json=chat("one"), headers=headers)
        c.cookies.clear()
        refused = await c.post(ROUTER_CHAT, json=chat("two"), headers=headers)
        retry = await c.post(ROUTER_CHAT, json=chat("two"), headers=headers)  # client kept the new cookies
        records = (await c.get("/_emulator/requests")).json()
    for response in (first, refused):
        cookies = response.headers.get_list("set-cookie")
        assert [v.split("=")[0] for v in cookies] == ["cf_clearance", "__cf_bm"]
        assert all(v.endswith("; Path=/; Max-Age=1800; HttpOnly") for v in cookies)
        assert not any("domain" in v.lower() or "secure" in v.lower() for v in cookies)
    assert first.status_code == 200
    assert refused.status_code == 503
    assert refused.headers["server"] == "cloudflare"
    assert refused.headers["content-type"] == "text/plain; charset=UTF-8"
    assert "error code: 1200" in refused.text
    assert retry.status_code == 200 and "set-cookie" not in retry.headers
    assert records[2]["cookies"]["cf_clearance"] == refused.cookies["cf_clearance"]


@pytest.mark.anyio
async def test_cloudflare_refuse_next():
    headers = {**OPENAI_AUTH, **SM, "x-sm-user-id": "a"}
    async with client_for() as c:
        assert (await c.post(ROUTER_CHAT, json=chat("x"), headers=headers)).status_code == 200
        await c.post("/_emulator/cloudflare", json={"refuse_next": 2})
        statuses = [(await c.post(ROUTER_CHAT, json=chat("x"), headers=headers)).status_code for _ in range(3)]
        plain = await c.post("/v1/chat/completions", json=chat("x"), headers=OPENAI_AUTH)
    assert statuses == [503, 503, 200]
    assert plain.status_code == 200 and "set-cookie" not in plain.headers


@pytest.mark.anyio
async def test_faults_error_500_and_invalid_json():
    async with client_for() as c:
        await c.post("/_emulator/faults", json={"mode": "error_500", "count": 2})
        errors = [await c.post("/v1/messages", json=chat("x"), headers=ANTHROPIC_AUTH) for _ in range(2)]
        ok = await c.post("/v1/chat/completions", json=chat("x"), headers=OPENAI_AUTH)
        await c.post("/_emulator/faults", json={"mode": "invalid_json"})
        broken = await c.post("/v1/chat/completions", json=chat("x"), headers=OPENAI_AUTH)
        bad_mode = await c.post("/_emulator/faults", json={"mode": "nope"})
    assert [e.status_code for e in errors] == [500, 500]
    assert errors[0].json() == {"type": "error", "error": {"type": "api_error", "message": "Emulated fault: error_500"}}
    assert ok.status_code == 200
    assert broken.status_code == 200 and broken.headers["content-type"] == "application/json"
    assert broken.text == "{not json"
    assert bad_mode.status_code == 400


@pytest.mark.anyio
async def test_fault_close_mid_stream_aborts():
    async with client_for() as c:
        await c.post("/_emulator/faults", json={"mode": "close_mid_stream"})
        with pytest.raises(AbortStream):
            await c.post("/v1/chat/completions", json=chat("x", stream=True), headers=OPENAI_AUTH)
        stats = (await c.get("/_emulator/stats")).json()
    assert stats["active_streams"] == 0 and stats["client_disconnects"] == 0


@pytest.mark.anyio
async def test_request_record():
    async with client_for() as c:
        await c.post("/_emulator/faults", json={"mode": "slow", "delay": 0})  # control calls are not recorded
        await c.post(ROUTER_CHAT + "?userId=u9", json=chat("rec"), headers={**OPENAI_AUTH, **SM, "cookie": "k=v"})
        await c.get("/nowhere", headers={"X-Mixed-Case": "1"})
        records = (await c.get("/_emulator/requests")).json()
        later = (await c.get("/_emulator/requests", params={"since": 1})).json()
        stats = (await c.get("/_emulator/stats")).json()
        await c.delete("/_emulator/requests")
        cleared = (await c.get("/_emulator/requests")).json()
    first = records[0]
    assert first["method"] == "POST" and first["path"] == ROUTER_CHAT
    assert first["query"] == "userId=u9"
    assert first["headers"]["x-supermemory-api-key"] == "sm-test"
    assert first["body"]["messages"][0]["content"] == "rec"
    assert first["cookies"] == {"k": "v"}
    assert isinstance(first["time"], float)
    assert records[1]["path"] == "/nowhere" and records[1]["headers"]["x-mixed-case"] == "1"
    assert later == records[1:] and stats["requests"] == 2 and cleared == []


def test_request_log_keeps_records_where_the_garbage_collector_does_not_look():
    log = RequestLog()
    records = [("POST", f"/p{i}", b"q=%d" % i, ((b"host", b"h"), (b"x-n", b"%d" % i)), b"{}" * i, float(i))
               for i in range(300)]
    for record in records:
        log.append(record)
    assert len(log) == 300
    assert list(log.since(0)) == records and list(log.since(299)) == records[299:]
    assert list(log.since(300)) == [] and list(log.since(1000)) == []
    # The whole point: nothing per record for a full collection to walk (an array refers to
    # its type only), however many requests came.
    assert all(gc.get_referents(part) in ([], [type(part)]) for part in vars(log).values())
    log.clear()
    assert len(log) == 0 and list(log.since(0)) == []


def test_fast_chat_answers_and_records_as_the_router_does():
    """FastChatProtocol (what the emulator's servers run) gives the same answers and records as
    uvicorn's own protocol with the app's router, on real connections."""
    big = chat("x" * 100_000)  # a body in many reads
    cases = [{"json": chat("hi"), "headers": {**OPENAI_AUTH, "cookie": "a=1; b=2", "X-Mixed": "1"}},
             {"json": chat("hi", stream=True), "headers": OPENAI_AUTH},
             {"json": chat("hi")},  # no key
             {"json": chat("hi"), "headers": {"authorization": "Basic abc"}},
             {"content": b"[1, 2]", "headers": OPENAI_AUTH},
             {"content": b"{not json", "headers": OPENAI_AUTH},
             {"json": chat("My name is Ann. What is my name?"), "headers": OPENAI_AUTH, "params": {"q": "1"}},
             {"json": chat("bye"), "headers": {**OPENAI_AUTH, "connection": "close"}},
             {"json": big, "headers": OPENAI_AUTH}]
    outcomes, app_calls = [], []
    for fast in (False, True):
        app = create_app(chunk_delay=0, chunks=2)
        calls: list[str] = []

        async def counted(scope, receive, send, app=app, calls=calls) -> None:
            if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
                calls.append(scope["method"])
            await app(scope, receive, send)
        with ServerThread(counted, **({"http": fast_chat_protocol(app)} if fast else {})) as server, \
                httpx.Client(base_url=server.url, timeout=10) as c:
            answers = []
            for case in cases:
                r = c.post("/v1/chat/completions", **case)
                headers = sorted((k, v) for k, v in r.headers.items() if k != "date")
                answers.append((r.status_code, headers, re.sub(r'"created": ?\d+', "", r.text)))
            c.post("/_emulator/faults", json={"mode": "error_429"})
            r = c.post("/v1/chat/completions", json=chat("hi"), headers=OPENAI_AUTH)
            answers.append((r.status_code, r.text))
            records = c.get("/_emulator/requests").json()
        for rec in records:  # what differs between two servers
            del rec["time"], rec["headers"]["host"]
        outcomes.append((answers, records))
        app_calls.append(len(calls))
    assert outcomes[0] == outcomes[1]
    # The app saw every chat completion without the fast path; with it, only the five that are
    # not ordinary (a stream, no key, a Basic key, a JSON array, broken JSON) and the faulted one.
    assert app_calls == [len(cases) + 1, 6]
    answers, records = outcomes[1]
    assert [a[0] for a in answers] == [200, 200, 401, 401, 400, 400, 200, 200, 200, 429]
    assert ("connection", "close") in answers[7][1] and "echo: bye" in answers[7][2]
    assert records[0]["cookies"] == {"a": "1", "b": "2"} and records[0]["body"] == chat("hi")
    assert records[6]["query"] == "q=1" and records[8]["body"] == big and len(records) == len(cases) + 1


def test_real_server_notices_client_leaving_endless_stream():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(chunk_delay=0.01), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", server_header=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 5
        while not server.started:
            assert time.monotonic() < deadline, "emulator did not start"
            time.sleep(0.01)
        with httpx.Client(base_url=base, timeout=5) as control:
            routed = control.post(ROUTER_CHAT, json=chat("x", user="a"), headers={**OPENAI_AUTH, **SM})
            assert routed.status_code == 200
            assert control.get("/_emulator/requests").json()[0]["path"] == ROUTER_CHAT
            control.post("/_emulator/faults", json={"mode": "endless_stream", "delay": 0.02})
            with httpx.Client(base_url=base, timeout=5) as streamer, \
                    streamer.stream("POST", "/v1/chat/completions", json=chat("x", stream=True),
                                    headers=OPENAI_AUTH) as r:
                lines = r.iter_lines()  # keep a reference: a dropped iterator closes the connection
                received = 0
                for line in lines:
                    received += line.startswith("data: ")
                    if received == 5:
                        break
                assert control.get("/_emulator/stats").json() == {
                    "active_streams": 1, "client_disconnects": 0, "requests": 2}
            left = time.monotonic()
            while True:
                stats = control.get("/_emulator/stats").json()
                if stats["client_disconnects"] == 1 and stats["active_streams"] == 0:
                    break
                assert time.monotonic() - left < 1.0, stats
                time.sleep(0.02)
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@pytest.mark.anyio
async def test_memory_api_reads_and_changes_the_routers_store():
    """The Memory API (v5 paths: one namespace = one router user id) over the router's memory."""
    bearer = {"authorization": "Bearer sm-test"}
    async with client_for() as c:
        def router(user, text):
            return c.post(ROUTER_CHAT, json=chat(text), headers={**OPENAI_AUTH, **SM, "x-sm-user-id": user})

        def said(answer):
            return answer.json()["choices"][0]["message"]["content"]
        await router("a", "Hi, my name is Alice")
        await router("b", "I like tea")
        listed = (await c.post("/ns/a/list/memories", json={}, headers=bearer)).json()
        other = (await c.post("/ns/b/list/memories", json={}, headers=bearer)).json()
        (memory,) = listed["memories"]
        assert memory["memory"] == "Hi, my name is Alice" and memory["system"]["createdAt"].endswith("Z")
        assert [m["memory"] for m in other["memories"]] == ["I like tea"]
        assert (await c.get(f"/ns/b/memories/{memory['id']}", headers=bearer)).status_code == 404
        wrong = (await c.request("DELETE", "/ns/b/memories", json={"ids": [memory["id"]]}, headers=bearer)).json()
        assert wrong["count"] == 0 and wrong["errors"][0]["id"] == memory["id"]
        gone = (await c.request("DELETE", "/ns/a/memories", json={"ids": [memory["id"]]}, headers=bearer)).json()
        assert gone["count"] == 1
        assert said(await router("a", "What is my name?")) == "I don't know your name."
        added = await c.post("/ns/a/document", json={"content": "My name is Alice"}, headers=bearer)
        assert added.status_code == 200 and added.json()["status"] == "done"
        assert said(await router("a", "What is my name?")) == "Your name is Alice."
        found = (await c.post("/ns/a/search", json={"query": "name Alice"}, headers=bearer)).json()
        assert found["results"][0]["memory"] == "My name is Alice"
        unauthorised = await c.post("/ns/a/list/memories", json={})
        await c.post("/_emulator/supermemory_keys", json={"accept": ["another"]})
        refused = await c.post("/ns/a/list/memories", json={}, headers=bearer)
        refused_router = await router("a", "hello")
    assert unauthorised.status_code == refused.status_code == refused_router.status_code == 401
