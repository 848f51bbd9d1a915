"""The front door's pieces: Host and Origin rules, the route list, the config keys behind
them, and the HTTP protocol's handling of upgrade offers, byte for byte on a real socket."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from memory_proxy.config.model import ConfigError, ProxySettings, parse_config
from memory_proxy.server.front_door import FrontDoor
from memory_proxy.server.http_protocol import protocol_class
from tests.support.servers import ServerThread, receive_body


def door(**settings) -> FrontDoor:
    return FrontDoor(ProxySettings(**settings))


def http_scope(headers: dict[str, str], method: str = "POST", path: str = "/v1/chat/completions") -> dict:
    return {"type": "http", "method": method, "path": path,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}


def refusal_code(d: FrontDoor, headers: dict[str, str], method: str = "POST") -> str | None:
    refusal, _ = d.screen(http_scope(headers, method))
    if refusal is None:
        return None
    return json.loads(refusal.body)["error"]["code"] if refusal.status_code == 403 else str(refusal.status_code)


@pytest.mark.parametrize("host", ["127.0.0.1:8764", "127.0.0.1", "127.1.2.3:8764", "[::1]:8764", "localhost:8764",
                                  "LOCALHOST", "localhost.:8764", "proj.localhost:8764", "a.b.localhost"])
def test_loopback_hosts_are_served(host):
    assert refusal_code(door(), {"host": host}) is None


@pytest.mark.parametrize("host", ["attacker.example:8764", "attacker.example", "192.168.1.10:8764", "[::2]:8764",
                                  "localhost.attacker.example", "127.0.0.1.nip.io:8764", "0.0.0.0:8764", ""])
def test_foreign_hosts_are_refused(host):
    assert refusal_code(door(), {"host": host}) == "host_not_allowed"


def test_allowed_hosts_and_wildcards():
    d = door(allowed_hosts=("devbox.lan", "*.corp.example"))
    assert refusal_code(d, {"host": "devbox.lan:8764"}) is None
    assert refusal_code(d, {"host": "ide.corp.example"}) is None
    assert refusal_code(d, {"host": "corp.example"}) == "host_not_allowed"
    assert refusal_code(d, {"host": "devbox.lan.evil.example"}) == "host_not_allowed"


def test_host_is_not_checked_when_bound_beyond_loopback():
    assert refusal_code(door(host="0.0.0.0", api_keys=("k" * 16,)), {"host": "devbox.lan"}) is None


@pytest.mark.parametrize("origin", ["http://attacker.example", "null", "http://localhost:3000",
                                    "http://127.0.0.1:8765", "https://127.0.0.1:8764"])
def test_any_foreign_origin_is_refused(origin):
    assert refusal_code(door(), {"host": "127.0.0.1:8764", "origin": origin}) == "origin_not_allowed"


def test_the_proxys_own_origin_is_served():
    assert refusal_code(door(), {"host": "127.0.0.1:8764", "origin": "http://127.0.0.1:8764",
                                 "sec-fetch-site": "same-origin"}) is None
    # ...but never for a foreign Host claiming to be its own origin (DNS rebinding).
    assert refusal_code(door(), {"host": "attacker.example:8764",
                                 "origin": "http://attacker.example:8764"}) == "host_not_allowed"


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_cross_site_fetches_without_origin_are_refused(site):
    assert refusal_code(door(), {"host": "127.0.0.1:8764", "sec-fetch-site": site}, "GET") == "origin_not_allowed"
    assert refusal_code(door(), {"host": "127.0.0.1:8764", "sec-fetch-site": "none"}, "GET") is None


def test_a_host_origin_or_fetch_site_sent_twice_is_refused_whatever_the_order():
    """Parsers differ on which of two values counts: neither does. (A browser cannot send
    this; a crafted request can, and with the last value winning it got past the door.)"""
    def twice(*pairs: tuple[str, str]) -> str | None:
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "headers": [(k.encode(), v.encode()) for k, v in pairs]}
        refusal, _ = door().screen(scope)
        return None if refusal is None else json.loads(refusal.body)["error"]["code"]

    local, own = ("host", "127.0.0.1:8764"), ("origin", "http://127.0.0.1:8764")
    for pairs in ((("host", "evil.example"), local), (local, ("host", "evil.example")), (local, local)):
        assert twice(*pairs) == "host_not_allowed"
    for pairs in ((("origin", "http://evil.example"), own), (own, ("origin", "http://evil.example")), (own, own)):
        assert twice(local, *pairs) == "origin_not_allowed"
    assert twice(local, ("sec-fetch-site", "none"), ("sec-fetch-site", "none")) == "origin_not_allowed"
    assert twice(local, own) is None  # once each: served, as before


def test_listed_origins_get_a_preflight_and_their_cors_headers():
    d = door(cors_origins=("http://localhost:3000",))
    headers = {"host": "127.0.0.1:8764", "origin": "http://localhost:3000", "sec-fetch-site": "cross-site"}
    preflight, _ = d.screen(http_scope({**headers, "access-control-request-method": "POST",
                                        "access-control-request-headers": "authorization, content-type"}, "OPTIONS"))
    assert preflight.status_code == 204
    assert dict(preflight.raw_headers) == {
        b"access-control-allow-origin": b"http://localhost:3000", b"vary": b"Origin",
        b"access-control-allow-methods": b"POST", b"access-control-max-age": b"600",
        b"access-control-allow-headers": b"authorization, content-type"}
    refusal, origin = d.screen(http_scope(headers))
    assert refusal is None and origin == b"http://localhost:3000"
    # Another origin's preflight is refused and carries no CORS header at all.
    other, _ = d.screen(http_scope({**headers, "origin": "http://evil.example",
                                    "access-control-request-method": "POST"}, "OPTIONS"))
    assert other.status_code == 403 and not any(n.startswith(b"access-control-") for n, _ in other.raw_headers)


def test_a_listed_origin_never_gets_the_proxys_pages_or_their_api():
    """What each memory holds and forgetting it answer the proxy's own origin only."""
    d = door(cors_origins=("http://localhost:3000",))
    headers = {"host": "127.0.0.1:8764", "origin": "http://localhost:3000", "sec-fetch-site": "cross-site"}
    for path in ("/ui", "/ui/", "/ui/memory", "/ui/api/memory/list", "/ui/api/memory/forget", "/ui/api/summary"):
        for method, extra in (("GET", {}), ("POST", {}), ("OPTIONS", {"access-control-request-method": "POST"})):
            refusal, origin = d.screen(http_scope({**headers, **extra}, method, path))
            assert refusal is not None and refusal.status_code == 403 and origin is None, (path, method)
            assert json.loads(refusal.body)["error"]["code"] == "origin_not_allowed"
    own = {"host": "127.0.0.1:8764", "origin": "http://127.0.0.1:8764", "sec-fetch-site": "same-origin"}
    assert d.screen(http_scope(own, "POST", "/ui/api/memory/forget")) == (None, None)


