"""The dashboard at /ui/: its JSON API, its key cookie, and the page in a real headless Chromium.

The emulator stands in for LiteLLM (as with ``up --litellm-url``), so the tokens come from
the ingress's record alone here; LiteLLM's half is tested in tests/e2e/test_usage.py.
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import running_proxy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FRONT_KEY = "front-door-key-0123456789"


def send_traffic(proxy) -> None:
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for client_id, n in (("dash-a", 3), ("dash-b", 2)):
            for _ in range(n):
                answer = client.post("/v1/chat/completions", headers={"x-memory-user-id": client_id,
                                                                      "authorization": f"Bearer {FRONT_KEY}"},
                                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200, answer.text
    runtime = proxy.server.config.app.state.runtime
    deadline = time.monotonic() + 10
    while runtime.usage.written < 5:
        assert time.monotonic() < deadline, runtime.usage.status()
        time.sleep(0.05)


@pytest.fixture
def dashboard(emu, tmp_path):
    with running_proxy(emu.url, state_dir=tmp_path / "state") as proxy:
        send_traffic(proxy)
        yield proxy


@pytest.fixture
def keyed_dashboard(emu, tmp_path):
    extra = "  api_keys: [os.environ/FRONT_KEY]"
    with running_proxy(emu.url, state_dir=tmp_path / "state", extra=extra) as proxy:
        send_traffic(proxy)
        yield proxy


def test_api_reports_the_traffic(dashboard):
    summary = httpx.get(dashboard.url + "/ui/api/summary", params={"range": "today"}).json()
    assert {r["key"]: (r["requests"], r["errors"]) for r in summary["rows"]} == {"dash-a": (3, 0), "dash-b": (2, 0)}
    assert summary["total"]["requests"] == 5
    series = httpx.get(dashboard.url + "/ui/api/timeseries", params={"range": "7d", "by": "client"}).json()
    assert series["period"] == "daily" and sum(p["requests"] for p in series["points"]) == 5
    latency = httpx.get(dashboard.url + "/ui/api/latency").json()
    assert [(r["key"], r["requests"]) for r in latency["rows"]] == [("gpt-4o-mini", 5)]
    assert latency["rows"][0]["p50_latency_ms"] > 0
    latest = httpx.get(dashboard.url + "/ui/api/requests", params={"limit": 3}).json()["rows"]
    assert len(latest) == 3 and all(r["status"] == 200 and r["api_shape"] == "openai_chat" for r in latest)
    assert httpx.get(dashboard.url + "/ui/api/status").json()["usage"]["written"] >= 5
    assert httpx.get(dashboard.url + "/ui/api/summary", params={"by": "colour"}).status_code == 400
    assert httpx.get(dashboard.url + "/ui/api/nothing").status_code == 404
    page = httpx.get(dashboard.url + "/ui/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(dashboard.url + "/ui", follow_redirects=False).headers["location"] == "/ui/"


def test_with_keys_the_page_asks_once_and_keeps_a_cookie(keyed_dashboard):
    url = keyed_dashboard.url
    assert httpx.get(url + "/ui/api/summary").status_code == 401
    assert httpx.post(url + "/ui/api/login", json={"key": "wrong-key-0123456789"}).status_code == 401
    with httpx.Client(base_url=url) as browser:
        login = browser.post("/ui/api/login", json={"key": FRONT_KEY})
        assert login.status_code == 200
        cookie = login.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/ui" in cookie
        assert FRONT_KEY not in cookie  # a token derived from the key, not the key
        assert browser.get("/ui/api/summary").json()["total"]["requests"] == 5
    bearer = httpx.get(url + "/ui/api/summary", headers={"authorization": f"Bearer {FRONT_KEY}"})
    assert bearer.status_code == 200


class _Dom(html.parser.HTMLParser):
    """What Chromium's --dump-dom printed: elements by their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict] = []
        self.elements: list[dict] = []

    def handle_starttag(self, tag, attrs):
        node = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(node)
        if tag not in ("br", "input", "meta", "link", "col", "img"):
            self.stack.append(node)

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for node in self.stack:
            node["text"] += data

    def find(self, **attrs) -> list[dict]:
        return [e for e in self.elements if all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]


def chromium(url: str, tmp_path: Path, screenshot: Path | None = None) -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: the dashboard is tested in a real browser")
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=8000",
            "--window-size=1280,1500"]
    argv += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_chromium_shows_cards_chart_latency_and_live_table(dashboard, tmp_path):
    dom = _Dom()
    dom.feed(chromium(dashboard.url + "/ui/", tmp_path))
    cards = {c["attrs"]["data-key"]: c for c in dom.elements if c["attrs"].get("class") == "card"}
    assert set(cards) == {"dash-a", "dash-b"}
    fields = {e["attrs"]["data-field"]: e["text"] for e in dom.elements if "data-field" in e["attrs"]}
    assert fields["requests"] in ("3", "2") and "requests" in cards["dash-a"]["text"]
    assert "3" in cards["dash-a"]["text"] and "2" in cards["dash-b"]["text"]
    bars = [e for e in dom.elements if e["tag"] == "rect" and e["attrs"].get("class") == "bar"]
    assert sum(int(b["attrs"]["data-requests"]) for b in bars) == 5
    assert {b["attrs"]["data-key"] for b in bars} == {"dash-a", "dash-b"}
    assert [e["attrs"]["data-model"] for e in dom.elements if e["attrs"].get("class") == "p50"] == ["gpt-4o-mini"]
    live = [e for e in dom.elements if e["tag"] == "tr" and "data-request-id" in e["attrs"]]
    assert sorted(r["attrs"]["data-client"] for r in live) == ["dash-a"] * 3 + ["dash-b"] * 2
    assert "store ok" in dom.find(id="store-status")[0]["text"]
    shot = tmp_path / "dashboard.png"
    chromium(dashboard.url + "/ui/", tmp_path, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_chromium_asks_for_the_key(keyed_dashboard, tmp_path):
    dom = _Dom()
    dom.feed(chromium(keyed_dashboard.url + "/ui/", tmp_path))
    (form,) = dom.find(id="login")
    assert "hidden" not in form["attrs"] and "enter one" in form["text"]
    assert "hidden" in dom.find(id="main")[0]["attrs"]
    assert not [e for e in dom.elements if e["attrs"].get("class") == "card"]
