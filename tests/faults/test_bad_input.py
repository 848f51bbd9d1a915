"""Bad input against the real chain: every refusal is OpenAI-style JSON, quick, and the memory
proxy stays up (same pid, no traceback in its log) with its memory bounded."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from .conftest import (
    ANTHROPIC,
    ANTHROPIC_HEADERS,
    CHAT,
    MAX_BODY,
    MEMORY_CHAT,
    MESSAGES,
    PLAIN,
    READ_TIMEOUT,
    assert_openai_error,
    bad_input,
    seen,
)

JSON = {"content-type": "application/json"}


def raw_exchange(port: int, data: bytes, *, read_timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """Send bytes as they are; return (status, headers, body) of the first answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass  # the proxy may answer (and stop reading) before a huge request is sent
        answer = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
                head, sep, body = answer.partition(b"\r\n\r\n")
                if sep:
                    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                                   if line.lower().startswith(b"content-length:")), None)
                    if length is not None and len(body) >= length:
                        break
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines and lines[0].startswith(b"HTTP/1.1 "), f"no HTTP answer to {data[:80]!r}: {answer[:200]!r}"
    headers = {k.strip().lower().decode(): v.strip().decode("latin-1")
               for k, _, v in (line.partition(b":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def assert_raw_json_error(port: int, data: bytes, status: int | tuple[int, ...], where: str) -> dict:
    code, headers, body = raw_exchange(port, data)
    statuses = status if isinstance(status, tuple) else (status,)
    assert code in statuses, f"{where}: {code} {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{where}: {headers} {body[:200]!r}"
    error = json.loads(body)["error"]
    assert error["message"] and error["type"], where
    seen(f"raw error ({where})", body)
    return error


def request_bytes(method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", "connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@pytest.fixture(scope="module")
def baseline(stack):
    """The memory proxy's pid and memory before any bad input, checked again at the end."""
    proc = stack.process("memory_proxy")
    with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=30) as c:
        for _ in range(20):  # warm: first requests allocate pools and caches
            assert c.post(CHAT, json=PLAIN).status_code == 200
    return {"pid": proc.pid, "rss": proc.memory_info().rss}


MALFORMED = {
    "unterminated object": b'{"model": "gpt-4o-mini"',
    "not json": b"{not json",
    "trailing comma": b'{"model": "gpt-4o-mini",}',
    "binary": b"\xff\xfe\x00\x01garbage",
    "NaN": b'{"model": "gpt-4o-mini", "temperature": NaN, "messages": []}',
    "Infinity": b'{"model": "gpt-4o-mini", "temperature": -Infinity, "messages": []}',
    "a number out of range": b'{"model": "gpt-4o-mini", "temperature": 1e999, "messages": []}',
    "nested 100000 deep": b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}",
    "two documents": b'{"model": "a"} {"model": "b"}',
    "top-level array": b"[]",
    "top-level string": b'"hello"',
    "top-level number": b"42",
    "top-level null": b"null",
    "utf-16": '{"model": "gpt-4o-mini"}'.encode("utf-16"),  # Python parses it; LiteLLM refuses it
}
PARSED_BY_US = {"utf-16"}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_json_is_a_400(stack, client, baseline, name):
    since = stack.emu.request_count()
    for path, headers in ((CHAT, JSON), (MESSAGES, {**JSON, **ANTHROPIC_HEADERS})):
        started = time.monotonic()
        answer = client.post(path, content=MALFORMED[name], headers=headers)
        error = assert_openai_error(answer, 400, f"{name} on {path}")
        assert error.get("code") == "invalid_json" or name in PARSED_BY_US, error
        # Refused by the proxy: at once. Passed on (LiteLLM refuses it): within the read timeout,
        # which a loaded 2-core machine can stretch LiteLLM's answer towards.
        assert time.monotonic() - started < (READ_TIMEOUT if name in PARSED_BY_US else 2)
        bad_input("malformed JSON body")
    assert stack.emu.request_count() == since, "a malformed body reached the upstream"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-ndjson", None])
def test_bodies_labelled_otherwise_are_checked_as_json_as_litellm_reads_them(stack, client, baseline, content_type):
    """LiteLLM parses every body that is not a form (or protobuf) as JSON, whatever its
    content-type: the proxy checks and cleans it the same way (a body's extra_headers would
    replace the egress secret of a Supermemory-backed model: a 500 instead of an answer)."""
    headers = {"content-type": content_type} if content_type else {}
    since = stack.emu.request_count()
    for body in (b"[1]", b"null", b'{"model": "gpt-4o-mini", "n": 1e999}'):
        answer = client.post(CHAT, content=body, headers=headers)
        error = assert_openai_error(answer, 400, f"{body!r} as {content_type}")
        assert error.get("code") == "invalid_json", error
        bad_input("malformed JSON body")
    assert stack.emu.request_count() == since, "a malformed body reached the upstream"
    smuggled = {**MEMORY_CHAT, "extra_headers": {"x-sm-user-id": "victim"}}
    answer = client.post(CHAT, content=json.dumps(smuggled).encode(), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-supermemory-user-id"] != "victim"


WRONG_TYPES = {
    "model is a number": {"model": 5, "messages": [{"role": "user", "content": "x"}]},
    "messages is a string": {"model": "gpt-4o-mini", "messages": "hi"},
    "messages missing": {"model": "gpt-4o-mini"},
    "model missing": {"messages": [{"role": "user", "content": "x"}]},
    "unknown model": {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
    "model disabled for its missing key": {"model": "needs-a-key", "messages": [{"role": "user", "content": "x"}]},
    "extra_headers is a string": {"model": "gpt-4o-mini", "extra_headers": "x-sm-user-id: victim",
                                  "messages": "not a list"},
}


@pytest.mark.parametrize("name", list(WRONG_TYPES))
def test_wrong_types_get_litellms_error_in_openai_shape(client, baseline, name):
    """Valid JSON of the wrong shape goes to LiteLLM, whose refusal reaches the client as
    OpenAI-style JSON (a FastAPI ``detail`` would be reshaped)."""
    answer = client.post(CHAT, json=WRONG_TYPES[name])
    assert_openai_error(answer, (400, 404, 422), name)
    bad_input("wrong types in a JSON body")


def test_anthropic_body_without_max_tokens_gets_an_error_object(client, baseline):
    answer = client.post(MESSAGES, json={k: v for k, v in ANTHROPIC.items() if k != "max_tokens"},
                         headers=ANTHROPIC_HEADERS)
    assert answer.status_code == 400 and isinstance(answer.json()["error"], dict), answer.text
    seen("anthropic 400", answer.text)
    bad_input("wrong types in a JSON body")


def test_huge_bodies_are_413_without_being_read(stack, baseline):
    port = stack.proxy_port
    # Declared far above the limit: refused from the header alone, before the body is sent.
    started = time.monotonic()
    head = request_bytes("POST", CHAT, {**JSON, "content-length": str(10 * 2**30)})
    head = head.replace(b"content-length: 0\r\n", b"")
    error = assert_raw_json_error(port, head + b'{"model"', 413, "declared 10 GiB")
    assert error["code"] == "request_too_large" and time.monotonic() - started < 2
    bad_input("huge body (declared length)")
    proc = stack.process("memory_proxy")
    rss_before = proc.memory_info().rss
    for content_type in ("application/json", "application/octet-stream"):
        # Chunked, no declared length: refused once the limit is passed, not after 20 MiB.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"POST /v1/audio/transcriptions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                         f"content-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n".encode())
            sent = 0
            try:
                while sent < 20 * MAX_BODY:
                    sock.sendall(b"10000\r\n" + b"a" * 0x10000 + b"\r\n")
                    sent += 0x10000
            except OSError:
                pass
            sock.settimeout(5)
            answer = b""
            try:
                while b"}}" not in answer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
            except OSError:
                pass
        assert answer.startswith(b"HTTP/1.1 413"), (content_type, answer[:200])
        assert b'"request_too_large"' in answer
        seen("413 chunked", answer)
        bad_input("huge body (chunked)")
    grown = (proc.memory_info().rss - rss_before) / 2**20
    assert grown < 3 * MAX_BODY / 2**20 + 5, f"RSS grew {grown:.1f} MiB for 40 MiB of refused bodies"
    # Just under the limit passes (the limit is not off by one against the client).
    body = json.dumps({**PLAIN, "messages": [{"role": "user", "content": "x" * (MAX_BODY - 200)}]}).encode()
    assert len(body) <= MAX_BODY
    with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=60) as c:
        assert c.post("/v1/embeddings", content=body[:MAX_BODY], headers=JSON).status_code != 413


HEADER_CASES = {
    # name: (raw request, expected status, expected code or None)
    "header over max_header_bytes (app check)": (
        request_bytes("GET", "/v1/models", {f"x-big-{i}": "v" * 1000 for i in range(70)}), 431, "headers_too_large"),
    "one 300 KB header (protocol check)": (
        request_bytes("GET", "/v1/models", {"x-big": "v" * 300_000}), 431, "headers_too_large"),
    "200 KB URL": (request_bytes("GET", "/" + "a" * 200_000), 431, "headers_too_large"),
    "space in a header name": (request_bytes("GET", "/v1/models", {"bad header": "v"}), 400, "invalid_http"),
    "colon-less header line": (b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\njunk\r\n\r\n", 400, "invalid_http"),
    "control character in a value": (request_bytes("GET", "/v1/models", {"x-a": "a\x01b"}), 400, "invalid_http"),
    "NUL in a value": (request_bytes("GET", "/v1/models", {"x-a": "a\x00b"}), 400, "invalid_http"),
    "obsolete line folding": (b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: b\r\n c\r\n\r\n", 400,
                              "invalid_http"),
    "bare LF line ends": (b"GET /v1/models HTTP/1.1\nhost: 127.0.0.1\n\n", 400, "invalid_http"),
    "two content-lengths": (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 2\r\n"
                            b"content-length: 3\r\n\r\n{}", 400, "invalid_http"),
    "content-length and chunked": (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 5\r\n"
                                   b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_http"),
    "content-length not a number": (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: abc"
                                    b"\r\n\r\n", 400, "invalid_http"),
    "negative content-length": (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: -1"
                                b"\r\n\r\n", 400, "invalid_http"),
    "broken chunk size": (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                          b"transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, "invalid_http"),
    "space in the path": (b"GET /v1/mo dels HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n", 400, "invalid_http"),
    "NUL in the path": (b"GET /v1/\x00models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n", 400, "invalid_http"),
    "TLS handshake on the plain port": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400,
                                        "invalid_http"),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "invalid_http"),
    "HTTP/9.9": (b"GET /v1/models HTTP/9.9\r\nhost: 127.0.0.1\r\n\r\n", 400, "invalid_http"),
}


@pytest.mark.parametrize("name", list(HEADER_CASES))
def test_invalid_or_oversized_request_heads_get_json_errors(stack, baseline, name):
    data, status, code = HEADER_CASES[name]
    error = assert_raw_json_error(stack.proxy_port, data, status, name)
    assert error["code"] == code, (name, error)
    bad_input("invalid or oversized request head")


def test_an_endless_header_is_cut_off_and_memory_stays_bounded(stack, baseline):
    """httptools alone buffered 200 MB of header (the process grew by 350 MB, for good)."""
    proc = stack.process("memory_proxy")
    before = proc.memory_info().rss
    answer, sent = b"", 0
    with socket.create_connection(("127.0.0.1", stack.proxy_port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\nx-endless: ")
        sock.setblocking(False)
        try:
            while sent < 200 * 2**20 and not answer:
                try:
                    sent += sock.send(b"a" * 65536)
                except BlockingIOError:
                    time.sleep(0.001)
                try:
                    answer = sock.recv(65536)
                except BlockingIOError:
                    pass
        except OSError:
            pass
        sock.setblocking(True)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 431") and b"headers_too_large" in answer, answer[:300]
    assert sent < 4 * 2**20, f"the proxy took {sent >> 20} MiB of one header before refusing it"
    grown = (proc.memory_info().rss - before) / 2**20
    assert grown < 10, f"RSS grew {grown:.1f} MiB"
    bad_input("invalid or oversized request head")


def test_non_ascii_header_values_are_relayed_not_a_500(client, baseline):
    for value in ("José's IDE", "\u00ff\u00fe", "tab\tinside"):
        answer = client.get("/v1/models", headers={"user-agent": value.encode("latin-1")})
        assert answer.status_code == 200, (value, answer.text)
        bad_input("non-ASCII header value")


BAD_IDS = ["has space", "tab\there", "a" * 129, "", "   ", "../etc", "a/b", "semi;colon", "quote\"d", "%41%42",
           "\u00e9t\u00e9", "<script>", "a,b", "a=b", "@home", "x" * 1000]


@pytest.mark.parametrize("value", BAD_IDS, ids=range(len(BAD_IDS)))
def test_bad_custom_ids_are_400_and_reach_nobody(stack, baseline, value):
    since = stack.emu.request_count()
    body = json.dumps(PLAIN).encode()
    data = request_bytes("POST", CHAT, {**JSON, "x-memory-user-id": value}, body)
    error = assert_raw_json_error(stack.proxy_port, data.replace("é".encode("latin-1"), "é".encode()), 400,
                                  f"id {value!r}")
    assert error["code"] == "invalid_client_id", error
    assert len(value) < 3 or value not in error["message"], "the refusal echoes the id"
    bad_input("invalid client id (header)")
    if value.strip() and "/" not in value:
        from urllib.parse import quote
        with httpx.Client(base_url=stack.proxy_url, trust_env=False, timeout=30) as client:
            answer = client.get(f"/scope/{quote(value, safe='')}/v1/models")
        assert_openai_error(answer, 400, f"scope {value!r}")
        bad_input("invalid client id (scope path)")
    assert stack.emu.request_count() == since


def test_ids_at_the_limits_are_accepted(client, baseline):
    for value in ("a" * 128, "A.b_c:d-9", "0"):
        answer = client.post(CHAT, json=PLAIN, headers={"x-memory-user-id": value})
        assert answer.status_code == 200 and answer.headers["x-supermemory-user-id"] == value, answer.text
        bad_input("client id at the limit (accepted)")


UNKNOWN = [("GET", "/nope"), ("GET", "/v1/nope"), ("POST", "/v1/chat/completions/extra"),
           ("GET", "/%2e%2e/etc/passwd"), ("GET", "/v1/models/../../x"), ("DELETE", "/v1/models"),
           ("PUT", "/v1/models"), ("PATCH", "/v1/chat/completions"), ("GET", "/v1/chat/completions"),
           ("OPTIONS", "/v1/chat/completions"), ("POST", "/"), ("GET", "/scope/p1/nope"),
           ("TRACE", "/v1/models"), ("PROPFIND", "/v1/models"), ("CONNECT", "/v1/models")]


@pytest.mark.parametrize("method, path", UNKNOWN)
def test_unknown_paths_and_odd_methods_get_json_errors(client, baseline, method, path):
    answer = client.request(method, path)
    assert_openai_error(answer, (400, 404, 405), f"{method} {path}")
    bad_input("unknown path or odd method")


@pytest.mark.parametrize("method", ["FOO", "get", "M-SEARCH", "BREW", "GET\x7f"])
def test_method_tokens_the_parser_refuses_get_json_errors(stack, baseline, method):
    error = assert_raw_json_error(stack.proxy_port, request_bytes(method, "/v1/models"), (400, 405), method)
    assert "method" in error["message"].lower() or error["code"] == "method_not_allowed", error
    bad_input("unknown path or odd method")


def test_websocket_upgrade_is_served_as_plain_http(client, baseline):
    answer = client.get("/v1/models", headers={"upgrade": "websocket", "connection": "upgrade",
                                                 "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                                                 "sec-websocket-version": "13"})
    assert answer.status_code == 200 and answer.json()["data"], answer.text
    bad_input("websocket upgrade")


def test_the_proxy_is_still_the_same_process_and_logged_no_traceback(stack, client, baseline):
    assert stack.pid("memory_proxy") == baseline["pid"]
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["memory_proxy"]["pid"] == baseline["pid"]
    assert client.post(CHAT, json=PLAIN).status_code == 200
    log = (stack.state / "logs" / "memory.log").read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]
    grown = (stack.process("memory_proxy").memory_info().rss - baseline["rss"]) / 2**20
    assert grown < 40, f"the memory proxy grew by {grown:.0f} MiB over the bad-input tests"