def test_cors_send_replaces_upstream_cors_headers():
    sent = []

    async def send(message):
        sent.append(message)

    wrapped = FrontDoor.cors_send(send, b"http://localhost:3000")
    asyncio.run(wrapped({"type": "http.response.start", "status": 200,
                         "headers": [(b"access-control-allow-origin", b"*"), (b"content-type", b"x")]}))
    headers = sent[0]["headers"]
    assert (b"access-control-allow-origin", b"*") not in headers
    assert (b"access-control-allow-origin", b"http://localhost:3000") in headers and (b"content-type", b"x") in headers


MODEL_ROUTES = ["/v1/chat/completions", "/chat/completions", "/v1/completions", "/completions", "/v1/embeddings",
                "/embeddings", "/v1/models", "/models", "/v1/models/gpt-4o-mini", "/models/openai/gpt-4o",
                "/v1/messages", "/messages", "/v1/messages/count_tokens", "/v1/responses", "/responses",
                "/v1/responses/resp_123", "/v1/responses/resp_123/input_items", "/responses/resp_1/cancel",
                "/v1/responses/input_tokens", "/v1/chat/completions/"]
NOT_MODEL_ROUTES = ["/model/info", "/v1/model/info", "/get/config/callbacks", "/routes", "/ui/", "/ui",
                    "/debug/asyncio-tasks", "/key/generate", "/key/list", "/model/new", "/config/update",
                    "/cache/flushall", "/spend/logs", "/global/spend", "/user/new", "/team/new",
                    "/anthropic/v1/messages", "/openai/v1/chat/completions", "/vertex_ai/x", "/mcp", "/mcp/tools",
                    "/v1/files", "/v1/batches", "/v1/assistants", "/v1/threads", "/v1/vector_stores",
                    "/v1/fine_tuning/jobs", "/v1/audio/speech", "/v1/images/generations", "/v1/moderations",
                    "/v1/rerank", "/health/liveliness", "/metrics", "/", "/v1/models/../../key/generate",
                    "/v1/models/%2e%2e/key", "/v1/responses/a/b/c", "/v1/responses/x/delete",
                    "/v1/chat/completions/x", "/v2/chat/completions"]


