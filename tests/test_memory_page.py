"""The dashboard's memory page, /ui/memory, and its API under /ui/api/memory/: a real memory
proxy (binary mode's app on a loopback port) in front of the emulator's Supermemory (router
and Memory API over one store), and the page driven in a real headless Chromium through the
DevTools protocol: picking ids, listing, searching, forgetting through the page's own
confirmation, Supermemory's failures as a message.

LiteLLM's part is played by a small stand-in that does what the generated LiteLLM config makes
the binary do for a Supermemory-backed group: send the request to the proxy's egress with the
client id, the request id and the egress secret. The SDK-mode case runs LiteLLM's Router.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from memory_proxy.config.model import parse_config
from memory_proxy.server.app import create_app
from tests import emulator
from tests.support.configs import build_config, model
from tests.support.ports import free_port
from tests.support.readiness import until
from tests.support.servers import ServerThread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MASTER = "sk-test-master-memory-page"
SECRET = "egress-secret-memory-page"
SM_KEY = "sm-test-memory-page-key"
FRONT_KEY = "front-door-key-memory-page"
SECRETS = (MASTER, SECRET, SM_KEY, FRONT_KEY)


def config_text(emu_url: str, extra: str = "", supermemory_url: str | None = None) -> str:
    """One Supermemory-backed model on the emulator at ``emu_url`` (Supermemory at
    ``supermemory_url``, default the emulator too); ``extra`` lines go under ``memory_proxy``."""
    return build_config([model("mem", "openai/gpt-4o-mini", f"{emu_url}/v3/{emu_url}/v1", "provider-key")],
                        patterns=[("user-agent", "^claude-cli/", "claude-cli")], default_user_id="default-dev",
                        proxy={"timeouts": "{connect: 1, read: 5}"}, extra=extra,
                        supermemory={"base_url": supermemory_url or emu_url, "api_key": "os.environ/SM_KEY",
                                     "cloudflare_retry_delay": 0.05})


def litellm_stand_in(target: dict) -> Starlette:
    """Chat completions for the Supermemory-backed group ``mem``, sent on as LiteLLM sends them:
    to ``target["egress"]`` with the ingress's client id and request id and the egress secret."""
    async def chat(request: Request) -> Response:
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(target["egress"], content=await request.body(), headers={
                "content-type": "application/json", "authorization": "Bearer provider-key",
                "x-supermemory-user-id": request.headers["x-supermemory-user-id"],
                "x-request-id": request.headers["x-request-id"], "x-memory-proxy-egress-secret": SECRET})
        return Response(answer.content, answer.status_code, media_type="application/json")

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/health/readiness", ready), Route("/health/liveliness", ready)])


class Chain:
    """The emulator, the stand-in and a memory proxy; ``say`` talks through the proxy's front door."""

    def __init__(self, emu: ServerThread, proxy: ServerThread) -> None:
        self.emu, self.proxy = emu, proxy
        self.url = proxy.url

    def say(self, client_id: str, text: str) -> str:
        answer = httpx.post(self.url + "/v1/chat/completions", timeout=20,
                            headers={"x-memory-user-id": client_id, "authorization": f"Bearer {FRONT_KEY}"},
                            json={"model": "mem", "messages": [{"role": "user", "content": text}]})
        assert answer.status_code == 200, answer.text
        return answer.json()["choices"][0]["message"]["content"]

    def memories(self, client_id: str) -> list[str]:
        """What the emulator's store holds live for an id (its own view, not the proxy's)."""
        return httpx.get(self.emu.url + "/_emulator/memories").json()["memories"].get(client_id, [])

    def written(self, requests: int) -> None:
        """Wait until the usage record holds ``requests`` requests: two parts each (the
        ingress's and the egress's)."""
        usage = self.proxy.server.config.app.state.runtime.usage
        until(lambda: usage.written >= 2 * requests, f"{requests} requests' usage records written")


