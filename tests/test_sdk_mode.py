"""SDK mode on its own: the command-line entry, and what its lifespan does to LiteLLM's globals.

Parity with binary mode is tested in ``tests/test_parity.py``. Here the emulator runs in this
process on two ports serving one app (one state): providers on A, Supermemory on B.
"""

from __future__ import annotations

import json
import os
import signal
import time

import httpx
import pytest

from memory_proxy.config.model import parse_config
from tests import emulator
from tests.support import ROOT
from tests.support.configs import SUPERMEMORY_KEY, build_config, model
from tests.support.ports import free_port
from tests.support.readiness import until, wait_http
from tests.support.servers import ServerThread, raw_http
from tests.support.stacks import start_memory_proxy

SM_KEY = "sm-sdk-test-key"


@pytest.fixture(scope="module")
def emu():
    app = emulator.create_app(chunk_delay=0.01)
    with ServerThread(app) as providers, ServerThread(app) as supermemory:
        yield providers, supermemory


def config_text(providers: str, supermemory: str, port: int, extra: str = "") -> str:
    """Two models on the emulator, one Supermemory-backed; ``extra`` lines go under ``memory_proxy``."""
    return build_config([model("plain", "openai/gpt-4o-mini", f"{providers}/v1"),
                         model("memory", "openai/gpt-4o-mini", f"{supermemory}/v3/{providers}/v1")],
                        litellm_settings="{drop_params: true}", proxy={"port": port}, extra=extra,
                        supermemory={"base_url": supermemory, "api_key": SUPERMEMORY_KEY,
                                     "cloudflare_retry_delay": 0.05})


ENV = {"OPENAI_API_KEY": "sk-openai-sdk-test", "SUPERMEMORY_API_KEY": SM_KEY}


