"""Small pieces: the rate limiter, LiteLLM error reshaping, the launcher's health probe, and
property tests of the header rules."""

import asyncio
import json
import socket
import threading
import time

import httpx
from hypothesis import given
from hypothesis import strategies as st

from memory_proxy.config.model import CLIENT_ID_RE, HeaderPattern, UserIdMappings
from memory_proxy.launcher.probe import http_get
from memory_proxy.server import headers as h
from memory_proxy.server.ingress import _error_in_openai_shape
from memory_proxy.server.ratelimit import RateLimiter
from memory_proxy.server.routing import InvalidClientId, resolve


def test_rate_limiter_buckets_are_per_client_and_refill():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one per second, burst of 60
    assert all(limiter.acquire("a") == 0 for _ in range(60))
    wait = limiter.acquire("a")
    assert 0 < wait <= 1.0 and limiter.retry_after(wait) == "1"
    assert limiter.acquire("b") == 0  # another client is not slowed
    now[0] += 1.0
    assert limiter.acquire("a") == 0


def _reshape(status: int, body: bytes) -> tuple[int, dict]:
    upstream = httpx.Response(status, headers={"content-type": "application/json"}, content=body)
    response = asyncio.run(_error_in_openai_shape(upstream, [("x-request-id", "r")]))
    return response.status_code, json.loads(response.body)


def test_fastapi_style_errors_become_openai_style():
    status, body = _reshape(404, b'{"detail": "Not Found"}')
    assert status == 404 and body == {"error": {"message": "Not Found", "type": "invalid_request_error",
                                                "code": "not_found"}}
    anthropic = {"type": "error", "error": {"type": "not_found_error", "message": "x"}}
    assert _reshape(404, json.dumps(anthropic).encode())[1] == anthropic  # already has an error object
    assert _reshape(500, b"{broken")[1]["error"]["message"] == "upstream error"


header_names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
forged = st.sampled_from(["x-sm-user-id", "x-sm-conversation-id", "x-supermemory-user-id",
                          "x-supermemory-api-key", "x-memory-proxy-egress-secret", "authorization", "x-api-key"])


@given(st.lists(st.tuples(st.one_of(header_names, forged), header_values), max_size=15),
       st.from_regex(CLIENT_ID_RE, fullmatch=True))
def test_ingress_headers_never_carry_forged_memory_or_credentials(headers, user_id):
    out = h.ingress_request_headers(headers, custom_header="x-memory-user-id", user_id=user_id,
                                    master_key="sk-master", request_id="rid")
    memory = [(n, v) for n, v in out if h.is_memory_header(n)]
    assert memory == [(h.USER_ID_HEADER, user_id)] or (
        memory[0] == (h.USER_ID_HEADER, user_id) and memory[1][0] == h.CONVERSATION_HEADER and len(memory) == 2)
    assert [v for n, v in out if n in ("authorization", "x-api-key", "api-key")] == ["Bearer sk-master"]
    assert h.EGRESS_SECRET_HEADER not in dict(out)
    assert not {n for n, _ in out} & (h.HOP_BY_HOP | {"host", "content-length"})


@given(st.lists(st.tuples(st.one_of(header_names, forged), header_values), max_size=15),
       st.from_regex(CLIENT_ID_RE, fullmatch=True))
def test_egress_headers_name_exactly_one_user(headers, user_id):
    out = h.egress_request_headers(headers, user_id=user_id, api_key="sm-key")
    assert [v for n, v in out if n == "x-sm-user-id"] == [user_id]
    assert [v for n, v in out if n == "x-supermemory-api-key"] == ["sm-key"]
    assert h.EGRESS_SECRET_HEADER not in dict(out) and h.USER_ID_HEADER not in dict(out)


MAPPINGS = UserIdMappings("x-memory-user-id", (
    HeaderPattern("user-agent", "^claude-cli/", "claude-cli", __import__("re").compile("^claude-cli/", 2)),), "dflt")


@given(st.text(max_size=140), st.text(max_size=60))
def test_resolution_is_total_and_only_yields_valid_ids(custom, user_agent):
    try:
        r = resolve(MAPPINGS, {"x-memory-user-id": custom, "user-agent": user_agent}, "/v1/models")
    except InvalidClientId:
        assert not CLIENT_ID_RE.match(custom.strip())
        return
    assert CLIENT_ID_RE.match(r.user_id) and r.user_id == custom.strip() and r.source == "custom_header"


@given(st.text(max_size=60), st.text(max_size=30))
def test_scope_paths_resolve_or_refuse(user_agent, scope):
    path = f"/scope/{scope}/v1/chat/completions"
    try:
        r = resolve(MAPPINGS, {"user-agent": user_agent}, path)
    except InvalidClientId:
        assert not CLIENT_ID_RE.match(scope.partition("/")[0])
        return
    assert CLIENT_ID_RE.match(r.user_id) and r.path.endswith("/chat/completions")


