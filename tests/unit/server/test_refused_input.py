"""What a request the front door refuses can still do: nothing to the log's lines, the
metrics' series or the process's memory; the dashboard's login and cookie refuse odd input with
JSON errors."""

from __future__ import annotations

import logging

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import raw_http, running_proxy

FRONT_KEY = "front-door-key-0123456789"  # support.servers.proxy_config's FRONT_KEY
KEYED = "  api_keys: [os.environ/FRONT_KEY]\n"


def test_a_refused_path_is_logged_as_sent_not_decoded(emu, caplog):
    forged = "/x%0a2026-12-07%2011:09:00,000%20INFO%20memory_proxy:%20client=admin%20POST%20/v1/chat/completions"
    with caplog.at_level(logging.INFO, logger="memory_proxy"), running_proxy(emu.url) as proxy:
        status, _ = raw_http(proxy.port, f"POST {forged} HTTP/1.1", {})
    assert status == 404
    lines = [r.getMessage() for r in caplog.records if r.name == "memory_proxy"]
    assert any(forged in line for line in lines), lines
    assert not any("\n" in line for line in lines)


def test_refused_paths_share_one_route_label(emu):
    with running_proxy(emu.url) as proxy:
        for i in range(30):
            assert httpx.get(f"{proxy.url}/junk-{i}").status_code == 404
        assert httpx.post(proxy.url + "/v1/chat/completions", json={"model": "mem"}).status_code < 500
        text = httpx.get(proxy.url + "/metrics").text
    routes = {s.labels["route"] for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "memory_proxy_requests_total"}
    assert routes == {"other", "chat/completions"}


def test_the_dashboard_login_reads_a_small_body_only(emu):
    with running_proxy(emu.url, extra=KEYED) as proxy:
        url = proxy.url + "/ui/api/login"
        too_big = httpx.post(url, content=b'{"key": "' + b"k" * 100_000 + b'"}',
                             headers={"content-type": "application/json"})
        assert too_big.status_code == 413 and too_big.json()["error"]["message"].startswith("a login body")
        assert httpx.post(url, json={"key": "wrong-key-0123456789"}).status_code == 401
        assert httpx.post(url, json={"key": FRONT_KEY}).status_code == 200


def test_a_cookie_that_is_not_ascii_is_refused_with_json(emu):
    with running_proxy(emu.url, extra=KEYED) as proxy:
        status, answer = raw_http(proxy.port, "GET /ui/api/status HTTP/1.1", {"cookie": "memory_proxy_ui=\xe9abc"})
    assert status == 401, answer
    assert b'"error"' in answer and b"application/json" in answer.lower()