@contextlib.contextmanager
def chain(tmp_path: Path, extra: str = "", *, supermemory_url: str | None = None, environ: dict | None = None):
    with ServerThread(emulator.create_app()) as emu:
        target: dict = {}
        with ServerThread(litellm_stand_in(target)) as stand_in:
            text = config_text(emu.url, extra, supermemory_url)
            config = parse_config(text, Path("test.yaml"),
                                  {"SM_KEY": SM_KEY, "FRONT_KEY": FRONT_KEY} if environ is None else environ)
            app = create_app(config, litellm_url=stand_in.url, master_key=MASTER, egress_secret=SECRET,
                             state_dir=tmp_path / "state")
            with ServerThread(app) as proxy:
                target["egress"] = f"{proxy.url}/_egress/v3/{emu.url}/v1/chat/completions"
                yield Chain(emu, proxy)


@pytest.fixture
def two_ids(tmp_path):
    """alice and bob have each said things through the proxy."""
    with chain(tmp_path) as c:
        assert c.say("alice", "My name is Alice") == "echo: My name is Alice"
        c.say("alice", "I deploy with Ansible on Fridays")
        c.say("bob", "My name is Bob and I like tea")
        assert c.say("alice", "What is my name?") == "Your name is Alice."
        c.written(4)
        yield c


def get(c: Chain, what: str, **params) -> httpx.Response:
    return httpx.get(f"{c.url}/ui/api/memory/{what}", params=params, timeout=20)


def forget(c: Chain, client_id: str, memory_id: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{c.url}/ui/api/memory/forget", json={"id": client_id, "memory_id": memory_id},
                      headers=headers, timeout=20)


# --- the JSON API ---------------------------------------------------------------------------


def test_each_id_lists_and_searches_only_its_own_memory(two_ids):
    c = two_ids
    alice = get(c, "list", id="alice").json()
    bob = get(c, "list", id="bob").json()
    assert [m["memory"] for m in alice["memories"]] == [
        "What is my name?", "I deploy with Ansible on Fridays", "My name is Alice"]  # newest first
    assert alice["total"] == 3 and all(m["created_at"] and m["summary"] for m in alice["memories"])
    assert [m["memory"] for m in bob["memories"]] == ["My name is Bob and I like tea"]
    assert get(c, "search", id="alice", q="tea").json()["results"] == []
    assert [r["memory"] for r in get(c, "search", id="bob", q="tea").json()["results"]] == [
        "My name is Bob and I like tea"]
    found = get(c, "search", id="alice", q="Ansible deploy").json()["results"]
    assert found[0]["memory"] == "I deploy with Ansible on Fridays" and found[0]["similarity"] > 0
    one = get(c, "list", id="alice", limit=1, page=2).json()
    assert [m["memory"] for m in one["memories"]] == ["I deploy with Ansible on Fridays"] and one["total_pages"] == 3
    ids = {entry["id"]: entry for entry in get(c, "ids").json()["ids"]}
    assert ids["alice"]["requests"] == 3 and ids["bob"]["requests"] == 1 and ids["alice"]["sources"] == ["usage"]
    assert ids["claude-cli"]["sources"] == ids["default-dev"]["sources"] == ["config"]


def test_forget_one_memory_and_the_router_no_longer_recalls_it(two_ids):
    c = two_ids
    (alices_name,) = [m for m in get(c, "list", id="alice").json()["memories"] if m["memory"] == "My name is Alice"]
    bobs = get(c, "list", id="bob").json()["memories"][0]["id"]
    refused = forget(c, "alice", bobs)  # another id's memory, by its id: not reachable from alice
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert c.memories("bob") == ["My name is Bob and I like tea"]
    done = forget(c, "alice", alices_name["id"])
    assert done.status_code == 200 and done.json() == {"ok": True, "id": "alice", "forgotten": [alices_name["id"]]}
    assert "My name is Alice" not in c.memories("alice")
    assert c.say("alice", "What is my name?") == "I don't know your name."
    assert c.say("bob", "What is my name?") == "Your name is Bob."
    again = forget(c, "alice", alices_name["id"])
    assert again.status_code == 404 and "already forgotten" in again.json()["error"]["message"]