def test_command_line_entry_serves_and_keeps_cookies(emu, tmp_path):
    providers, supermemory = emu
    httpx.post(providers.url + "/_emulator/reset")
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(config_text(providers.url, supermemory.url, port))
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(ENV, PYTHONPATH=str(ROOT))
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)  # the entry point must set it itself
    proxy = start_memory_proxy(config, tmp_path / "state", port, env=env, module="memory_proxy.sdk",
                               log=tmp_path / "sdk.log", cwd=tmp_path, wait=False)
    proc, base = proxy.proc, proxy.url
    try:
        health = wait_http(base + "/health", timeout=120, ok=None, proc=proc, log=proxy.log, every=0.2)
        assert health.status_code == 200 and health.json()["litellm"]["backend"] == "sdk"
        # The same server settings as binary mode: the HTTP parser's refusals are JSON errors.
        status, answer = raw_http(port, "POST /v1/chat/completions HTTP/1.1", {"bad header": "x"})
        assert status == 400 and json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["message"], answer
        status, answer = raw_http(port, "GET /v1/models HTTP/1.1", {"x-pad": "a" * 70_000})
        assert status == 431 and b'"error"' in answer, answer[:300]
        for _ in range(2):
            r = httpx.post(base + "/v1/chat/completions", timeout=30, headers={"x-memory-user-id": "cli-test"},
                           json={"model": "memory", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
        r = httpx.post(base + "/v1/chat/completions", timeout=30,
                       json={"model": "plain", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.headers["x-supermemory-user-id"] == "default-dev"
        seen = httpx.get(providers.url + "/_emulator/requests").json()
        assert [s["headers"].get("x-sm-user-id") for s in seen] == ["cli-test", "cli-test", None]
        assert set(seen[1]["cookies"]) == {"cf_clearance", "__cf_bm"}  # the egress kept them
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    jar = json.loads((tmp_path / "state" / "supermemory_cookies.json").read_text())
    assert {c["name"] for c in jar["cookies"]} == {"cf_clearance", "__cf_bm"}  # saved at shutdown


def test_lifespan_sets_and_restores_litellm_globals(emu, tmp_path):
    from memory_proxy.sdk.app import create_sdk_app
    from memory_proxy.sdk.backend import _litellm

    litellm = _litellm()
    providers, supermemory = emu
    port = free_port()
    config = parse_config(config_text(providers.url, supermemory.url, port), tmp_path / "c.yaml", ENV)
    before = (litellm.aclient_session, litellm.drop_params)
    app = create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port,
                         environ=ENV)
    with ServerThread(app, port=port):
        runtime = app.state.runtime
        assert litellm.aclient_session is runtime.litellm
        assert litellm.drop_params is True  # litellm_settings applied, as the LiteLLM proxy does
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                       json={"model": "plain", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
    assert (litellm.aclient_session, litellm.drop_params) == before


def test_startup_warms_every_api_shape_in_process_without_calling_a_provider(emu, tmp_path, caplog):
    from memory_proxy.sdk.app import create_sdk_app

    providers, supermemory = emu
    httpx.post(providers.url + "/_emulator/reset")
    port = free_port()
    extra = model("claude", "anthropic/claude-3-5-haiku-latest", providers.url)
    text = config_text(providers.url, supermemory.url, port).replace("litellm_settings:", extra + "litellm_settings:")
    config = parse_config(text, tmp_path / "c.yaml", ENV)
    app = create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port, environ=ENV)
    caplog.set_level("INFO", logger="memory_proxy")
    with ServerThread(app, port=port):
        assert httpx.get(providers.url + "/_emulator/requests").json() == []  # no provider was called
        warmed = [r.getMessage() for r in caplog.records if "warmed LiteLLM" in r.getMessage()]
        assert len(warmed) == 1 and "for openai, anthropic (8 of 8 answered)" in warmed[0], warmed
        listing = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert [m["id"] for m in listing["data"]] == ["plain", "memory", "claude"]  # warm-up groups hidden
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["litellm"]["models"] == 3


def test_unknown_router_settings_are_ignored_not_fatal(emu, tmp_path, caplog):
    from memory_proxy.sdk.app import create_sdk_app

    providers, supermemory = emu
    port = free_port()
    extra = "router_settings: {num_retries: 0, no_such_router_setting: 1}"
    config = parse_config(config_text(providers.url, supermemory.url, port, extra), tmp_path / "c.yaml", ENV)
    app = create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port, environ=ENV)
    with ServerThread(app, port=port):
        assert app.state.sdk.router.num_retries == 0
        assert httpx.get(f"http://127.0.0.1:{port}/health").json()["litellm"]["models"] == 2
    assert "no_such_router_setting" in caplog.text


def test_streams_are_cut_at_the_total_timeout_in_both_formats(emu, tmp_path):
    """``memory_proxy.timeouts.total`` bounds an answer in SDK mode as in binary mode: a
    never-ending stream ends with an error event in its own format and LiteLLM's upstream
    request is closed."""
    from memory_proxy.sdk.app import create_sdk_app

    providers, supermemory = emu
    port = free_port()
    extra = "  timeouts: {read: 5, total: 1.5}"
    config = parse_config(config_text(providers.url, supermemory.url, port, extra), tmp_path / "c.yaml", ENV)
    app = create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port, environ=ENV)
    base = f"http://127.0.0.1:{port}"
    with ServerThread(app, port=port):
        for path, body, error_line in (
            ("/v1/chat/completions", {"model": "plain", "stream": True,
                                      "messages": [{"role": "user", "content": "hi"}]}, b'data: {"error"'),
            ("/v1/messages", {"model": "plain", "stream": True, "max_tokens": 50,
                              "messages": [{"role": "user", "content": "hi"}]}, b"event: error"),
        ):
            armed = httpx.post(providers.url + "/_emulator/faults",
                               json={"mode": "endless_stream", "count": 1, "delay": 0.05})
            assert armed.status_code == 200, armed.text
            started = time.monotonic()
            r = httpx.post(base + path, json=body, timeout=30)
            seconds = time.monotonic() - started
            assert r.status_code == 200, r.text
            assert 1.4 <= seconds < 5, f"{path}: cut after {seconds:.1f} s"
            last = r.content.rstrip().split(b"\n\n")[-1]
            assert r.content.count(b"tick") > 10 and last.startswith(error_line) and b"timeouts.total" in last, last
            deadline = time.monotonic() + 5
            while httpx.get(providers.url + "/_emulator/stats").json()["active_streams"]:
                assert time.monotonic() < deadline, "the endless upstream stream was not closed"
                time.sleep(0.05)


def test_usage_record_in_sdk_mode(emu, tmp_path):
    """SDK mode's in-process LiteLLM callback fills the same record as binary mode's generic_api."""
    import sqlite3

    from memory_proxy.sdk.app import create_sdk_app
    from memory_proxy.sdk.backend import _litellm

    providers, supermemory = emu
    port = free_port()
    config = parse_config(config_text(providers.url, supermemory.url, port), tmp_path / "c.yaml", ENV)
    callbacks = list(_litellm().callbacks)
    app = create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port,
                         environ=ENV, state_dir=tmp_path / "state")
    with ServerThread(app, port=port):
        base = f"http://127.0.0.1:{port}/v1/chat/completions"
        plain = httpx.post(base, timeout=30, headers={"x-memory-user-id": "sdk-a"},
                           json={"model": "plain", "messages": [{"role": "user", "content": "four words right here"}]})
        streamed = httpx.post(base, timeout=30, headers={"x-memory-user-id": "sdk-b"},
                              json={"model": "memory", "stream": True,
                                    "messages": [{"role": "user", "content": "two words"}]})
        assert plain.status_code == streamed.status_code == 200
        usage = app.state.runtime.usage
        deadline = time.monotonic() + 20
        while usage.written < 5 and time.monotonic() < deadline:  # ingress, LiteLLM, LiteLLM, egress, ingress
            time.sleep(0.05)
    assert _litellm().callbacks == callbacks  # ours removed again
    db = sqlite3.connect(tmp_path / "state" / "usage.sqlite3")
    found = db.execute("SELECT client_id, status, streamed, supermemory, input_tokens, output_tokens, provider, "
                       "litellm_status, sm_chunks_created FROM usage_requests ORDER BY ts_ms").fetchall()
    assert found == [("sdk-a", 200, 0, 0, 4, 5, "openai", "success", None),
                     ("sdk-b", 200, 1, 1, 2, 3, "openai", "success", 1)]


