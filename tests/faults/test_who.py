"""Who may do what: forged memory headers change nothing, memory headers and the Supermemory
key reach only Supermemory-backed models, front-door keys guard every path but ``/health``,
the proxy refuses to listen beyond loopback without them, and the rate limit is per client."""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time

import httpx
import pytest

from tests.support import ROOT
from tests.support.ports import free_port, port_taken
from tests.support.stacks import cli_env

from .conftest import (
    ANTHROPIC_HEADERS,
    CHAT,
    FRONT_DOOR_KEY,
    KEYS,
    MESSAGES,
    PLAIN,
    assert_openai_error,
    bad_input,
    make_stack,
    proxy_in_front,
    seen,
    start_direct,
)

VICTIM = "victim-id"
FORGED = {"x-sm-user-id": VICTIM, "x-supermemory-user-id": VICTIM, "x-sm-conversation-id": "stolen-conversation",
          "x-supermemory-conversation-id": "stolen-conversation", "x-supermemory-api-key": "sm-forged-key",
          "x-memory-proxy-egress-secret": "guessed-secret", "x-sm-anything": "x", "X-SUPERMEMORY-Custom": "y"}


def forged_body(model: str, path: str, stream: bool) -> dict:
    body = {"model": model, "stream": stream, "user": VICTIM,
            "messages": [{"role": "user", "content": "My name is Mallory"}],
            "extra_headers": {"x-sm-user-id": VICTIM, "x-supermemory-user-id": VICTIM}}
    if path == MESSAGES:
        body["max_tokens"] = 16
        body["metadata"] = {"user_id": VICTIM}
    return body


CASES = [(CHAT, "memory/gpt-4o-mini", True), (MESSAGES, "claude-sonnet-4-5", True),
         (CHAT, "gpt-4o-mini", False), (MESSAGES, "claude-3-5-haiku-latest", False)]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path, model, backed", CASES)
def test_forged_memory_headers_never_change_the_scope_or_reach_an_ordinary_model(stack, client, path, model,
                                                                                  backed, stream):
    since = stack.emu.request_count()
    headers = {**FORGED, "user-agent": "claude-cli/2.0.14 (external, cli)", **ANTHROPIC_HEADERS}
    with client.stream("POST", path + f"?userId={VICTIM}", json=forged_body(model, path, stream),
                       headers=headers) as answer:
        body = answer.read()
    assert answer.status_code == 200, body[:500]
    assert answer.headers["x-supermemory-user-id"] == "claude-cli"
    records = stack.emu.requests_since(since)
    memory = [r for r in records if r["path"].startswith("/v3/")]
    provider = [r for r in records if r["path"].startswith("/v1/")]
    if backed:
        (call,) = memory
        assert call["headers"]["x-sm-user-id"] == "claude-cli"
        assert call["headers"]["x-supermemory-api-key"] == KEYS["SUPERMEMORY_API_KEY"]
        assert "x-sm-conversation-id" not in call["headers"], "a forged conversation id got through"
        assert "userId" not in call["query"] and "extra_headers" not in (call["body"] or {})
        assert not {k for k in call["headers"] if k.startswith("x-supermemory-") and k != "x-supermemory-api-key"}
        assert "x-memory-proxy-egress-secret" not in call["headers"]
    else:
        assert not memory
        (call,) = provider
        leaked = sorted(k for k in call["headers"] if k.startswith(("x-sm-", "x-supermemory-", "x-memory-")))
        assert not leaked, f"an ordinary model got {leaked}"
        assert KEYS["SUPERMEMORY_API_KEY"] not in json.dumps(call)
    memories = httpx.get(stack.emu.url + "/_emulator/memories", trust_env=False).json()["memories"]
    assert VICTIM not in memories, "something was stored under the forged id"
    bad_input("forged x-sm-* / x-supermemory-* headers, body extra_headers, body user, ?userId=")


# --- front-door keys and the rate limit ----------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, stack):
    """A second memory proxy (launcher, ``--litellm-url``) in front of the session's LiteLLM, with
    front-door keys and ``requests_per_minute: 5``."""
    st = make_stack(tmp_path_factory.mktemp("guarded"), stack.emu,
                    extra="  api_keys: [os.environ/FAULTS_FRONT_KEY]\n  requests_per_minute: 5",
                    env=cli_env(**KEYS, FAULTS_FRONT_KEY=FRONT_DOOR_KEY, LITELLM_MASTER_KEY=stack.master_key()))
    with proxy_in_front(st, f"http://127.0.0.1:{stack.litellm_port}", "up --litellm-url (guarded)"):
        yield st


GUARDED_PATHS = [("POST", CHAT), ("POST", MESSAGES), ("GET", "/v1/models"), ("GET", "/models"),
                 ("GET", "/memory-routing/info"), ("GET", "/scope/proj/v1/models"), ("POST", "/v1/embeddings"),
                 ("GET", "/nope"), ("OPTIONS", CHAT), ("DELETE", "/v1/files/x"), ("GET", "/health/readiness"),
                 ("GET", "/healthz"), ("GET", "/health/"), ("GET", "/Health")]
WRONG = [{}, {"authorization": "Bearer wrong-key-0123456789"}, {"x-api-key": "wrong-key-0123456789"},
         {"authorization": FRONT_DOOR_KEY}, {"authorization": "Basic " + FRONT_DOOR_KEY},
         {"authorization": "Bearer " + FRONT_DOOR_KEY[:-1]}, {"authorization": "Bearer " + FRONT_DOOR_KEY + "x"},
         {"x-api-key": FRONT_DOOR_KEY.upper()}, {"api-key": FRONT_DOOR_KEY}]


