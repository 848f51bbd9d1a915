"""Observability with the real parts, in both backends: the user's LiteLLM callbacks.

One stack per module, as in ``test_parity.py``: the emulator (provider + Supermemory), the
real ``litellm`` binary behind ``create_app`` (binary mode) and ``create_sdk_app`` in this
process (SDK mode), both from one config whose ``litellm_settings`` list a ``generic_api``
sink and a custom callback module beside the config file. Each mode has its own sink (an
HTTP receiver in this process) and its own custom-callback log file.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from memory_proxy.config.model import parse_config
from tests.support.configs import config_text
from tests.support.ports import free_port
from tests.support.readiness import until
from tests.support.servers import ServerThread
from tests.support.sinks import Sink
from tests.support.stacks import MODES, ProxyProcess, both_backends, chain_env, start_memory_proxy

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
    sinks = {mode: Sink() for mode in MODES}
    logs = {mode: tmp / f"callbacks-{mode}.log" for mode in MODES}
    env = chain_env()

    def config_for(ports):
        return parse_config(config_text(ports.provider, ports.supermemory, ports.binary, ports.litellm) + SETTINGS,
                            tmp / "config.yaml", env)

    def litellm_env(generated):  # what the launcher gives LiteLLM: the config's directory on its import path
        return {"GENERIC_LOGGER_ENDPOINT": sinks["binary"].url, "DEFAULT_FLUSH_INTERVAL_SECONDS": "1",
                "CALLBACK_LOG": str(logs["binary"]), "PYTHONPATH": str(tmp)}

    patch = pytest.MonkeyPatch()
    # SDK mode's LiteLLM reads the same variables, from this process's environment.
    patch.setenv("GENERIC_LOGGER_ENDPOINT", sinks["sdk"].url)
    patch.setenv("CALLBACK_LOG", str(logs["sdk"]))

    def before_sdk():
        from memory_proxy.sdk.backend import _litellm

        patch.setattr(_litellm(), "DEFAULT_FLUSH_INTERVAL_SECONDS", 1)

    try:
        with both_backends(tmp, env, config_for, litellm_env=litellm_env, before_sdk=before_sdk) as backends:
            yield Stacks(backends.emulator, backends.urls, sinks, logs, backends.apps)
    finally:
        patch.undo()
        for sink in sinks.values():
            sink.server.shutdown()


def chat(url: str, model: str, *, stream: bool = False, client: str = "obs-test") -> httpx.Response:
    response = httpx.post(url + "/v1/chat/completions", timeout=60, headers={"x-memory-user-id": client},
                          json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    response.read()
    return response


wait_for = functools.partial(until, timeout=30, every=0.1)


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


# --- GET /metrics --------------------------------------------------------------------------


def scrape(url: str, **headers) -> dict[tuple, float]:
    """``/metrics`` parsed with prometheus_client's own text parser: (sample, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def runtime_of(app):
    return app.state.runtime