def _serve_once(answer: bytes | None, *pieces_delay: float) -> str:
    """A one-connection server on loopback that reads the request, then sends ``answer`` in
    two halves (``pieces_delay`` s apart) and closes; ``None``: never answers."""
    server = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = server.accept()
        with conn, server:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            assert request.startswith(b"GET /health?x=1 HTTP/1.1\r\n")
            if answer is None:
                conn.recv(1)  # until the client gives up
                return
            half = len(answer) // 2
            conn.sendall(answer[:half])
            threading.Event().wait(pieces_delay[0] if pieces_delay else 0)
            conn.sendall(answer[half:])

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/health?x=1"


def test_health_probe_reads_every_framing_and_gives_up_cleanly():
    body = b'{"status": "ok"}'
    length = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body), body)
    assert http_get(_serve_once(length, 0.05)) == (200, body)
    chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"sta\r\nb;x=y\r\ntus\": \"ok\"}\r\n0\r\n\r\n"
    assert http_get(_serve_once(chunked, 0.05)) == (503, body)
    assert http_get(_serve_once(b"HTTP/1.0 200 OK\r\n\r\n" + body)) == (200, body)  # ended by the close
    assert http_get(_serve_once(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")) == (None, b"")  # no HTTP answer
    assert http_get(_serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n{")) == (None, b"")  # cut short
    silent = _serve_once(None)
    started = time.monotonic()
    assert http_get(silent, timeout=0.3) == (None, b"")
    assert time.monotonic() - started < 2.0  # the timeout holds for the whole answer
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    assert http_get(f"http://127.0.0.1:{port}/health") == (None, b"")  # refused


# --- warm-up (memory_proxy/config/warmup.py, launcher/warmup.py) ------------------------------


def test_warm_up_groups_one_per_provider_family_of_the_models_litellm_gets():
    from pathlib import Path

    from memory_proxy.config import warmup
    from memory_proxy.config.model import parse_config

    text = """model_list:
  - {model_name: a, litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/K}}
  - {model_name: b, litellm_params: {model: openai/gpt-4o}}
  - {model_name: c, litellm_params: {model: anthropic/claude-3-5-haiku-latest, api_key: os.environ/UNSET_K}}
  - {model_name: d, litellm_params: {model: my-model, custom_llm_provider: hosted_vllm}}
"""
    config = parse_config(text, Path("t.yaml"), {"K": "k"})
    assert warmup.families(config) == {"openai": "openai/gpt-4o-mini", "hosted_vllm": "my-model"}  # c: key unset
    assert warmup.deployments(config) == [
        {"model_name": "memory-proxy-warmup/openai",
         "litellm_params": {"model": "openai/gpt-4o-mini", "mock_response": "ok"}},
        {"model_name": "memory-proxy-warmup/hosted_vllm",
         "litellm_params": {"model": "my-model", "mock_response": "ok"}},
    ]
    shapes = [(path, stream) for _, path, stream, _ in warmup.requests(["memory-proxy-warmup/openai"])]
    assert shapes == [("/v1/chat/completions", False), ("/v1/chat/completions", True), ("/v1/messages", False),
                      ("/v1/messages", True)]


def test_warm_up_summary_names_what_was_warmed_and_what_failed():
    from memory_proxy.config import warmup
    from memory_proxy.launcher.warmup import run

    sent = []

    def send(url, body, headers):
        sent.append((url, body["stream"], headers["authorization"]))
        return (None, "ConnectionRefusedError") if body["stream"] and url.endswith("/v1/messages") else (200, "")

    outcomes = run("http://127.0.0.1:9/", "sk-master", ["memory-proxy-warmup/openai"], send=send)
    assert sorted(sent) == sorted([("http://127.0.0.1:9/v1/chat/completions", False, "Bearer sk-master"),
                                   ("http://127.0.0.1:9/v1/chat/completions", True, "Bearer sk-master"),
                                   ("http://127.0.0.1:9/v1/messages", False, "Bearer sk-master"),
                                   ("http://127.0.0.1:9/v1/messages", True, "Bearer sk-master")])
    line = warmup.summary(outcomes, 1.23)
    assert line.startswith("warmed LiteLLM in 1.2 s without calling a provider")
    assert "for openai (3 of 4 answered)" in line
    assert "/v1/messages (streamed, memory-proxy-warmup/openai) failed: no answer ConnectionRefusedError" in line
    assert "sk-master" not in line


def test_model_listings_leave_the_warm_up_groups_out_in_every_shape():
    from memory_proxy.server.ingress import without_warmup_groups

    openai = {"object": "list", "data": [{"id": "a"}, {"id": "memory-proxy-warmup/openai"}, {"id": "b"}]}
    assert without_warmup_groups(openai) == {"object": "list", "data": [{"id": "a"}, {"id": "b"}]}
    codex = {"models": [{"slug": "memory-proxy-warmup/anthropic"}, {"slug": "c"}]}
    assert without_warmup_groups(codex) == {"models": [{"slug": "c"}]}