@pytest.mark.parametrize("method, path", GUARDED_PATHS)
def test_front_door_keys_guard_every_path_but_health(guarded, method, path):
    since = guarded.emu.request_count()
    with httpx.Client(base_url=guarded.proxy_url, trust_env=False, timeout=30) as c:
        for headers in WRONG:
            answer = c.request(method, path + f"?key={FRONT_DOOR_KEY}", headers={**headers, **ANTHROPIC_HEADERS})
            error = assert_openai_error(answer, 401, f"{method} {path} with {headers}")
            assert error["type"] == "authentication_error"
            bad_input("missing or wrong front-door key")
    assert guarded.emu.request_count() == since, "a refused request reached the upstream"


def test_right_keys_open_the_door_and_health_needs_none(guarded):
    with httpx.Client(base_url=guarded.proxy_url, trust_env=False, timeout=30) as c:
        for i, headers in enumerate(({"authorization": "Bearer " + FRONT_DOOR_KEY},
                                     {"authorization": "bearer  " + FRONT_DOOR_KEY},
                                     {"x-api-key": FRONT_DOOR_KEY})):
            answer = c.post(CHAT, json=PLAIN, headers={**headers, "x-memory-user-id": f"door-{i}"})
            assert answer.status_code == 200, answer.text
        for headers in ({}, {"authorization": "Bearer wrong"}):
            health = c.get("/health", headers=headers)
            assert health.status_code == 200 and health.json()["status"] == "ok", health.text
            seen("/health (guarded)", health.text)
        egress = c.post("/_egress/v3/x/v1/chat/completions", json=PLAIN,
                        headers={"authorization": "Bearer " + FRONT_DOOR_KEY})
        error = assert_openai_error(egress, 403, "egress with the front-door key but no egress secret")
        assert error["type"] == "permission_error"


def test_rate_limit_is_per_client_and_one_burst_never_slows_another(guarded):
    auth = {"authorization": "Bearer " + FRONT_DOOR_KEY}
    since = guarded.emu.request_count()

    def call(user: str) -> tuple[int, float, httpx.Headers, str]:
        started = time.monotonic()
        with httpx.Client(base_url=guarded.proxy_url, trust_env=False, timeout=30) as c:
            r = c.post(CHAT, json=PLAIN, headers={**auth, "x-memory-user-id": user})
        return r.status_code, time.monotonic() - started, r.headers, r.text

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        burst = [pool.submit(call, "burst-a") for _ in range(40)]
        time.sleep(0.05)
        calm = [call("calm-b") for _ in range(3)]
        results = [f.result() for f in burst]
    codes = sorted(code for code, *_ in results)
    assert codes.count(200) == 5 and codes.count(429) == 35, codes
    for code, _, headers, text in results:
        if code == 429:
            assert int(headers["retry-after"]) >= 1
            assert json.loads(text)["error"]["type"] == "rate_limit_error"
            seen("429", text)
    assert [code for code, *_ in calm] == [200, 200, 200], calm
    assert max(seconds for _, seconds, *_ in calm) < 3.0, [round(s, 2) for _, s, *_ in calm]
    assert guarded.emu.request_count() - since == 5 + 3, "refused requests must not reach LiteLLM"
    health = httpx.get(guarded.proxy_url + "/health", trust_env=False)
    assert health.status_code == 200  # never rate limited
    bad_input("requests over the per-client rate limit", 35)


# --- loopback only without front-door keys ----------------------------------------------------


def test_without_keys_the_proxy_refuses_any_host_but_loopback(stack, tmp_path):
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        config = tmp_path / f"open-{host.replace(':', '_')}.yaml"
        config.write_text(stack.config.read_text().replace("memory_proxy:\n", f"memory_proxy:\n  host: '{host}'\n", 1))
        line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if text.startswith("  host:"))
        checked = stack.cli("check", config=config, state=tmp_path / "state-check", timeout=60)
        seen("check (open host)", checked.stdout + checked.stderr)
        assert checked.returncode == 2, checked.stdout + checked.stderr
        assert f"{config}:{line}: memory_proxy.host" in checked.stderr and "api_keys" in checked.stderr
        assert "Traceback" not in checked.stderr
        up = stack.cli("up", "--detach", config=config, state=tmp_path / "state-up", timeout=60)
        assert up.returncode == 2 and "memory_proxy.host" in up.stderr, up.stdout + up.stderr
        assert not (tmp_path / "state-up" / "processes.json").exists()
        bad_input("non-loopback host without front-door keys")
    # The memory proxy itself refuses too (`--host` on its command line bypasses the config check).
    port = free_port()
    direct = subprocess.run([sys.executable, "-m", "memory_proxy", "--config", str(stack.config), "--state-dir",
                             str(tmp_path / "direct"), "--host", "0.0.0.0", "--port", str(port)],
                            cwd=ROOT, env=cli_env(**KEYS), capture_output=True, text=True, timeout=60)
    assert direct.returncode == 2 and "refusing to listen on 0.0.0.0" in direct.stderr, direct.stderr
    assert not port_taken(port)
    bad_input("non-loopback host without front-door keys")


def test_with_keys_a_wider_bind_is_allowed(stack, tmp_path):
    """The counterpart: with front-door keys, listening on all interfaces is accepted (and guarded)."""
    config = tmp_path / "wide.yaml"
    port = free_port()
    text = stack.config.read_text().replace("memory_proxy:\n",
                                            "memory_proxy:\n  api_keys: [os.environ/FAULTS_FRONT_KEY]\n", 1)
    config.write_text(text)
    proxy = start_direct(config, tmp_path / "wide-state", port, f"http://127.0.0.1:{stack.litellm_port}",
                         secret="s" * 32, extra_args=("--host", "0.0.0.0"))
    try:
        assert httpx.get(proxy.url + "/v1/models", trust_env=False).status_code == 401
    finally:
        proxy.stop()
