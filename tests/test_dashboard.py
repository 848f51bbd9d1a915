"""The dashboard at /ui/: its JSON API, its key cookie, and the page in a real headless Chromium.

The emulator stands in for LiteLLM (as with ``up --litellm-url``), so for the page's figures the
test plays LiteLLM's two other parts of a record through the app's own paths, as the real binary
does (tests/e2e/test_usage.py runs it): the usage callback's payloads to ``/_usage/litellm``
(tokens, cost, a model without a price, a failure) and the call to the egress for the
Supermemory-backed model (its ``x-supermemory-error`` when Supermemory could not add memory).
"""

from __future__ import annotations

import contextlib
import fcntl
import html.parser
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from memory_proxy.config.litellm import EGRESS_PREFIX, USAGE_CALLBACK_PATH
from memory_proxy.server.headers import EGRESS_SECRET_HEADER, USER_ID_HEADER
from tests.support.servers import SECRET, running_proxy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FRONT_KEY = "front-door-key-0123456789"
MEMORY_FAULT = "Emulated fault: memory store unavailable"

# What the page must show for the traffic of send_known_traffic, per client: requests, errors,
# input / output / cache-read tokens, cost (n/a: a model without a price), memory errors.
EXPECTED = {
    "dash-a": {"requests": "3", "errors": "0", "input": "3,000", "output": "450", "cache-read": "600",
               "cost": "$0.0375", "memory-errors": "1"},
    "dash-b": {"requests": "3", "errors": "1", "input": "800", "output": "160", "cache-read": "0",
               "cost": "n/a", "memory-errors": "0"},
    "dash-c": {"requests": "1", "errors": "0", "input": "500", "output": "40", "cache-read": "0",
               "cost": "$0.0020", "memory-errors": "0"},
}


def wait_written(proxy, parts: int) -> None:
    """Until the writer has stored ``parts`` record parts (ingress, LiteLLM, egress each count)."""
    usage = proxy.server.config.app.state.runtime.usage
    deadline = time.monotonic() + 10
    while usage.written < parts or usage.waiting():
        assert time.monotonic() < deadline, usage.status()
        time.sleep(0.05)


