"""Parity of the two backends for what leaves the proxy besides the answer: the user's LiteLLM
callbacks, Langfuse, the traces and the proxy's own usage callback, all at once.

One config for both backends (``support.stacks.both_backends``: the real ``litellm`` binary behind
``create_app``, and ``create_sdk_app`` in this process) lists a ``generic_api`` sink and
Langfuse as LiteLLM documents them (``callbacks: ["generic_api", "langfuse_otel"]``, the keys
and endpoints through ``os.environ/`` in ``environment_variables``), with tracing on (an
OTLP/HTTP collector in this process), message content switched on, and the usage record on.
Langfuse's stand-in is a second collector: ``langfuse_otel`` posts OTLP to
``$LANGFUSE_HOST/api/public/otel/v1/traces`` with Basic auth made of the two keys. Each backend
has its own sink and its own Langfuse stand-in.

Every request must reach each of them exactly once, and a sink or Langfuse that refuses
everything costs the others and the client nothing.
"""

from __future__ import annotations

import base64
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from memory_proxy.config.model import parse_config
from memory_proxy.server import tracing
from tests.support.configs import config_text
from tests.support.readiness import until
from tests.support.sinks import Collector, Sink
from tests.support.stacks import MODES, SECRET, both_backends, chain_env

PUBLIC, PRIVATE = "pk-lf-parity-public", "sk-lf-parity-secret-0123456789"
PROMPT = "quokka-prompt-text"
SETTINGS = """litellm_settings:
  callbacks: ["generic_api", "langfuse_otel"]
environment_variables:
  GENERIC_LOGGER_ENDPOINT: os.environ/PARITY_SINK
  LANGFUSE_PUBLIC_KEY: os.environ/PARITY_LANGFUSE_PUBLIC
  LANGFUSE_SECRET_KEY: os.environ/PARITY_LANGFUSE_SECRET
  LANGFUSE_HOST: os.environ/PARITY_LANGFUSE_HOST
"""
CAPTURE = "  otel: {capture_message_content: true}\n"  # under memory_proxy
TRAFFIC = [("gpt-4o-mini", False), ("gpt-4o-mini", True), ("memory/gpt-4o-mini", False)]


@dataclass
class Stacks:
    urls: dict[str, str]
    collector: Collector  # the proxy's traces and LiteLLM's `otel` spans, both backends
    sinks: dict[str, Sink]  # generic_api, per backend
    langfuse: dict[str, Collector]  # Langfuse's stand-in, per backend
    litellm_log: Path


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parity-callbacks")
    collector, sinks, langfuse = Collector(), {m: Sink() for m in MODES}, {m: Collector() for m in MODES}
    env = chain_env(OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="200",
                    PARITY_LANGFUSE_PUBLIC=PUBLIC, PARITY_LANGFUSE_SECRET=PRIVATE,
                    PARITY_SINK=sinks["sdk"].url, PARITY_LANGFUSE_HOST=langfuse["sdk"].url)
    configs = []

    def config_for(ports):
        text = config_text(ports.provider, ports.supermemory, ports.binary, ports.litellm, CAPTURE) + SETTINGS
        configs.append(parse_config(text, tmp / "config.yaml", env))
        return configs[0]

    def litellm_env(generated):  # what the launcher adds, and this backend's own sinks
        return {**tracing.litellm_setup(generated, configs[0], env),
                "PARITY_SINK": sinks["binary"].url, "PARITY_LANGFUSE_HOST": langfuse["binary"].url}

    def before_sdk():
        from memory_proxy.sdk.backend import _litellm

        patch.setattr(_litellm(), "DEFAULT_FLUSH_INTERVAL_SECONDS", 1)

    patch = pytest.MonkeyPatch()
    patch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # the batch processors of this process (SDK mode)
    try:
        with both_backends(tmp, env, config_for, litellm_env=litellm_env, before_sdk=before_sdk) as backends:
            yield Stacks(backends.urls, collector, sinks, langfuse, tmp / "litellm.log")
    finally:
        patch.undo()
        for receiver in (collector, *sinks.values(), *langfuse.values()):
            receiver.close()


def chat(url: str, model: str, client: str, *, stream: bool = False) -> str:
    response = httpx.post(url + "/v1/chat/completions", timeout=60, headers={"x-memory-user-id": client},
                          json={"model": model, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]})
    response.read()
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


wait_for = functools.partial(until, timeout=60, every=0.1)