@pytest.mark.parametrize("path", MODEL_ROUTES)
def test_model_routes_are_served(path):
    assert door().model_route(path)


@pytest.mark.parametrize("path", NOT_MODEL_ROUTES)
def test_everything_else_is_not(path):
    assert not door().model_route(path)


def test_optional_route_groups():
    d = door(optional_routes=("audio", "rerank"))
    assert d.model_route("/v1/audio/transcriptions") and d.model_route("/audio/speech")
    assert d.model_route("/v1/rerank") and d.model_route("/v2/rerank")
    assert not d.model_route("/v1/images/generations") and not d.model_route("/v1/moderations")


def config_problems(section: str) -> list[str]:
    try:
        parse_config(f"memory_proxy:\n{section}", Path("c.yaml"), {})
    except ConfigError as exc:
        return [f"{p.line}: {p.key}: {p.message}" for p in exc.problems]
    return []


def test_front_door_keys_are_validated_with_key_and_line():
    assert config_problems("  allowed_hosts: [devbox.lan, '*.corp.example']\n"
                           "  cors_origins: ['http://localhost:3000', 'HTTPS://App.Example/']\n"
                           "  optional_routes: [audio, images]\n") == []
    config = parse_config("memory_proxy:\n  cors_origins: ['HTTPS://App.Example/']\n", Path("c.yaml"), {})
    assert config.proxy.cors_origins == ("https://app.example",)
    assert config_problems("  allowed_hosts: ['http://devbox.lan']\n") == [
        "2: memory_proxy.allowed_hosts[0]: 'http://devbox.lan' is not a host name such as devbox.lan or "
        "*.corp.example (no port, no scheme)"]
    assert config_problems("  cors_origins: ['*']\n")[0].startswith("2: memory_proxy.cors_origins[0]: '*' is not")
    assert config_problems("  cors_origins: [null]\n")[0].startswith("2: memory_proxy.cors_origins[0]: None is not")
    assert config_problems("  cors_origins: http://x\n") == [
        "2: memory_proxy.cors_origins: must be a list, each an origin such as http://localhost:3000 "
        "(scheme, host, optional port; no path)"]
    assert config_problems("\n  optional_routes: [files]\n") == [
        "3: memory_proxy.optional_routes[0]: 'files' is not one of audio, images, moderations, rerank"]


def test_supermemory_backed_means_the_routers_v3_form_only():
    text = """
model_list:
  - model_name: plain
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9000/v1", api_key: k}
  - model_name: plain2
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9000", api_key: k}
  - model_name: backed
    litellm_params: {model: openai/x, api_base: "http://127.0.0.1:9000/v3/https://api.openai.com/v1", api_key: k}
memory_proxy:
  supermemory: {base_url: "http://127.0.0.1:9000", api_key: os.environ/SM}
"""
    config = parse_config(text, Path("c.yaml"), {"SM": "sm-key"})
    assert config.supermemory_groups == ["backed"]