def send_traffic(proxy) -> None:
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        for client_id, n in (("dash-a", 3), ("dash-b", 2)):
            for _ in range(n):
                answer = client.post("/v1/chat/completions", headers={"x-memory-user-id": client_id,
                                                                      "authorization": f"Bearer {FRONT_KEY}"},
                                     json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200, answer.text
    wait_written(proxy, 5)


class Litellm:
    """What the real LiteLLM adds to a request the ingress relayed, sent the way it sends it."""

    def __init__(self, proxy, emu) -> None:
        self.proxy, self.emu = proxy, emu
        self.client = httpx.Client(base_url=proxy.url, timeout=30)
        self.parts = 0  # record parts written: the ingress's, the callback's, the egress's

    def ask(self, client_id: str, model: str, *, status: int = 200, scope: bool = False) -> str:
        """A client's request through the front door; its request id."""
        path, headers = "/v1/chat/completions", {"authorization": f"Bearer {FRONT_KEY}"}
        if scope:
            path = f"/scope/{client_id}{path}"
        else:
            headers["x-memory-user-id"] = client_id
        answer = self.client.post(path, headers=headers,
                                  json={"model": model, "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == status, answer.text
        self.parts += 1
        return answer.headers["x-request-id"]

    def report(self, request_id: str, model_group: str, *, provider: str, model: str, prompt: int,
               completion: int, cached: int = 0, cost: float = 0.0, priced: bool = True,
               failure: bool = False) -> None:
        """LiteLLM's usage callback payload (a StandardLoggingPayload's figures) to the intake."""
        payload = {"id": f"chatcmpl-{request_id}", "litellm_call_id": request_id, "model_group": model_group,
                   "model": model, "custom_llm_provider": provider, "prompt_tokens": prompt,
                   "completion_tokens": completion, "response_cost": cost, "startTime": time.time(),
                   "status": "failure" if failure else "success",
                   "metadata": {"usage_object": {"prompt_tokens_details": {"cached_tokens": cached}}}}
        if priced:
            payload["model_map_information"] = {"model_map_value": {"input_cost_per_token": 1e-5,
                                                                     "output_cost_per_token": 3e-5}}
        if failure:
            payload["error_information"] = {"error_code": "500", "error_class": "InternalServerError"}
        answer = self.client.post(USAGE_CALLBACK_PATH, headers={EGRESS_SECRET_HEADER: SECRET}, json=[payload])
        assert answer.status_code == 204, answer.text
        self.parts += 1

    def egress(self, request_id: str, client_id: str, *, memory_error: bool = False) -> None:
        """LiteLLM's call to the Supermemory-backed model's api_base: the memory proxy's egress."""
        if memory_error:
            httpx.post(self.emu.url + "/_emulator/faults", json={"mode": "memory_error", "count": 1})
        answer = self.client.post(EGRESS_PREFIX + "/v3/http://provider/v1/chat/completions",
                                  headers={EGRESS_SECRET_HEADER: SECRET, USER_ID_HEADER: client_id,
                                           "x-request-id": request_id, "authorization": "Bearer k"},
                                  json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
        assert (answer.headers.get("x-supermemory-error") == MEMORY_FAULT) is memory_error
        self.parts += 1

    def memory_call(self, client_id: str, *, prompt: int, completion: int, cost: float, cached: int = 0,
                    scope: bool = False, memory_error: bool = False) -> str:
        """A priced call of the Supermemory-backed model ``mem`` (OpenAI's gpt-4o-mini behind it)."""
        request_id = self.ask(client_id, "mem", scope=scope)
        self.egress(request_id, client_id, memory_error=memory_error)
        self.report(request_id, "mem", provider="openai", model="gpt-4o-mini", prompt=prompt,
                    completion=completion, cached=cached, cost=cost)
        return request_id


def send_known_traffic(proxy, emu) -> Litellm:
    """Three clients, two models (one without a price), an error and a Supermemory error: EXPECTED."""
    litellm = Litellm(proxy, emu)
    for i in range(3):  # 1,000 input tokens left after the 200 cached ones
        litellm.memory_call("dash-a", prompt=1200, cached=200, completion=150, cost=0.0125, memory_error=i == 2)
    for _ in range(2):
        request_id = litellm.ask("dash-b", "local-llama")
        litellm.report(request_id, "local-llama", provider="ollama", model="llama3", prompt=400, completion=80,
                       priced=False)
    httpx.post(emu.url + "/_emulator/faults", json={"mode": "error_500", "count": 1})
    request_id = litellm.ask("dash-b", "local-llama", status=500)
    litellm.report(request_id, "local-llama", provider="ollama", model="llama3", prompt=0, completion=0,
                   priced=False, failure=True)
    litellm.memory_call("dash-c", prompt=500, completion=40, cost=0.002, scope=True)
    wait_written(proxy, litellm.parts)
    return litellm


@pytest.fixture
def dashboard(emu, tmp_path):
    with running_proxy(emu.url, state_dir=tmp_path / "state") as proxy:
        proxy.litellm = send_known_traffic(proxy, emu)
        yield proxy
        proxy.litellm.client.close()


@pytest.fixture
def keyed_dashboard(emu, tmp_path):
    extra = "  api_keys: [os.environ/FRONT_KEY]"
    with running_proxy(emu.url, state_dir=tmp_path / "state", extra=extra) as proxy:
        send_traffic(proxy)
        yield proxy


def test_api_reports_the_traffic(dashboard):
    summary = httpx.get(dashboard.url + "/ui/api/summary", params={"range": "today"}).json()
    rows = {r["key"]: r for r in summary["rows"]}
    assert {k: (r["requests"], r["errors"], r["input_tokens"], r["output_tokens"], r["cache_read_tokens"],
                r["cost_usd"], r["unpriced_requests"], r["memory_errors"]) for k, r in rows.items()} == {
        "dash-a": (3, 0, 3000, 450, 600, 0.0375, 0, 1), "dash-b": (3, 1, 800, 160, 0, 0.0, 3, 0),
        "dash-c": (1, 0, 500, 40, 0, 0.002, 0, 0)}
    assert summary["total"]["requests"] == 7 and summary["total"]["unpriced_requests"] == 3
    series = httpx.get(dashboard.url + "/ui/api/timeseries", params={"range": "7d", "by": "client"}).json()
    assert series["period"] == "daily"
    per_key = {}
    for p in series["points"]:
        per_key[p["key"]] = [a + b for a, b in zip(per_key.get(p["key"], [0, 0, 0, 0]), (
            p["requests"], p["errors"], p["cost_usd"], p["unpriced_requests"]), strict=True)]
    assert per_key == {"dash-a": [3, 0, 0.0375, 0], "dash-b": [3, 1, 0.0, 3], "dash-c": [1, 0, 0.002, 0]}
    latency = httpx.get(dashboard.url + "/ui/api/latency").json()
    assert [(r["key"], r["requests"]) for r in latency["rows"]] == [("mem", 4), ("local-llama", 3)]
    assert all(r["p50_latency_ms"] > 0 for r in latency["rows"])
    latest = httpx.get(dashboard.url + "/ui/api/requests", params={"limit": 3}).json()["rows"]
    assert [(r["client_id"], r["model_group"], r["status"], r["priced"]) for r in latest] == [
        ("dash-c", "mem", 200, 1), ("dash-b", "local-llama", 500, 0), ("dash-b", "local-llama", 200, 0)]
    assert httpx.get(dashboard.url + "/ui/api/status").json()["usage"]["written"] == dashboard.litellm.parts
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
        logout = browser.post("/ui/api/logout")
        assert logout.status_code == 200
        assert "Max-Age=0" in logout.headers["set-cookie"] and "Path=/ui" in logout.headers["set-cookie"]
        assert browser.get("/ui/api/summary").status_code == 401
    bearer = httpx.get(url + "/ui/api/summary", headers={"authorization": f"Bearer {FRONT_KEY}"})
    assert bearer.status_code == 200


class _Dom(html.parser.HTMLParser):
    """What Chromium's --dump-dom printed: elements by their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict] = []
        self.elements: list[dict] = []

    def handle_starttag(self, tag, attrs):
        node = {"tag": tag, "attrs": dict(attrs), "text": "", "parents": list(self.stack)}
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

    def classed(self, name: str, within: dict | None = None) -> list[dict]:
        """Elements with the class ``name``, inside ``within`` if given."""
        return [e for e in self.elements if name in e["attrs"].get("class", "").split()
                and (within is None or any(p is within for p in e["parents"]))]


def chromium_argv(tmp_path: Path) -> list[str]:
    """Debian's chromium, headless, with a profile of its own and nothing fetched from outside."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: the dashboard is tested in a real browser")
    return [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1280,1500"]


def chromium(url: str, tmp_path: Path, screenshot: Path | None = None) -> str:
    argv = chromium_argv(tmp_path) + ["--virtual-time-budget=8000"]
    argv += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    done = subprocess.run(argv + [url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class DevTools:
    """The same chromium driven over its DevTools pipe (``--remote-debugging-pipe``: JSON messages
    ending in NUL, which it reads on fd 3 and writes on fd 4), for what one ``--dump-dom`` cannot
    show: a page that stays open and changes by itself, in real time."""

    def __init__(self, tmp_path: Path) -> None:
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        # Above 9, so that "3<&N 4>&M" cannot overwrite one with the other (bash: dash takes one digit).
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser, from_browser)]
        os.close(to_browser)
        os.close(from_browser)
        self.log = tmp_path / "chromium.log"  # a file, not a pipe nobody reads while it runs
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", f'exec "$0" "$@" 3<&{ends[0]} 4>&{ends[1]}', *chromium_argv(tmp_path),
                 "--remote-debugging-pipe", "about:blank"],
                pass_fds=ends, stdout=subprocess.DEVNULL, stderr=log)
        for fd in ends:
            os.close(fd)
        self._buffer = b""
        self._id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._id:
                    assert "error" not in answer, answer
                    return answer["result"]
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self._in], [], [], left)[0], f"chromium did not answer {method}"
            chunk = os.read(self._in, 1 << 20)
            assert chunk, f"chromium closed its pipe: {self.log.read_text(errors='replace')[-2000:]}"
            self._buffer += chunk

    def open(self, url: str) -> str:
        """A new tab at ``url``; its session."""
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        return self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]

    def evaluate(self, session: str, expression: str):
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def wait_for(self, session: str, expression: str, seconds: float = 10) -> None:
        """Until ``expression`` is true in the page; false while it throws (a new tab may not
        have a document.body yet when the first check runs)."""
        deadline = time.monotonic() + seconds
        while not self.evaluate(session, f"(() => {{ try {{ return Boolean({expression}); }} "
                                         f"catch (e) {{ return false; }} }})()"):
            assert time.monotonic() < deadline, f"never true in the page: {expression}"
            time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._out)
        os.close(self._in)