def tokens(url: str, client: str) -> dict[str, float]:
    """The proxy's token counters for ``client`` (fed by its own usage callback only)."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == "memory_proxy_tokens_total" and s.labels.get("client") == client:
                found[s.labels["kind"]] = found.get(s.labels["kind"], 0) + s.value
    return found


def generations(langfuse: Collector, trace_ids: set[str]) -> list:
    return [s for s in langfuse.spans if s.name == "litellm_request" and s.trace_id in trace_ids]


@pytest.mark.parametrize("mode", MODES)
def test_every_sink_gets_each_request_once(stacks, mode):
    url, client = stacks.urls[mode], f"callbacks-{mode}"
    sink, langfuse, collector = stacks.sinks[mode], stacks.langfuse[mode], stacks.collector
    ids = [chat(url, model, client, stream=stream) for model, stream in TRAFFIC]

    def mine(events):
        return [e for e in events if e.get("litellm_call_id") in ids]

    def roots():
        return {rid: collector.trace_of(rid) for rid in ids}

    # LiteLLM's spans; the binary's proxy spans too, though langfuse_otel is listed before otel
    expected = {"litellm_request"} | ({"Received Proxy Server Request"} if mode == "binary" else set())

    def traced():
        return all(expected <= {s.name for s in spans} for spans in roots().values())

    wait_for(lambda: len(mine(sink.events())) >= len(ids), "the generic_api sink")
    wait_for(traced, "the traces, LiteLLM's spans in them")
    trace_ids = {spans[0].trace_id for spans in roots().values()}
    wait_for(lambda: len(generations(langfuse, trace_ids)) >= len(ids), "Langfuse's generations")
    events = mine(sink.events())
    wait_for(lambda: tokens(url, client).get("output", 0) >= sum(e["completion_tokens"] for e in events),
             "the usage callback's token counts")
    time.sleep(2.5)  # two more flush intervals: anything sent twice would have arrived by now

    # generic_api: one event per request, as LiteLLM logs it, and never the proxy's secret
    events = mine(sink.events())
    assert sorted(e["litellm_call_id"] for e in events) == sorted(ids)  # our request ids
    assert sorted(e["model_group"] for e in events) == sorted(m for m, _ in TRAFFIC)
    assert all(e["status"] == "success" for e in events)
    assert SECRET not in repr(sink.headers)  # the usage callback is a logger of its own
    # the proxy's usage callback, beside it: the same tokens, counted once
    counted = tokens(url, client)
    assert counted.get("output") == sum(e["completion_tokens"] for e in events)
    assert counted.get("input") == sum(e["prompt_tokens"] for e in events)
    # Langfuse: one generation per request, in the request's trace, with the keys as Basic auth
    found = generations(langfuse, trace_ids)
    assert sorted(s.trace_id for s in found) == sorted(trace_ids)
    auth = "Basic " + base64.b64encode(f"{PUBLIC}:{PRIVATE}".encode()).decode()
    assert {s.path for s in found} == {"/api/public/otel/v1/traces"}
    assert all(s.headers["authorization"] == auth for s in found)
    assert all(PROMPT in repr(s.attributes) for s in found)  # what Langfuse is for: the prompt
    # one trace per request: the proxy's server span at the root, LiteLLM's spans and the egress under it
    for rid, spans in roots().items():
        [server] = [s for s in spans if s.attributes.get("memory_proxy.request_id") == rid]
        assert server.parent_id == "" and server.attributes["memory_proxy.backend"] == mode
        [call] = [s for s in spans if s.name == "litellm_request"]
        litellm_ids = {s.span_id for s in spans if s.service == tracing.LITELLM_SERVICE}
        assert call.service == tracing.LITELLM_SERVICE
        assert all(s.parent_id == server.span_id for s in spans
                   if s.service == tracing.LITELLM_SERVICE and s.parent_id not in litellm_ids)
        assert PROMPT in repr(call.attributes)  # capture_message_content: true, in LiteLLM's spans only
        own = [s for s in spans if s.service == tracing.DEFAULT_SERVICE]
        assert PROMPT not in repr([s.attributes for s in own])
        backed = server.attributes["gen_ai.request.model"].startswith("memory/")
        assert [s.name for s in own if s.name == "POST supermemory"] == (["POST supermemory"] if backed else [])
    # no secret in the proxy's spans, its metrics, or LiteLLM's log
    assert PRIVATE not in repr([s.attributes for s in collector.spans])
    assert PRIVATE not in httpx.get(url + "/metrics", timeout=10).text
    if mode == "binary":
        assert PRIVATE not in stacks.litellm_log.read_text() and SECRET not in stacks.litellm_log.read_text()


@pytest.mark.parametrize("mode", MODES)
def test_a_refusing_sink_costs_the_others_nothing(stacks, mode):
    """The generic_api sink answers 500 and Langfuse 503 to everything: every request is still
    answered, traced in full and counted by the usage callback."""
    url, client = stacks.urls[mode], f"refused-{mode}"
    sink, langfuse = stacks.sinks[mode], stacks.langfuse[mode]
    sink.fail_with, langfuse.fail_with = 500, 503
    try:
        ids = [chat(url, model, client, stream=stream) for model, stream in TRAFFIC]
        wait_for(lambda: all(any(s.name == "litellm_request" for s in stacks.collector.trace_of(rid)) for rid in ids),
                 "the traces")
        wait_for(lambda: sink.refused >= 1 and langfuse.refused >= 1, "the refusals")
        wait_for(lambda: tokens(url, client).get("output", 0) > 0, "the usage callback")
    finally:
        sink.fail_with = langfuse.fail_with = None
    assert not [e for e in sink.events() if e.get("litellm_call_id") in ids]