# --- upgrade offers on the wire --------------------------------------------------------------


async def echo(scope, receive, send):
    """Answers with the method, path and body and whether an upgrade header arrived."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = await receive_body(receive)
    names = {n for n, _ in scope["headers"]}
    text = json.dumps({"method": scope["method"], "path": scope["path"], "body": body.decode(),
                       "upgrade": b"upgrade" in names or b"http2-settings" in names}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


@pytest.fixture(scope="module")
def echo_server():
    with ServerThread(echo, http=protocol_class(64 * 1024), ws="none") as server:
        yield server


def h2c_head(body: bytes, path: str = "/v1/chat/completions") -> bytes:
    """A POST as the JDK's ``HttpClient`` sends it on http:// URLs (captured from Java 17)."""
    return (f"POST {path} HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nContent-Length: {len(body)}\r\n"
            "Host: 127.0.0.1\r\nHTTP2-Settings: AAEAAEAAAAIAAAAAAAMAAAAAAAQBAAAAAAUAAEAAAAYABgAA\r\nUpgrade: h2c\r\n"
            "User-Agent: Java-http-client/17.0.15\r\nContent-Type: application/json\r\n\r\n").encode()


def read_answers(sock: socket.socket, count: int) -> list[dict]:
    """``count`` answers (each with a content-length) read off one connection."""
    buffer, answers = b"", []
    while len(answers) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode()
            length = int(next(line.split(":")[1] for line in head.split("\r\n")
                              if line.lower().startswith("content-length")))
            if len(buffer) >= head_end + 4 + length:
                assert head.startswith("HTTP/1.1 200"), head
                answers.append(json.loads(buffer[head_end + 4:head_end + 4 + length]))
                buffer = buffer[head_end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(answers)} answers"
        buffer += chunk
    return answers


@pytest.mark.parametrize("split", ["one segment", "head then body", "head in two pieces"])
def test_h2c_offers_are_served_as_http11_with_their_body(echo_server, split):
    bodies = [b'{"n": %d, "messages": []}' % i for i in range(3)]
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        for body in bodies:  # several requests on one kept-alive connection
            head = h2c_head(body)
            pieces = {"one segment": [head + body], "head then body": [head, body],
                      "head in two pieces": [head[:40], head[40:] + body[:5], body[5:]]}[split]
            for piece in pieces:
                sock.sendall(piece)
                if len(pieces) > 1:
                    time.sleep(0.05)  # separate segments, as the JDK sends them
            [got] = read_answers(sock, 1)
            assert got == {"method": "POST", "path": "/v1/chat/completions", "body": body.decode(),
                           "upgrade": False}


def test_h2c_offers_pipelined_with_plain_requests(echo_server):
    plain = b'POST /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nok'
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(h2c_head(b"[1]") + b"[1]" + plain + h2c_head(b"[2]", "/second") + b"[2]")
        answers = read_answers(sock, 3)
    assert [(a["path"], a["body"]) for a in answers] == [("/v1/chat/completions", "[1]"), ("/plain", "ok"),
                                                         ("/second", "[2]")]


def test_a_get_with_an_upgrade_offer_and_no_body(echo_server):
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive, Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        [got] = read_answers(sock, 1)
    assert got == {"method": "GET", "path": "/v1/models", "body": "", "upgrade": False}


def test_real_http2_keeps_its_400(echo_server):
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400") and b'"invalid_http"' in answer


def test_litellms_cors_answer_and_wiring_headers_are_not_relayed():
    from memory_proxy.server.headers import response_headers
    upstream = [("content-type", "application/json"), ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"), ("access-control-expose-headers", "x-litellm-call-id"),
                ("x-litellm-model-api-base", "http://127.0.0.1:8764/_egress/v3/https://api.openai.com/v1"),
                ("x-litellm-call-id", "abc")]
    assert response_headers(upstream) == [("content-type", "application/json"), ("x-litellm-call-id", "abc")]