def test_a_client_that_walks_away_gets_litellms_figures_as_in_binary_mode(emu, tmp_path):
    """A client that leaves a stream: LiteLLM's callbacks hear of the call as the LiteLLM proxy
    tells them (error code 499, what was streamed until then billed), so the record has the
    deployment, the tokens and the cost as in binary mode (tests/e2e/test_usage.py, both)."""
    import sqlite3

    from memory_proxy.sdk.app import create_sdk_app

    providers, supermemory = emu
    port = free_port()
    config = parse_config(config_text(providers.url, supermemory.url, port), tmp_path / "c.yaml", ENV)
    app = create_sdk_app(config, master_key="unused-master-key", egress_secret="s" * 32, port=port,
                         environ=ENV, state_dir=tmp_path / "state")
    with ServerThread(app, port=port):
        armed = httpx.post(providers.url + "/_emulator/faults", json={"mode": "endless_stream", "count": 1})
        assert armed.status_code == 200, armed.text
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                          headers={"x-memory-user-id": "sdk-gone"},
                          json={"model": "plain", "stream": True, "messages": [{"role": "user", "content": "go on"}]}
                          ) as gone:
            assert gone.status_code == 200
            next(gone.iter_raw())
        usage = app.state.runtime.usage
        until(lambda: usage.written == 2, "the ingress's part and LiteLLM's")
    db = sqlite3.connect(tmp_path / "state" / "usage.sqlite3")
    found = db.execute("SELECT client_id, status, completed, streamed, error_code, litellm_status, deployment, "
                       "provider, input_tokens, output_tokens, priced FROM usage_requests").fetchall()
    db.close()
    # "go on" is 9 prompt tokens in LiteLLM's count (the chat template's too); 2 output tokens
    # had been streamed when the client left
    assert found == [("sdk-gone", 200, 0, 1, "499", "success", "openai/gpt-4o-mini", "openai", 9, 2, 1)]


def test_usage_logger_is_removed_from_litellm_at_shutdown(emu, tmp_path):
    """A second app in the same process (tests, a restart in-process) gets its own figures."""
    from memory_proxy.sdk.backend import _litellm

    test_usage_record_in_sdk_mode(emu, tmp_path / "first")
    litellm = _litellm()
    assert not [c for c in litellm._async_success_callback if type(c).__name__ == "UsageLogger"]
    test_usage_record_in_sdk_mode(emu, tmp_path / "second")
