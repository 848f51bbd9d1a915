"""``/metrics`` after known traffic, parsed with prometheus_client's text parser, exact counts:
front-door refusals by reason (both backends), requests held while LiteLLM is down, the usage
store's queue and drops while it fails, LiteLLM's restarts from the launcher's record.

Binary mode runs ``create_app`` with the emulator answering as LiteLLM would (no LiteLLM
needed); SDK mode runs ``create_sdk_app`` with the emulator as the provider (``emu``, the
emulator in a thread, from tests/conftest.py). The model of these tests is
``test_observability.py::test_metrics_after_known_traffic``.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from memory_proxy.config.model import parse_config
from memory_proxy.server.app import create_app
from memory_proxy.server.front_door import REFUSAL_REASONS
from memory_proxy.state import StateDir
from tests import emulator
from tests.support import ROOT
from tests.support.configs import build_config, model
from tests.support.ports import free_port
from tests.support.readiness import until
from tests.support.servers import ServerThread

KEY = "front-door-key-for-metrics-0123"
MASTER, SECRET = "sk-metrics-master-" + "1" * 24, "metrics-egress-secret-0123456789"
ENV = {"OPENAI_API_KEY": "sk-metrics-openai", "FRONT_KEY": KEY}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def config_text(provider: str, port: int, extra: str = "") -> str:
    """One model on ``provider``; ``extra`` lines go under ``memory_proxy``."""
    return build_config([model("gpt-4o-mini", "openai/gpt-4o-mini", f"{provider}/v1")], proxy={"port": port},
                        extra=extra)


def scrape(url: str, **headers) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    response = httpx.get(url + "/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def refusals(samples: dict) -> dict[str, float]:
    return {dict(labels)["reason"]: value for (name, labels), value in samples.items()
            if name == "memory_proxy_refused_total"}


@pytest.fixture(params=["binary", pytest.param("sdk", marks=pytest.mark.litellm)])
def guarded(request, emu, tmp_path):
    """A proxy with front-door keys, small limits and a rate limit, in either backend."""
    port = free_port()
    extra = ("  api_keys: [os.environ/FRONT_KEY]\n  max_header_bytes: 2048\n  max_body_bytes: 1024\n"
             "  requests_per_minute: 2\n")
    config = parse_config(config_text(emu.url, port, extra), tmp_path / "config.yaml", ENV)
    if request.param == "sdk":
        from memory_proxy.sdk.app import create_sdk_app

        app = create_sdk_app(config, master_key=MASTER, egress_secret=SECRET, port=port, environ=ENV)
    else:  # the emulator answers as LiteLLM would
        app = create_app(config, litellm_url=emu.url, master_key=MASTER, egress_secret=SECRET, environ=ENV)
    with ServerThread(app, port=port) as server:
        yield server.url


def test_refusals_are_counted_by_reason(guarded):
    url, key = guarded, {"authorization": f"Bearer {KEY}"}
    assert refusals(scrape(url, **key)) == dict.fromkeys(REFUSAL_REASONS, 0)  # every reason, from the start

    def post(path="/v1/chat/completions", *, headers=None, **kwargs) -> int:
        return httpx.post(url + path, headers={**key, **(headers or {})}, timeout=30, **kwargs).status_code

    assert post(json=CHAT, headers={"host": "evil.example"}) == 403
    assert post(json=CHAT, headers={"origin": "https://evil.example"}) == 403
    assert httpx.request("PROPFIND", url + "/v1/models", headers=key).status_code == 405
    assert post(json=CHAT, headers={"x-padding": "p" * 3000}) == 431
    assert post(json=CHAT, headers={"authorization": "Bearer wrong"}) == 401
    assert httpx.get(url + "/metrics").status_code == 401  # the scrape needs a key too
    assert post("/v1/admin/keys", json={}) == 404
    assert post(json=CHAT, headers={"x-memory-user-id": "not a valid id!"}) == 400
    assert [post(json=CHAT, headers={"x-memory-user-id": "rate-limited"}) for _ in range(3)] == [200, 200, 429]
    assert post(json={**CHAT, "padding": "p" * 2000}, headers={"x-memory-user-id": "big"}) == 413
    assert post(content=b"{not json", headers={"content-type": "application/json", "x-memory-user-id": "j"}) == 400
    assert post(json=[1, 2], headers={"x-memory-user-id": "j"}) == 400
    assert refusals(scrape(url, **key)) == {
        "host_not_allowed": 1, "origin_not_allowed": 1, "method_not_allowed": 1, "headers_too_large": 1,
        "unauthorized": 2, "route_not_served": 1, "invalid_client_id": 1, "rate_limited": 1, "body_too_large": 1,
        "invalid_json": 2}


def test_held_requests_while_litellm_is_down(tmp_path):
    """Two requests find LiteLLM's port closed and wait: the gauge shows 2, then 0 once it is back."""
    litellm_port, port = free_port(), free_port()
    config = parse_config(config_text("http://127.0.0.1:9", port, "  startup_wait: 60\n"), tmp_path / "c.yaml", ENV)
    app = create_app(config, litellm_url=f"http://127.0.0.1:{litellm_port}", master_key=MASTER, egress_secret=SECRET,
                     environ={})
    answers: list[int] = []
    with ServerThread(app, port=port) as proxy:
        url = proxy.url
        waiting = [threading.Thread(target=lambda: answers.append(
            httpx.post(url + "/v1/chat/completions", json=CHAT, timeout=60).status_code)) for _ in range(2)]
        for thread in waiting:
            thread.start()
        held = until(lambda: (s := scrape(url)).get(("memory_proxy_held_requests", ())) == 2 and s, "two held")
        assert held[("memory_proxy_litellm_up", ())] == 0 and held[("memory_proxy_litellm_ready", ())] == 0
        with ServerThread(emulator.create_app(), port=litellm_port):  # LiteLLM is back
            for thread in waiting:
                thread.join(timeout=60)
            assert answers == [200, 200]
            after = scrape(url)
            assert after[("memory_proxy_held_requests", ())] == 0
            assert after[("memory_proxy_litellm_up", ())] == 1


