"""Traces through the real chain: an OTLP/HTTP receiver in this process (protobuf decoded with
opentelemetry-proto) gets, for one request, one trace holding the memory proxy's server span,
LiteLLM's spans (the real ``litellm`` binary with the ``otel`` callback the launcher switches
on; in SDK mode that logger in-process) and the egress's Supermemory span, with the right
parents and no message text; a dead collector costs no request."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from memory_proxy.config.model import parse_config
from memory_proxy.server import tracing
from memory_proxy.server.app import create_app
from tests.support.configs import config_text
from tests.support.ports import free_port
from tests.support.servers import ServerThread
from tests.support.sinks import Collector
from tests.support.stacks import MASTER, MODES, SECRET, both_backends, chain_env
from tests.test_observability import chat, scrape, wait_for

PROMPT = "zebra-prompt-text"


@dataclass
class Stacks:
    urls: dict[str, str]
    collector: Collector


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracing")
    collector = Collector()
    env = chain_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="200")
    configs = []

    def config_for(ports):
        configs.append(parse_config(config_text(ports.provider, ports.supermemory, ports.binary, ports.litellm),
                                    tmp / "config.yaml", env))
        return configs[0]

    def litellm_env(generated):  # as the launcher does
        return tracing.litellm_setup(generated, configs[0], env)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # read by the BatchSpanProcessor in this process
            with both_backends(tmp, env, config_for, litellm_env=litellm_env) as backends:
                yield Stacks(backends.urls, collector)
    finally:
        collector.server.shutdown()


def one_request(url: str, model: str, *, stream: bool = False) -> str:
    response = httpx.post(url + "/v1/chat/completions", timeout=60, headers={"x-memory-user-id": "trace-test"},
                          json={"model": model, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
    response.read()
    assert response.status_code == 200
    return response.headers["x-request-id"]


@pytest.mark.parametrize("mode", MODES)
def test_one_trace_across_the_chain(stacks, mode):
    collector = stacks.collector
    request_id = one_request(stacks.urls[mode], "memory/gpt-4o-mini")

    def complete() -> bool:
        """Every span of the trace is in (LiteLLM exports its own in batches, in any order)."""
        spans = collector.trace_of(request_id)
        ids = {s.span_id for s in spans}
        return ("litellm_request" in {s.name for s in spans} and any(s.name == "POST supermemory" for s in spans)
                and all(s.parent_id in ids or s.parent_id == "" for s in spans))

    wait_for(complete, "the request's spans")
    spans = collector.trace_of(request_id)
    [server] = [s for s in spans if s.attributes.get("memory_proxy.request_id") == request_id]
    assert server.parent_id == "" and server.kind == 2  # SPAN_KIND_SERVER, the root
    assert server.name == "POST chat/completions"
    assert {k: server.attributes[k] for k in ("memory_proxy.client_id", "memory_proxy.client_id_source",
                                               "http.response.status_code", "gen_ai.request.model",
                                               "gen_ai.operation.name", "memory_proxy.streamed",
                                               "memory_proxy.backend")} == {
        "memory_proxy.client_id": "trace-test", "memory_proxy.client_id_source": "custom_header",
        "http.response.status_code": 200, "gen_ai.request.model": "memory/gpt-4o-mini",
        "gen_ai.operation.name": "chat", "memory_proxy.streamed": False, "memory_proxy.backend": mode}
    [egress] = [s for s in spans if s.name == "POST supermemory"]
    assert egress.kind == 3 and egress.parent_id == server.span_id  # SPAN_KIND_CLIENT under ours
    assert egress.attributes["memory_proxy.client_id"] == "trace-test"
    assert egress.attributes["supermemory.memory_added"] is True
    litellm_spans = [s for s in spans if s.service == "litellm"]  # the binary's, or in-process in SDK mode
    ids = {s.span_id for s in litellm_spans}
    tops = [s for s in litellm_spans if s.parent_id not in ids]
    assert tops and all(s.parent_id == server.span_id for s in tops)  # LiteLLM's spans hang under ours
    assert "litellm_request" in {s.name for s in litellm_spans}  # its model call, in the same trace
    assert PROMPT not in repr([s.attributes for s in spans])  # message content is off by default


def test_streamed_request_records_time_to_first_event(stacks):
    collector = stacks.collector
    request_id = one_request(stacks.urls["binary"], "gpt-4o-mini", stream=True)
    wait_for(lambda: any(s.service == tracing.DEFAULT_SERVICE for s in collector.trace_of(request_id)), "the span")
    [server] = [s for s in collector.trace_of(request_id) if s.service == tracing.DEFAULT_SERVICE]
    assert server.attributes["memory_proxy.streamed"] is True
    assert server.attributes["memory_proxy.time_to_first_event_s"] > 0


def test_a_dead_collector_costs_no_request(tmp_path, caplog):
    """The collector's port is closed: every request is answered; the failure is logged once and counted."""
    from tests import emulator

    dead = f"http://127.0.0.1:{free_port()}"
    config = parse_config("model_list:\n  - model_name: gpt-4o-mini\n    litellm_params: {model: openai/gpt-4o-mini}\n"
                          f"memory_proxy:\n  otel: {{endpoint: '{dead}'}}\n", tmp_path / "config.yaml", {})
    with ServerThread(emulator.create_app()) as litellm:  # the emulator answers as LiteLLM would
        app = create_app(config, litellm_url=litellm.url, master_key=MASTER, egress_secret=SECRET, environ={})
        with pytest.MonkeyPatch.context() as patch:  # read by the SDK's processor and exporter
            patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
            patch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
            with ServerThread(app) as proxy:
                for _ in range(3):
                    assert chat(proxy.url, "gpt-4o-mini").status_code == 200
                wait_for(lambda: scrape(proxy.url).get(("memory_proxy_trace_export_failures_total", ()), 0) >= 1,
                         "a counted export failure")
                for _ in range(3):
                    assert chat(proxy.url, "gpt-4o-mini").status_code == 200
                wait_for(lambda: scrape(proxy.url).get(("memory_proxy_trace_export_failures_total", ()), 0) >= 2,
                         "a second counted export failure")
    warnings = [r for r in caplog.records if "could not export traces" in r.getMessage()]
    assert len(warnings) == 1 and dead in warnings[0].getMessage()


def test_tracing_off_without_settings():
    config = parse_config("model_list: []\n", Path("c.yaml"), {})
    assert tracing.settings(config, {}) is None
    assert tracing.settings(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/",
                                     "OTEL_SDK_DISABLED": "true"}) is None
    found = tracing.settings(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"})
    assert found.traces_endpoint == "http://c:4318/v1/traces" and found.service_name == tracing.DEFAULT_SERVICE
    found = tracing.settings(config, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/t",
                                      "OTEL_SERVICE_NAME": "mine"})
    assert found.traces_endpoint == "http://c:4318/t" and found.service_name == "mine"
    off = parse_config("model_list: []\nmemory_proxy:\n  otel: {enabled: false}\n", Path("c.yaml"), {})
    assert tracing.settings(off, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) is None
    generated = {"litellm_settings": {"callbacks": ["langfuse_otel", "otel"]}}
    env = tracing.litellm_setup(generated, config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert generated["litellm_settings"]["callbacks"] == ["otel", "langfuse_otel"]  # otel builds the proxy spans
    assert env["OTEL_ENDPOINT"] == "http://c:4318/v1/traces" and env["OTEL_EXPORTER"] == "otlp_http"
    assert env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] == "NO_CONTENT"
    assert tracing.litellm_setup({}, config, {}) == {}