def by_key(elements: list[dict], value=lambda e: 1) -> dict[str, float]:
    """``value`` of the elements summed per their data-key (one hour's or day's figures each)."""
    sums: dict[str, float] = {}
    for e in elements:
        sums[e["attrs"]["data-key"]] = sums.get(e["attrs"]["data-key"], 0) + value(e)
    return sums


def test_chromium_shows_charts_latency_cards_and_live_table(dashboard, tmp_path):
    dom = _Dom()
    dom.feed(chromium(dashboard.url + "/ui/", tmp_path))
    assert dom.find(id="main")[0]["attrs"].get("hidden") is None
    # Pictures first: the two over-time charts and the latency picture come before the cards.
    order = [e["attrs"]["id"] for e in dom.elements if e["attrs"].get("id") in (
        "requests-chart", "cost-chart", "latency", "cards", "live")]
    assert order == ["requests-chart", "cost-chart", "latency", "cards", "live"]

    # One card per client with its exact figures; the model without a price is marked, not free.
    cards = {c["attrs"]["data-key"]: c for c in dom.classed("card")}
    assert set(cards) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        fields = {e["attrs"]["data-field"]: e for e in dom.elements
                  if "data-field" in e["attrs"] and any(p is cards[key] for p in e["parents"])}
        assert {name: fields[name]["text"] for name in expected} == expected, key
        assert int(fields["p50"]["text"]) > 0
        assert (fields["cost"]["attrs"]["class"] == "unpriced") is (key == "dash-b")
        assert ("bad" in fields["errors"]["attrs"]["class"]) is (key == "dash-b")
        assert ("bad" in fields["memory-errors"]["attrs"]["class"]) is (key == "dash-a")
    assert "unknown, not free" in dom.classed("unpriced", within=cards["dash-b"])[0]["attrs"]["title"]

    # Both charts, one series per client in the same colours. Requests: stacked bars adding up to
    # each client's requests and errors (on hover). Cost: a line and points per priced client; the
    # client whose model has no price gets "n/a" marks, no line along zero.
    requests_chart, cost_chart = dom.find(id="requests-chart")[0], dom.find(id="cost-chart")[0]
    for chart in (requests_chart, cost_chart):
        assert sorted(e["attrs"]["data-key"] for e in dom.classed("series", within=chart)) == sorted(EXPECTED)
    bars = dom.classed("bar", within=requests_chart)
    assert by_key(bars, lambda e: int(e["attrs"]["data-requests"])) == {"dash-a": 3, "dash-b": 3, "dash-c": 1}
    errors = by_key(bars, lambda e: int(e["text"].split(" requests, ")[1].split(" errors")[0]))
    assert errors == {"dash-a": 0, "dash-b": 1, "dash-c": 0}
    points = dom.classed("cost-point", within=cost_chart)
    costs = by_key(points, lambda e: float(e["attrs"]["data-cost"]))
    assert {k: round(v, 6) for k, v in costs.items()} == {"dash-a": 0.0375, "dash-c": 0.002}
    assert all(p["text"].startswith(p["attrs"]["data-period"] + " ") and "$0.0" in p["text"] for p in points)
    assert sorted(by_key(dom.classed("cost-line", within=cost_chart))) == ["dash-a", "dash-c"]
    marks = dom.classed("unpriced-mark", within=cost_chart)
    assert by_key(marks) and set(by_key(marks)) == {"dash-b"}
    assert all(m["text"].startswith("n/a") and "unknown, not free" in m["text"] for m in marks)
    legend = {e["attrs"]["data-key"]: e["text"] for e in dom.classed("legend-item")}
    assert legend == {"dash-a": "dash-a", "dash-b": "dash-bcost n/a", "dash-c": "dash-c"}

    # Latency per model: both models, most requests first, with their counts and percentiles.
    latency = [(e["attrs"]["data-model"], e["attrs"]["data-requests"]) for e in dom.classed("latency-row")]
    assert latency == [("mem", "4"), ("local-llama", "3")]
    for row in dom.classed("latency-row"):
        assert len(dom.classed("p50", within=row)) == len(dom.classed("p95", within=row)) == 1
        assert dom.classed("figures", within=row)[0]["text"].startswith("p50 ")

    # The live table: every request, the error red, the unknown cost marked, the memory error said.
    live = [e for e in dom.elements if e["tag"] == "tr" and "data-request-id" in e["attrs"]]
    assert sorted(r["attrs"]["data-client"] for r in live) == ["dash-a"] * 3 + ["dash-b"] * 3 + ["dash-c"]
    assert [r["attrs"]["data-client"] for r in live if "error" in r["attrs"]["class"]] == ["dash-b"]
    assert [c["text"] for c in dom.classed("unpriced", within=dom.find(id="live")[0])] == ["n/a"] * 3
    assert sum(f"error: {MEMORY_FAULT}" in r["text"] for r in live) == 1
    assert "store ok" in dom.find(id="store-status")[0]["text"]

    shot = tmp_path / "dashboard.png"
    chromium(dashboard.url + "/ui/", tmp_path, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_chromium_live_table_gains_a_new_request_by_itself(dashboard, tmp_path):
    browser = DevTools(tmp_path)
    try:
        page = browser.open(dashboard.url + "/ui/")
        rows = "document.querySelectorAll('#live tr[data-request-id]').length"
        browser.wait_for(page, f"document.body.dataset.loaded === 'reports' && {rows} === 7")
        browser.evaluate(page, "window.stillTheSamePage = true")  # a reload would lose it
        new_id = dashboard.litellm.memory_call("dash-c", prompt=300, completion=20, cost=0.001, scope=True)
        wait_written(dashboard, dashboard.litellm.parts)
        row = f"document.querySelector('#live tr[data-request-id=\"{new_id}\"]')"
        browser.wait_for(page, row, seconds=10)  # the table polls every 2 s
        assert browser.evaluate(page, "window.stillTheSamePage") is True
        assert browser.evaluate(page, rows) == 8
        first = "document.querySelector('#live tbody tr')"
        assert browser.evaluate(page, f"{first}.dataset.requestId") == new_id
        assert "fresh" in browser.evaluate(page, f"{row}.className")
        assert browser.evaluate(page, f"[...{row}.cells].map((c) => c.textContent)")[1:3] == ["dash-c", "mem"]
    finally:
        browser.close()


def test_chromium_an_empty_store_says_so(emu, tmp_path):
    """Before the first request: the cards and the live table each say there is nothing yet, the
    charts and the latency picture are empty, not broken."""
    with running_proxy(emu.url, state_dir=tmp_path / "state") as proxy:
        dom = _Dom()
        dom.feed(chromium(proxy.url + "/ui/", tmp_path))
    assert dom.find(id="main")[0]["attrs"].get("hidden") is None
    assert "hidden" not in dom.find(id="cards-empty")[0]["attrs"]
    assert not dom.classed("card") and not dom.classed("series") and not dom.classed("latency-row")
    (empty,) = dom.find(id="live-empty")
    assert empty["text"] == "No requests recorded yet."
    assert not [e for e in dom.elements if e["tag"] == "tr" and "data-request-id" in e["attrs"]]
    assert "0 written" in dom.find(id="store-status")[0]["text"]
    assert "hidden" in dom.find(id="logout")[0]["attrs"]  # no keys: no cookie to forget


def test_chromium_asks_for_the_key(keyed_dashboard, tmp_path):
    dom = _Dom()
    dom.feed(chromium(keyed_dashboard.url + "/ui/", tmp_path))
    (form,) = dom.find(id="login")
    assert "hidden" not in form["attrs"] and "enter one" in form["text"]
    assert "hidden" in dom.find(id="main")[0]["attrs"]
    assert not [e for e in dom.elements if e["attrs"].get("class") == "card"]
    (key,) = dom.find(id="login-key")  # named for a screen reader, not by its placeholder only
    assert any(p["tag"] == "label" for p in key["parents"])
    assert dom.find(id="login-error")[0]["attrs"].get("role") == "alert"


def test_chromium_logs_in_and_out(keyed_dashboard, tmp_path):
    browser = DevTools(tmp_path)
    try:
        page = browser.open(keyed_dashboard.url + "/ui/")
        browser.wait_for(page, "!document.getElementById('login').hidden")
        assert browser.evaluate(page, "document.getElementById('logout').hidden") is True
        browser.evaluate(page, f"(() => {{ document.getElementById('login-key').value = '{FRONT_KEY}'; "
                               "document.getElementById('login').requestSubmit(); })()")
        browser.wait_for(page, "document.body.dataset.loaded === 'reports' && "
                               "!document.getElementById('logout').hidden")
        assert browser.evaluate(page, "document.getElementById('main').hidden") is False
        browser.evaluate(page, "window.beforeLogout = true; document.getElementById('logout').click()")
        browser.wait_for(page, "window.beforeLogout === undefined && !document.getElementById('login').hidden")
        assert browser.evaluate(page, "document.getElementById('main').hidden") is True
        assert browser.evaluate(page, "document.getElementById('logout').hidden") is True
        browser.evaluate(page, "fetch('api/summary').then((r) => { window.afterLogout = r.status; })")
        browser.wait_for(page, "window.afterLogout === 401")
    finally:
        browser.close()


# --- many keys, large figures, narrow windows (found by a visual audit) ---------------------------

DAY_MS = 86_400_000
LONG_IDS = [f"project-{'x' * 40}-{i:02d}-long-suffix" for i in range(26)]  # 60 characters each
LONG_MODEL = "claude-sonnet-4-5-20250929-with-a-model-name-far-too-long-for-its-column"


def crowded_store(state: Path) -> int:
    """Through the writer's own upsert: 26 clients with 60-character ids over 40 days, a 27th
    with billions of tokens and $10k, a model without a price. Returns the requests."""
    from memory_proxy.usage.record import derive
    from memory_proxy.usage.store import SqliteStore

    now = int(time.time() * 1000)
    rows = []
    for i in range(400):
        big = i < 3
        model = LONG_MODEL if big else ("local-llama" if i % 3 == 0 else "mem")
        rows.append(derive({
            "request_id": f"{i:032x}", "ts_ms": now - (i % 40) * DAY_MS - i * 1000,
            "client_id": "big-client" if big else LONG_IDS[i % 26],
            "client_source": "custom_header", "method": "POST", "path": "/v1/chat/completions",
            "model_group": model, "deployment": model, "provider": "openai", "status": 500 if i % 50 == 7 else 200,
            "completed": 1, "streamed": 0, "latency_ms": 125_000.0 if big else 800.0 + i,
            "input_tokens": 2_500_000_000 if big else 1000, "output_tokens": 200, "cache_read_tokens": 0,
            "cache_write_tokens": 0, "cost_usd": 3_456.78 if big else (0.0 if model == "local-llama" else 0.01),
            "priced": 0 if model == "local-llama" else 1, "sm_error": None, "sm_context_modified": 0,
            "cf_retries": 0, "session_id": None}, frozenset({"mem"})))
    state.mkdir(parents=True)
    store = SqliteStore(state / "usage.sqlite3")
    store.upsert(rows)
    store.close()
    return len(rows)


@pytest.fixture
def crowded_dashboard(emu, tmp_path):
    requests = crowded_store(tmp_path / "state")
    with running_proxy(emu.url, state_dir=tmp_path / "state") as proxy:
        proxy.requests = requests
        yield proxy


def pick_range(browser: DevTools, page: str, value: str) -> None:
    browser.evaluate(page, f"(() => {{ const s = document.getElementById('range'); s.value = '{value}'; "
                           "document.body.dataset.loaded = ''; s.dispatchEvent(new Event('change')); })()")
    browser.wait_for(page, "document.body.dataset.loaded === 'reports'")


def test_chromium_many_long_keys_big_figures(crowded_dashboard, tmp_path):
    browser = DevTools(tmp_path)
    try:
        page = browser.open(crowded_dashboard.url + "/ui/")
        browser.wait_for(page, "document.body.dataset.loaded === 'reports' && "
                               "document.querySelectorAll('#live tr[data-request-id]').length === 50")
        pick_range(browser, page, "90d")
        # 27 clients: the 9 with the most requests a colour each, the 18 others one grey series;
        # no two series share a colour, and the bars still add up to every request.
        legend = browser.evaluate(page, "[...document.querySelectorAll('#legend .legend-item')].map((e) => "
                                        "[e.dataset.key, e.dataset.others || '', "
                                        "e.querySelector('.swatch').style.background])")
        assert len(legend) == 10 and legend[-1][:2] == ["", "18"]
        assert len({colour for _, _, colour in legend}) == 10
        bars = browser.evaluate(page, "[...document.querySelectorAll('#requests-chart .bar')]"
                                      ".reduce((n, b) => n + Number(b.dataset.requests), 0)")
        assert bars == crowded_dashboard.requests
        # 90 days: the cost chart's n/a marks under one day never run into the next day's.
        boxes = browser.evaluate(page, "[...document.querySelectorAll('#cost-chart .unpriced-mark')].map((m) => { "
                                       "const b = m.getBBox(); return [b.x, b.y, b.width, b.height]; })")
        assert len(boxes) > 20
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                apart = a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]
                assert apart, (a, b)
        # The axis labels stay inside the chart, the money is readable: $10k is not $10370.3400.
        assert browser.evaluate(page, "Math.min(...[...document.querySelectorAll('#cost-chart text')]"
                                      ".map((t) => t.getBBox().x))") >= 0
        big = "document.querySelector('#cards .card[data-key=\"big-client\"] [data-field=cost]').textContent"
        assert browser.evaluate(page, big) == "$10,370.34"
        # Latency: a long model name is cut short before its bar, the figures end inside the picture.
        rows = browser.evaluate(page, "[...document.querySelectorAll('#latency .latency-row')].map((g) => { "
                                      "const name = g.querySelector('text.name').getBBox(), "
                                      "figures = g.querySelector('text.figures').getBBox(); "
                                      "return [g.querySelector('text.name').firstChild.nodeValue, name.x + name.width, "
                                      "Number(g.querySelector('rect.p95').getAttribute('x')), "
                                      "figures.x + figures.width, figures.x, "
                                      "Number(g.querySelector('rect.p95').getAttribute('x')) + "
                                      "g.querySelector('rect.p95').getBBox().width, "
                                      "g.querySelector('text.figures').textContent]; })")
        (long_row,) = [r for r in rows if r[0].startswith("claude-sonnet")]
        assert "…" in long_row[0] and long_row[0].endswith("(3 requests)") and "p95 123.4 s" in long_row[6]
        for _, name_end, bar_x, figures_end, figures_x, bar_end, _ in rows:
            assert name_end < bar_x and bar_end < figures_x and figures_end <= 900
        # The live table: the zone in its head, the day of a request that is not today's, long ids and
        # model names cut short (whole on hover), so that they do not push the figures out of view.
        assert browser.evaluate(page, "document.getElementById('live-time').textContent").startswith("time (UTC")
        stamps = browser.evaluate(page, "[...document.querySelectorAll('#live tbody tr')]"
                                        ".map((r) => r.cells[0].textContent)")
        assert len(stamps[0]) == 8 and any(len(s) == 19 and s[4] == "-" for s in stamps), stamps
        titles = browser.evaluate(page, "[...document.querySelectorAll('#live tbody td.long')].map((c) => c.title)")
        assert LONG_IDS[4] in titles and LONG_MODEL in titles
        widths = browser.evaluate(page, "[...document.querySelectorAll('#live tbody td.long')].map((c) => "
                                        "c.getBoundingClientRect().width)")
        assert max(widths) < 280  # a 60-character id alone took 420 px
        shown = browser.evaluate(page, "[...document.querySelectorAll('#live tbody td.long')]"
                                       ".map((c) => c.textContent)")
        assert "project-xxxx…xx-04-long-suffix" in shown  # cut in the middle: its end tells it apart
        # Muted text is readable on the page's background: WCAG AA's 4.5:1.
        assert contrast(*browser.evaluate(page, "[getComputedStyle(document.querySelector('.muted')).color, "
                                                "getComputedStyle(document.body).backgroundColor]")) >= 4.5
        # A 390 px wide window: nothing wider than it (the tables scroll in their own box).
        browser.call("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": True}, page)
        browser.wait_for(page, "document.documentElement.clientWidth === 390")
        assert browser.evaluate(page, "document.documentElement.scrollWidth") == 390
    finally:
        browser.close()


def contrast(*colours: str) -> float:
    """WCAG's contrast ratio of two CSS ``rgb(r, g, b)`` colours."""
    def luminance(css: str) -> float:
        channels = [int(c) / 255 for c in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(c) for c in colours), reverse=True)
    return (high + 0.05) / (low + 0.05)