def test_bad_ids_and_input_are_refused_before_supermemory(two_ids):
    c = two_ids
    before = len(httpx.get(c.emu.url + "/_emulator/requests").json())
    for bad in ("", "..", "a/b", "x" * 129, "alice\n", "al ice"):
        answer = get(c, "list", id=bad)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_input", bad
    assert get(c, "search", id="alice", q=" ").status_code == 400
    assert get(c, "list", id="alice", limit=0).status_code == 400
    assert get(c, "signals", id="alice", range="7d", since="not-a-day").status_code == 400
    as_form = httpx.post(c.url + "/ui/api/memory/forget", data={"id": "alice", "memory_id": "mem_000001"})
    assert as_form.status_code == 400 and "application/json" in as_form.json()["error"]["message"]
    assert forget(c, "alice", "").status_code == 400
    for trick in ("../../bob/memories/mem_000002", "mem_000001?x=1", "a b"):  # never put in a request
        assert forget(c, "alice", trick).status_code == 400, trick
    huge = httpx.post(c.url + "/ui/api/memory/forget", content=b'{"id": "alice", "x": "' + b"y" * 10_000 + b'"}',
                      headers={"content-type": "application/json"})
    assert huge.status_code == 400 and "larger than" in huge.json()["error"]["message"]
    assert huge.headers["cache-control"] == "no-store"  # input errors carry the page's headers too
    assert httpx.get(c.url + "/ui/api/memory/forget").status_code == 404  # POST only
    assert len(httpx.get(c.emu.url + "/_emulator/requests").json()) == before


