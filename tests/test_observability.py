"""Observability with the real parts, in both backends: the user's LiteLLM callbacks.

One stack per module, as in ``test_parity.py``: the emulator (provider + Supermemory), the
real ``litellm`` binary behind ``create_app`` (binary mode) and ``create_sdk_app`` in this
process (SDK mode), both from one config whose ``litellm_settings`` list a ``generic_api``
sink and a custom callback module beside the config file. Each mode has its own sink (an
HTTP receiver in this process) and its own custom-callback log file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from memory_proxy.app import create_app
from memory_proxy.config import parse_config
from memory_proxy.litellm_config import EGRESS_SECRET_ENV, build_litellm_config, egress_base, render
from tests.e2e.conftest import config_text
from tests.servers import ServerThread
from tests.test_parity import ENV, MASTER, MODES, SECRET, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = """litellm_settings:
  callbacks: ["generic_api", "custom_callbacks.handler"]
"""
CUSTOM_CALLBACKS = '''
import os
from litellm.integrations.custom_logger import CustomLogger


class Counter(CustomLogger):
    """Appends one line per finished call to $CALLBACK_LOG: which model group, success or failure."""

    def _write(self, kind, kwargs):
        group = (kwargs.get("standard_logging_object") or {}).get("model_group")
        with open(os.environ["CALLBACK_LOG"], "a") as out:
            out.write(f"{kind} {group}\\n")

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write("success", kwargs)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write("failure", kwargs)


handler = Counter()
'''


class Sink:
    """A ``generic_api`` endpoint: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                sink.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/log"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """Every logged call (LiteLLM posts batches as JSON arrays)."""
        return [e for body in self.bodies for e in (body if isinstance(body, list) else [body])]


@dataclass
class Stacks:
    emulator: str
    urls: dict[str, str]
    sinks: dict[str, Sink]
    callback_logs: dict[str, Path]
    apps: dict[str, object]


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("observability")
    (tmp / "custom_callbacks.py").write_text(CUSTOM_CALLBACKS)
    provider, supermemory, binary_port, litellm_port, sdk_port = (free_port() for _ in range(5))
    sinks = {mode: Sink() for mode in MODES}
    logs = {mode: tmp / f"callbacks-{mode}.log" for mode in MODES}
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(ENV, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MASTER_KEY=MASTER, **{EGRESS_SECRET_ENV: SECRET})
    config = parse_config(config_text(provider, supermemory, binary_port, litellm_port) + SETTINGS,
                          tmp / "config.yaml", env)
    generated = tmp / "state" / "litellm_config.yaml"  # in the state dir, as the launcher writes it
    generated.parent.mkdir()
    generated.write_text(render(build_litellm_config(config, egress_base(binary_port), env)))
    # What the launcher gives LiteLLM: the user's config directory on its import path.
    litellm_env = dict(env, GENERIC_LOGGER_ENDPOINT=sinks["binary"].url, DEFAULT_FLUSH_INTERVAL_SECONDS="1",
                       CALLBACK_LOG=str(logs["binary"]), PYTHONPATH=str(tmp))
    procs = []
    patch = pytest.MonkeyPatch()
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.emulator", "--port", str(provider), "--port", str(supermemory)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / "emulator.log", "w")))
        procs.append(subprocess.Popen(
            [str(Path(sys.executable).parent / "litellm"), "--config", str(generated), "--host", "127.0.0.1",
             "--port", str(litellm_port)],
            cwd=generated.parent, env=litellm_env, stdout=open(tmp / "litellm.log", "w"), stderr=subprocess.STDOUT))
        from memory_proxy.sdk_mode import _litellm, create_sdk_app

        # SDK mode's LiteLLM reads the same variables, from this process's environment.
        patch.setenv("GENERIC_LOGGER_ENDPOINT", sinks["sdk"].url)
        patch.setenv("CALLBACK_LOG", str(logs["sdk"]))
        patch.setattr(_litellm(), "DEFAULT_FLUSH_INTERVAL_SECONDS", 1)
        deadline = time.monotonic() + 120
        wait_http(f"http://127.0.0.1:{provider}/health/liveliness", deadline, procs[0])
        sdk_app = create_sdk_app(config, master_key=MASTER, egress_secret=SECRET, port=sdk_port,
                                 state_dir=tmp / "sdk-state", environ=env)
        binary_app = create_app(config, litellm_url=f"http://127.0.0.1:{litellm_port}", master_key=MASTER,
                                egress_secret=SECRET, state_dir=tmp / "binary-state")
        with ServerThread(sdk_app, port=sdk_port) as sdk_server:
            wait_http(f"http://127.0.0.1:{litellm_port}/health/readiness", deadline, procs[1])
            with ServerThread(binary_app, port=binary_port) as binary_server:
                yield Stacks(f"http://127.0.0.1:{provider}", {"binary": binary_server.url, "sdk": sdk_server.url},
                             sinks, logs, {"binary": binary_app, "sdk": sdk_app})
    finally:
        patch.undo()
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for sink in sinks.values():
            sink.server.shutdown()


def chat(url: str, model: str, *, stream: bool = False, client: str = "obs-test") -> httpx.Response:
    response = httpx.post(url + "/v1/chat/completions", timeout=60, headers={"x-memory-user-id": client},
                          json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    response.read()
    return response


def wait_for(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


TRAFFIC = [("gpt-4o-mini", False), ("gpt-4o-mini", True), ("memory/gpt-4o-mini", False)]


@pytest.mark.parametrize("mode", MODES)
def test_callbacks_fire_once_per_request(stacks, mode):
    sink, log = stacks.sinks[mode], stacks.callback_logs[mode]
    for model, stream in TRAFFIC:
        assert chat(stacks.urls[mode], model, stream=stream).status_code == 200
    wait_for(lambda: len(sink.events()) >= len(TRAFFIC), "the generic_api sink")
    wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= len(TRAFFIC), "the custom callback")
    time.sleep(2.5)  # two more flush intervals: anything logged twice would have arrived by now
    events = sink.events()
    assert sorted(e["model_group"] for e in events) == sorted(m for m, _ in TRAFFIC)
    assert all(e["status"] == "success" for e in events)
    assert len({e["id"] for e in events}) == len(TRAFFIC)
    assert sorted(log.read_text().splitlines()) == sorted(f"success {m}" for m, _ in TRAFFIC)