def test_usage_queue_and_drops_while_the_store_fails(emu, tmp_path):
    """The usage store cannot be opened (its file is a folder): 15 records, room for 10 —
    10 wait, 5 are dropped, and every request is answered."""
    state = tmp_path / "state"
    (state / "usage.sqlite3").mkdir(parents=True)
    port = free_port()
    config = parse_config(config_text(emu.url, port, "  usage: {queue_size: 10}\n"), tmp_path / "c.yaml", ENV)
    app = create_app(config, litellm_url=emu.url, master_key=MASTER, egress_secret=SECRET, state_dir=state,
                     environ={})
    with ServerThread(app, port=port) as proxy:
        assert [httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30).status_code
                for _ in range(15)] == [200] * 15
        samples = until(lambda: (s := scrape(proxy.url)).get(("memory_proxy_usage_dropped_total", ())) == 5 and s,
                        "five dropped records")
        assert samples[("memory_proxy_usage_queue_depth", ())] == 10


def test_litellm_restarts_come_from_the_launchers_record(emu, tmp_path):
    from memory_proxy.launcher.record import RECORD_VERSION, write_record

    state = StateDir(tmp_path / "state")
    state.root.mkdir(parents=True)
    port = free_port()
    config = parse_config(config_text(emu.url, port, "  usage: {enabled: false}\n"), tmp_path / "c.yaml", ENV)
    app = create_app(config, litellm_url=emu.url, master_key=MASTER, egress_secret=SECRET, state_dir=state.root,
                     environ={})
    with ServerThread(app, port=port) as proxy:
        assert scrape(proxy.url)[("memory_proxy_litellm_restarts_total", ())] == 0  # no record yet
        write_record(state, {"version": RECORD_VERSION, "processes": {"litellm": {"pid": 1, "restarts": 3}}})
        samples = scrape(proxy.url)
        assert samples[("memory_proxy_litellm_restarts_total", ())] == 3
        assert ("memory_proxy_usage_queue_depth", ()) not in samples  # the usage record is off: no made-up 0


def test_every_exported_metric_is_documented(emu, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    port = free_port()
    config = parse_config(config_text(emu.url, port), tmp_path / "c.yaml", ENV)
    app = create_app(config, litellm_url=emu.url, master_key=MASTER, egress_secret=SECRET,
                     state_dir=tmp_path / "state", environ={})
    with ServerThread(app, port=port) as proxy:
        httpx.post(proxy.url + "/v1/chat/completions", json=CHAT, timeout=30)
        text = httpx.get(proxy.url + "/metrics", timeout=10).text
    doc = (ROOT / "docs" / "observability.md").read_text()
    for family in text_string_to_metric_families(text):
        if family.name.endswith("_created"):  # prometheus_client's creation timestamps of the counters
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"| `{name}`" in doc or f", `{name}` |" in doc, f"{name} is not in the table of docs/observability.md"