def test_cross_site_requests_to_forget_are_refused_and_nothing_is_forgotten(two_ids):
    c = two_ids
    memory_id = get(c, "list", id="alice").json()["memories"][-1]["id"]
    port = c.proxy.port
    for headers in ({"origin": "http://attacker.example"}, {"origin": "null"},
                    {"origin": f"http://localhost:{port + 1}", "sec-fetch-site": "same-site"},
                    {"sec-fetch-site": "cross-site"},
                    {"origin": f"http://127.0.0.1:{port}", "sec-fetch-site": "cross-site"},
                    {"host": "attacker.example"}):
        answer = forget(c, "alice", memory_id, headers=headers)
        assert answer.status_code == 403, headers
        assert answer.json()["error"]["code"] in ("origin_not_allowed", "host_not_allowed")
        assert "access-control-allow-origin" not in answer.headers
    preflight = httpx.options(c.url + "/ui/api/memory/forget", headers={
        "origin": "http://attacker.example", "access-control-request-method": "POST"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert "My name is Alice" in c.memories("alice")
    assert c.say("alice", "What is my name?") == "Your name is Alice."
    # The page's own same-origin request is served (Chromium sends these two headers with it).
    same = forget(c, "alice", memory_id, headers={"origin": c.url, "sec-fetch-site": "same-origin"})
    assert same.status_code == 200


def test_signals_of_an_id_from_the_usage_record(two_ids):
    c = two_ids
    httpx.post(c.emu.url + "/_emulator/faults", json={"mode": "memory_error", "count": 1})
    c.say("bob", "remember this too")
    c.written(5)
    alice = get(c, "signals", id="alice", range="7d").json()
    assert alice["enabled"] is True
    assert (alice["requests"], alice["supermemory_requests"], alice["memory_errors"]) == (3, 3, 0)
    # The emulator's router retrieves every earlier memory of the id: 0, then 1, then 2.
    assert alice["chunks_retrieved"] == 3 and alice["context_modified"] == 2
    assert len(alice["recent"]) == 3 and alice["last_error"] is None
    bob = get(c, "signals", id="bob").json()
    assert (bob["requests"], bob["memory_errors"]) == (2, 1)
    assert bob["last_error"]["message"].startswith("Emulated fault") and bob["last_error"]["ts_ms"]
    assert get(c, "signals", id="nobody").json()["requests"] == 0


def test_supermemory_failures_are_a_clear_message(two_ids):
    c = two_ids
    httpx.post(c.emu.url + "/_emulator/supermemory_keys", json={"accept": ["another-key"]})
    refused = get(c, "list", id="alice")
    assert refused.status_code == 502 and refused.json()["error"]["code"] == "unauthorised"
    message = refused.json()["error"]["message"]
    assert "refused the key" in message and "SM_KEY" in message and "Traceback" not in refused.text
    httpx.post(c.emu.url + "/_emulator/supermemory_keys", json={"accept": None})
    httpx.post(c.emu.url + "/_emulator/faults", json={"mode": "error_429", "count": 1})
    limited = get(c, "search", id="alice", q="name")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert limited.headers["retry-after"] == "5" and limited.headers["cache-control"] == "no-store"
    httpx.post(c.emu.url + "/_emulator/cloudflare", json={"refuse_next": 2})
    edge = get(c, "list", id="alice")
    assert edge.status_code == 503 and edge.json()["error"]["code"] == "cloudflare"
    for answer in (refused, limited, edge):
        assert not any(secret in answer.text for secret in SECRETS)


def test_unreachable_supermemory_and_no_key(tmp_path):
    gone = f"http://127.0.0.1:{free_port()}"
    with chain(tmp_path, supermemory_url=gone) as c:
        answer = get(c, "list", id="alice")
        assert answer.status_code == 502 and answer.json()["error"]["code"] == "unreachable"
        assert "cannot reach Supermemory" in answer.json()["error"]["message"]
    with chain(tmp_path / "nokey", environ={}) as c:
        answer = get(c, "list", id="alice")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "no_key"
        assert "SM_KEY is not set" in answer.json()["error"]["message"]


def test_with_keys_the_memory_api_needs_the_cookie_or_the_key(tmp_path):
    with chain(tmp_path, "  api_keys: [os.environ/FRONT_KEY]") as c:
        c.say("alice", "My name is Alice")
        for answer in (get(c, "list", id="alice"), get(c, "ids"), forget(c, "alice", "mem_000001")):
            assert answer.status_code == 401 and answer.json()["error"]["code"] == "login_required"
            assert answer.headers["cache-control"] == "no-store"
        assert "My name is Alice" in c.memories("alice")
        with httpx.Client(base_url=c.url) as browser:
            assert browser.post("/ui/api/login", json={"key": FRONT_KEY}).status_code == 200
            listed = browser.get("/ui/api/memory/list", params={"id": "alice"}).json()
            assert [m["memory"] for m in listed["memories"]] == ["My name is Alice"]
        bearer = httpx.get(c.url + "/ui/api/memory/list", params={"id": "alice"},
                           headers={"authorization": f"Bearer {FRONT_KEY}"})
        assert bearer.status_code == 200


def test_cookies_are_shared_with_the_egress_and_saved_by_it(tmp_path):
    """The page's calls go through the egress's cookie jar: Cloudflare's clearance is sent, a
    refusal's fresh cookies are kept in the egress's jar and its file."""
    with chain(tmp_path) as c:
        c.say("alice", "hello")  # the egress gets Cloudflare's cookies
        runtime = c.proxy.server.config.app.state.runtime
        egress_cookies = {cookie.name: cookie.value for cookie in runtime.supermemory.cookies.jar}
        before = len(httpx.get(c.emu.url + "/_emulator/requests").json())
        assert get(c, "list", id="alice").status_code == 200
        (call,) = httpx.get(c.emu.url + "/_emulator/requests", params={"since": before}).json()
        assert call["path"].startswith("/ns/alice/")
        assert call["cookies"]["cf_clearance"] == egress_cookies["cf_clearance"]
        httpx.post(c.emu.url + "/_emulator/cloudflare", json={"refuse_next": 1})  # refused once: new cookies
        assert get(c, "list", id="alice").status_code == 200
        fresh = {cookie.name: cookie.value for cookie in runtime.supermemory.cookies.jar}
        assert fresh["cf_clearance"] != egress_cookies["cf_clearance"]
        saved = json.loads((tmp_path / "state" / "supermemory_cookies.json").read_text())
        assert {k["name"]: k["value"] for k in saved["cookies"]}["cf_clearance"] == fresh["cf_clearance"]
        assert c.say("alice", "still here") == "echo: still here"  # the egress goes on with the page's cookies


# --- the page in a real Chromium ---------------------------------------------------------------


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, click and type as a user
    does (real input events), read the DOM, take screenshots."""

    def __init__(self, tmp_path: Path) -> None:
        from websockets.sync.client import connect

        if not Path(CHROMIUM).exists():
            pytest.fail("Debian's chromium is missing: the memory page is tested in a real browser")
        port = free_port()
        self.log = open(tmp_path / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--remote-debugging-port={port}",
             "--window-size=1280,1400", "about:blank"], stdout=self.log, stderr=self.log)
        pages = until(lambda: self._pages(port), "Chromium's DevTools endpoint", timeout=60)
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.next_id = 0
        self.events: list[dict] = []
        self.send("Page.enable")
        self.send("Runtime.enable")

    @staticmethod
    def _pages(port: int) -> list[dict] | None:
        try:
            found = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None
        return [t for t in found if t.get("type") == "page"] or None

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 30):
        return until(lambda: self.js(expression), what, timeout=timeout)

    def go(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'", f"{url} loaded")

    def click(self, selector: str) -> None:
        box = self.js(f"""(() => {{ const node = document.querySelector({json.dumps(selector)});
            if (!node) return null; node.scrollIntoView({{block: "center"}});
            const r = node.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()""")
        assert box, f"nothing to click at {selector}"
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        self.click(selector)
        self.js(f"document.querySelector({json.dumps(selector)}).select && "
                f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", text=text)

    def enter(self) -> None:
        self.send("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter", windowsVirtualKeyCode=13,
                  text="\r")
        self.send("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter", windowsVirtualKeyCode=13)

    def texts(self, selector: str) -> list[str]:
        return self.js(f"[...document.querySelectorAll({json.dumps(selector)})].map((n) => n.textContent.trim())")

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process.kill()  # nothing happens once it has exited
        self.process.wait()
        self.log.close()


@pytest.fixture
def browser(tmp_path):
    opened = Browser(tmp_path)
    yield opened
    opened.close()


MEMORY_ROWS = "#memories tbody tr td.memory"


def test_chromium_lists_searches_and_forgets_through_the_confirmation(two_ids, browser, tmp_path):
    c = two_ids
    browser.go(c.url + "/ui/memory")
    browser.wait("document.body.dataset.ids === 'loaded'", "the ids to pick from")
    options = browser.js("[...document.querySelectorAll('#known option')].map((o) => o.value)")
    assert {"alice", "bob", "claude-cli", "default-dev"} <= set(options)

    # Pick bob from the list: his memory only.
    browser.js("const s = document.getElementById('known'); s.value = 'bob'; "
               "s.dispatchEvent(new Event('change'))")
    browser.wait("document.body.dataset.signals === 'bob' && document.body.dataset.loaded === 'memories'",
                 "bob's memories and signals")
    assert browser.texts(MEMORY_ROWS) == ["My name is Bob and I like tea"]
    assert browser.js("location.search") == "?id=bob"

    # Type alice's id in: her memories, newest first, with dates; none of bob's.
    browser.type("#typed", "alice")
    browser.click("#pick button[type=submit]")
    browser.wait("document.body.dataset.signals === 'alice' && "
                 "document.querySelectorAll('#memories tbody tr').length === 3", "alice's memories")
    assert browser.texts(MEMORY_ROWS) == ["What is my name?", "I deploy with Ansible on Fridays", "My name is Alice"]
    dates = browser.texts("#memories tbody td.when")
    assert all(len(d) == 16 and d[4] == "-" and d[13] == ":" for d in dates), dates
    assert "3 memories" in browser.texts("#memory-count")[0]
    signals = dict(zip(browser.texts("#signals .card h3"), browser.texts("#signals .card .figure"), strict=True))
    assert signals["requests"] == "3" and signals["context modified"] == "2" and signals["chunks retrieved"] == "3"
    assert signals["Supermemory errors"] == "0" and len(browser.texts("#signal-rows tbody tr")) == 3

    # Search.
    browser.type("#query", "Ansible")
    browser.enter()
    browser.wait("document.body.dataset.loaded === 'search'", "the search results")
    assert browser.texts(MEMORY_ROWS) == ["I deploy with Ansible on Fridays"]
    assert browser.js("getComputedStyle(document.querySelector('#memories tbody td.score')).display") != "none"
    browser.click("#show-all")
    browser.wait("document.body.dataset.loaded === 'memories' && "
                 "document.querySelectorAll('#memories tbody tr').length === 3", "the whole list again")

    # Forget "My name is Alice": the confirmation first; Cancel forgets nothing.
    row = '#memories tbody tr:nth-child(3) button.forget'
    browser.click(row)
    browser.wait("document.getElementById('confirm').open", "the confirmation")
    assert browser.texts("#confirm-text") == ["My name is Alice"]
    browser.screenshot(tmp_path / "memory-page-confirm.png")
    browser.click("#confirm-cancel")
    browser.wait("!document.getElementById('confirm').open", "the confirmation closed")
    time.sleep(0.3)
    assert "My name is Alice" in c.memories("alice") and len(browser.texts(MEMORY_ROWS)) == 3
    browser.click(row)
    browser.wait("document.getElementById('confirm').open", "the confirmation again")
    browser.click("#confirm-forget")
    browser.wait("document.body.dataset.forgotten && document.querySelectorAll('#memories tbody tr').length === 2",
                 "the memory forgotten")
    assert browser.texts(MEMORY_ROWS) == ["What is my name?", "I deploy with Ansible on Fridays"]
    assert "Forgotten" in browser.texts("#notice")[0]
    assert browser.js("document.getElementById('memory-error').hidden") is True
    shot = browser.screenshot(tmp_path / "memory-page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    print(f"memory page screenshot: {shot}")

    assert "My name is Alice" not in c.memories("alice")
    assert c.memories("bob") == ["My name is Bob and I like tea"]
    assert c.say("alice", "What is my name?") == "I don't know your name."
    assert c.say("bob", "What is my name?") == "Your name is Bob."
    assert not any(secret in browser.js("document.documentElement.outerHTML") for secret in SECRETS)


def test_chromium_a_cross_site_page_cannot_forget(two_ids, browser):
    """A page on another site (localhost is another site than 127.0.0.1) posts to the forget
    endpoint every way a page can: the front door refuses each, nothing is forgotten."""
    c = two_ids
    memory_id = get(c, "list", id="alice").json()["memories"][-1]["id"]
    target = c.url + "/ui/api/memory/forget"
    body = json.dumps({"id": "alice", "memory_id": memory_id})
    attack = f"""<!doctype html><body><form id="f" method="post" action="{target}" enctype="text/plain">
        <input name='{{"id": "alice", "memory_id": "{memory_id}", "x": "' value='"}}'></form>
        <script>
        Promise.allSettled([
          fetch({json.dumps(target)}, {{method: "POST", mode: "no-cors", body: {json.dumps(body)}}}),
          fetch({json.dumps(target)}, {{method: "POST", headers: {{"content-type": "application/json"}},
                                        body: {json.dumps(body)}}}),
        ]).then((r) => {{ document.title = r.map((x) => x.status).join(","); document.getElementById("f").submit(); }});
        </script></body>"""

    async def evil(request: Request) -> Response:
        return Response(attack, media_type="text/html")

    before = len(httpx.get(c.emu.url + "/_emulator/requests").json())
    with ServerThread(Starlette(routes=[Route("/", evil)])) as site:
        browser.go(f"http://localhost:{site.port}/")
        browser.wait("location.href.includes('/ui/api/memory/forget') && document.readyState === 'complete' "
                     "&& document.body && document.body.innerText.length > 0", "the form posted and its answer shown")
        body_text = browser.js("document.body.innerText")
    assert "origin_not_allowed" in body_text
    calls = httpx.get(c.emu.url + "/_emulator/requests", params={"since": before}).json()
    assert not [r for r in calls if r["path"].startswith("/ns/")], calls
    assert "My name is Alice" in c.memories("alice")
    assert c.say("alice", "What is my name?") == "Your name is Alice."


def test_chromium_shows_supermemory_refusing_the_key_as_a_message(two_ids, browser, tmp_path):
    c = two_ids
    httpx.post(c.emu.url + "/_emulator/supermemory_keys", json={"accept": ["another-key"]})
    browser.go(c.url + "/ui/memory?id=alice")
    browser.wait("!document.getElementById('memory-error').hidden", "the error message")
    (message,) = browser.texts("#memory-error")
    assert "refused the key" in message and "SM_KEY" in message and "Traceback" not in message
    assert browser.js("document.getElementById('memory-error').dataset.kind") == "unauthorised"
    assert browser.texts(MEMORY_ROWS) == []
    browser.screenshot(tmp_path / "memory-page-refused.png")
    # The usage signals still show: they come from the proxy's own record.
    browser.wait("document.body.dataset.signals === 'alice'", "the signals")
    assert browser.texts("#signals .card .figure")[0] == "3"


def test_chromium_shows_an_unreachable_supermemory_as_a_message(tmp_path, browser):
    gone = f"http://127.0.0.1:{free_port()}"
    with chain(tmp_path, supermemory_url=gone) as c:
        browser.go(c.url + "/ui/memory?id=alice")
        browser.wait("!document.getElementById('memory-error').hidden", "the error message")
        (message,) = browser.texts("#memory-error")
        assert "cannot reach Supermemory" in message and "base_url" in message
        assert browser.js("document.getElementById('memory-error').dataset.kind") == "unreachable"
        browser.type("#typed", "../etc")
        browser.click("#pick button[type=submit]")
        assert "letters, digits" in browser.texts("#pick-error")[0]


def test_chromium_a_failed_forget_says_so_and_keeps_the_row(two_ids, browser, tmp_path):
    c = two_ids
    browser.go(c.url + "/ui/memory?id=alice")
    browser.wait("document.querySelectorAll('#memories tbody tr').length === 3", "alice's memories")
    # Every control has a name a screen reader can say; each Forget button names its memory.
    assert browser.js("[...document.querySelectorAll('input, select')].filter((n) => "
                      "!n.labels.length && !n.getAttribute('aria-label')).map((n) => n.id)") == []
    assert browser.js("document.querySelector('button.forget').getAttribute('aria-label')") == \
        "Forget: What is my name?"
    assert browser.texts("#when-head")[0].startswith("created (UTC")
    httpx.post(c.emu.url + "/_emulator/faults", json={"mode": "error_500", "count": 5})
    browser.click("#memories tbody tr:nth-child(1) button.forget")
    browser.wait("document.getElementById('confirm').open", "the confirmation")
    browser.click("#confirm-forget")
    browser.wait("!document.getElementById('memory-error').hidden", "the error message")
    (message,) = browser.texts("#memory-error")
    assert message.startswith("Not forgotten: “What is my name?”: ") and "500" in message
    assert len(browser.texts(MEMORY_ROWS)) == 3 and browser.js("document.getElementById('notice').hidden")
    # A 390 px window: the list of 60-character ids does not make the page wider than it.
    httpx.post(c.emu.url + "/_emulator/faults", json={"mode": "none"})
    c.say("project-" + "y" * 52, "hello")
    c.written(5)
    browser.send("Emulation.setDeviceMetricsOverride", width=390, height=900, deviceScaleFactor=1, mobile=True)
    browser.go(c.url + "/ui/memory?id=alice")
    browser.wait("document.body.dataset.ids === 'loaded' && document.documentElement.clientWidth === 390",
                 "the page at 390 px")
    assert browser.js("[...document.querySelectorAll('#known option')].some((o) => o.value.length === 60)")
    assert browser.js("document.documentElement.scrollWidth") == 390
    browser.screenshot(tmp_path / "memory-page-390.png")


# --- SDK mode serves the same page -----------------------------------------------------------------


@pytest.mark.litellm
def test_sdk_mode_serves_the_memory_page_and_its_api(tmp_path, browser):
    from memory_proxy.sdk.app import create_sdk_app

    with ServerThread(emulator.create_app()) as emu:
        port = free_port()
        config = parse_config(config_text(emu.url), Path("test.yaml"), {"SM_KEY": SM_KEY})
        app = create_sdk_app(config, master_key=MASTER, egress_secret=SECRET, port=port,
                             state_dir=tmp_path / "state")
        with ServerThread(app, port=port) as proxy:
            answer = httpx.post(proxy.url + "/v1/chat/completions", headers={"x-memory-user-id": "sdk-alice"},
                                json={"model": "mem", "messages": [{"role": "user", "content": "My name is Alice"}]},
                                timeout=60)
            assert answer.status_code == 200, answer.text
            listed = httpx.get(proxy.url + "/ui/api/memory/list", params={"id": "sdk-alice"}).json()
            assert [m["memory"] for m in listed["memories"]] == ["My name is Alice"]
            runtime = proxy.server.config.app.state.runtime
            until(lambda: runtime.usage.written >= 1 and not len(runtime.usage), "the record written")
            assert httpx.get(proxy.url + "/ui/api/memory/signals", params={"id": "sdk-alice"}).json()[
                "supermemory_requests"] == 1
            browser.go(proxy.url + "/ui/memory?id=sdk-alice")
            browser.wait("document.querySelectorAll('#memories tbody tr').length === 1", "the memory listed")
            assert browser.texts(MEMORY_ROWS) == ["My name is Alice"]
            assert httpx.post(proxy.url + "/ui/api/memory/forget", json={"id": "sdk-alice", "memory_id": "x"},
                              headers={"origin": "http://attacker.example"}).status_code == 403