@pytest.mark.parametrize("mode", MODES)
def test_metrics_after_known_traffic(stacks, mode):
    url, client = stacks.urls[mode], f"metrics-{mode}"
    before = scrape(url)
    plain = {"model": "gpt-4o-mini", "route": "chat/completions"}
    backed = {"model": "memory/gpt-4o-mini", "route": "chat/completions"}
    for model, stream in [("gpt-4o-mini", False), ("gpt-4o-mini", False), ("gpt-4o-mini", True),
                          ("memory/gpt-4o-mini", False)]:
        assert chat(url, model, stream=stream, client=client).status_code == 200
    httpx.post(stacks.emulator + "/_emulator/faults", json={"mode": "memory_error", "count": 1})
    assert chat(url, "memory/gpt-4o-mini", client=client).status_code == 200  # answered, memory not added
    httpx.post(stacks.emulator + "/_emulator/cloudflare", json={"refuse_next": 1})
    assert chat(url, "memory/gpt-4o-mini", client=client).status_code == 200  # refused once, retried
    assert chat(url, "not-a-model", client=client).status_code == 400
    assert httpx.get(url + "/v1/models", headers={"x-memory-user-id": client}).status_code == 200
    after = scrape(url)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    requests = "memory_proxy_requests_total"
    assert sample(after, requests, client=client, status_class="2xx", **plain) == 3
    assert sample(after, requests, client=client, status_class="2xx", **backed) == 3
    assert sample(after, requests, client=client, model="other", route="chat/completions", status_class="4xx") == 1
    assert sample(after, requests, client=client, model="none", route="models", status_class="2xx") == 1
    assert sum(v for (name, labels), v in after.items()
               if name == requests and ("client", client) in labels) == 8
    errors = "memory_proxy_request_errors_total"
    assert sum(v for (name, labels), v in after.items() if name == errors and ("client", client) in labels) == 1
    assert sample(after, errors, client=client, model="other", route="chat/completions", status_class="4xx") == 1
    assert delta("memory_proxy_request_duration_seconds_count", **plain) == 3
    assert delta("memory_proxy_request_duration_seconds_count", **backed) == 3
    assert delta("memory_proxy_time_to_first_event_seconds_count", **plain) == 1
    assert delta("memory_proxy_time_to_first_event_seconds_count", **backed) == 0
    assert delta("memory_proxy_supermemory_errors_total") == 1
    assert delta("memory_proxy_cloudflare_retries_total") == 1
    assert sample(after, "memory_proxy_litellm_up") == 1 and sample(after, "memory_proxy_litellm_ready") == 1
    # The inputs are read at scrape time: nothing held now; held requests show while they wait.
    assert sample(after, "memory_proxy_held_requests") == 0
    metrics = runtime_of(stacks.apps[mode]).metrics
    saved = dict(metrics.inputs)
    metrics.inputs.update(held_requests=lambda: 2, litellm_restarts=lambda: 1)
    try:
        wired = scrape(url)
    finally:
        metrics.inputs.clear()
        metrics.inputs.update(saved)
    assert sample(wired, "memory_proxy_held_requests") == 2
    assert sample(wired, "memory_proxy_litellm_restarts_total") == 1


@pytest.mark.parametrize("mode", MODES)
def test_metrics_path_is_the_proxys_own(stacks, mode):
    url = stacks.urls[mode]
    refused = httpx.post(url + "/metrics", json={})
    assert refused.status_code == 405 and refused.json()["error"]
    assert httpx.get(url + "/metrics", headers={"origin": "https://evil.example"}).status_code == 403


# --- structured logs -----------------------------------------------------------------------


def run_proxy_process(tmp_path: Path, litellm_url: str, log_format: str | None) -> ProxyProcess:
    """``python -m memory_proxy`` as the launcher starts it."""
    port = free_port()
    line = f"  log_format: {log_format}\n" if log_format else ""
    (tmp_path / "config.yaml").write_text(
        f"model_list:\n  - model_name: gpt-4o-mini\n    litellm_params: {{model: openai/gpt-4o-mini}}\n"
        f"memory_proxy:\n  port: {port}\n{line}")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return start_memory_proxy(tmp_path / "config.yaml", tmp_path / "state", port, "--litellm-url", litellm_url,
                              env=env, log=tmp_path / "memory_proxy.log")


def stop(proxy: ProxyProcess) -> list[str]:
    """Stops it; returns the lines of its log."""
    proxy.stop()
    return proxy.log.read_text().splitlines()


@pytest.mark.parametrize("log_format", ["json", None])
def test_request_log_line(tmp_path, log_format):
    from tests import emulator

    with ServerThread(emulator.create_app()) as litellm:  # the emulator answers as LiteLLM would
        proxy = run_proxy_process(tmp_path, litellm.url, log_format)
        try:
            answer = chat(proxy.url, "gpt-4o-mini", client="log-test")
        finally:
            lines = stop(proxy)
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    if log_format is None:  # the text line, as it always was
        [line] = [line for line in lines if "client=log-test" in line]
        assert " INFO memory_proxy: client=log-test POST /v1/chat/completions -> 200 " in line
        assert line.endswith(" ms")
        return
    records = [json.loads(line) for line in lines]  # every line is one JSON object, uvicorn's too
    [record] = [r for r in records if r.get("request_id") == request_id]
    assert record["time"].endswith("Z") and record["level"] == "INFO" and record["logger"] == "memory_proxy"
    assert {k: record[k] for k in ("client_id", "resolved_by", "method", "path", "status", "model", "streamed",
                                   "completed", "backend")} == {
        "client_id": "log-test", "resolved_by": "custom_header", "method": "POST", "path": "/v1/chat/completions",
        "status": 200, "model": "gpt-4o-mini", "streamed": False, "completed": True, "backend": "binary"}
    assert record["duration_ms"] >= 0 and "messages" not in record  # no prompt text in the log
