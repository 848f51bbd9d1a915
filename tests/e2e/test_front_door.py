"""The front door with the real chain: a real browser page on another site, a DNS-rebinding
name, LiteLLM's admin API, and the JDK's own HTTP client (which offers h2c on every request)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from tests.support.servers import ServerThread

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
ATTACKER = "attacker.example"
CHAT = {"model": "memory/gpt-4o-mini", "messages": [{"role": "user", "content": "My name is Mallory"}]}


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: scripts/run_tests.py installs Debian's {package}")
    return path


ATTACK_PAGE = """<!doctype html><meta charset="utf-8"><title>a page on another site</title><pre id="out"></pre>
<script>
const proxy = "http://127.0.0.1:%(proxy)d", rebound = "http://%(attacker)s:%(proxy)d";
const chat = JSON.stringify(%(chat)s);
const attempts = {
  "own page (control)": () => fetch("/ok"),
  "text/plain POST (no preflight)": () => fetch(proxy + "/v1/chat/completions", {method: "POST", body: chat,
      headers: {"content-type": "text/plain"}}),
  "JSON POST": () => fetch(proxy + "/v1/chat/completions", {method: "POST", body: chat,
      headers: {"content-type": "application/json"}}),
  "GET /v1/models": () => fetch(proxy + "/v1/models"),
  "GET /model/info": () => fetch(proxy + "/model/info"),
  "no-cors POST": () => fetch(proxy + "/v1/chat/completions", {method: "POST", body: chat, mode: "no-cors",
      headers: {"content-type": "text/plain"}}),
  "rebound name": () => fetch(rebound + "/v1/chat/completions", {method: "POST", body: chat, mode: "no-cors"}),
};
(async () => {
  const results = {};
  for (const [name, attempt] of Object.entries(attempts)) {
    try {
      const r = await attempt();
      results[name] = {read: r.type !== "opaque", status: r.status, body: r.type === "opaque" ? "" : await r.text()};
    } catch (e) {
      results[name] = {read: false, error: String(e)};
    }
  }
  document.getElementById("out").textContent = JSON.stringify(results);
  document.title = "done";
})();
</script>"""


def chromium_dom(url: str, *, budget_ms: int = 15000) -> str:
    """The DOM of ``url`` after its scripts ran, in headless Chromium with ATTACKER mapped to 127.0.0.1."""
    binary = need("chromium", "chromium")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--host-resolver-rules=MAP {ATTACKER} 127.0.0.1",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def page_results(dom: str) -> dict:
    start = dom.index('<pre id="out">') + len('<pre id="out">')
    return json.loads(dom[start:dom.index("</pre>", start)].replace("&quot;", '"').replace("&amp;", "&"))


def test_a_web_page_on_another_site_can_use_and_read_nothing(stack):
    page = ATTACK_PAGE % {"proxy": stack.proxy_port, "attacker": ATTACKER, "chat": json.dumps(CHAT)}
    site = Starlette(routes=[Route("/attack.html", lambda r: HTMLResponse(page)),
                             Route("/ok", lambda r: PlainTextResponse("own"))])
    before = stack.request_count()
    with ServerThread(site) as server:
        results = page_results(chromium_dom(f"http://{ATTACKER}:{server.port}/attack.html"))
    assert results.pop("own page (control)") == {"read": True, "status": 200, "body": "own"}
    assert len(results) == 6
    for name, result in results.items():
        assert result["read"] is False, (name, result)
    assert stack.request_count() == before, "a request from the page reached a provider or Supermemory"


def test_a_rebound_name_is_refused_even_as_its_own_origin(stack):
    dom = chromium_dom(f"http://{ATTACKER}:{stack.proxy_port}/v1/models")
    assert "host_not_allowed" in dom and "gpt-4o-mini" not in dom


def test_litellm_admin_routes_are_404_through_the_proxy(stack):
    with stack.client() as c:
        for path in ("/model/info", "/v1/model/info", "/get/config/callbacks", "/routes",
                     "/.well-known/litellm-ui-config", "/debug/asyncio-tasks", "/key/generate", "/model/new",
                     "/config/update", "/cache/flushall"):
            r = c.post(path, json={}) if path in ("/key/generate", "/model/new", "/config/update",
                                                 "/cache/flushall") else c.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] == "route_not_served", path
            assert str(stack.litellm_port) in r.json()["error"]["message"]
        # A model route still works, without LiteLLM's wiring or CORS headers in the answer.
        r = c.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        assert "x-litellm-model-api-base" not in r.headers
        assert not any(n.startswith("access-control-") for n in r.headers)


def test_the_launcher_limits_litellms_own_cors(stack):
    r = httpx.get(f"http://127.0.0.1:{stack.litellm_port}/health/liveliness",
                  headers={"origin": "http://attacker.example"}, trust_env=False)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_the_jdks_http_client_with_default_settings(stack, tmp_path):
    javac = need("javac", "openjdk-17-jdk-headless")
    subprocess.run([javac, "-d", str(tmp_path), str(CLIENTS / "JdkClient.java")], check=True, timeout=120)
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello from java"}]})
    before = stack.request_count()
    result = subprocess.run([str(Path(javac).with_name("java")), "-cp", str(tmp_path), "JdkClient",
                             f"{stack.proxy_url}/v1/chat/completions", "4", body],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    for line in lines:
        status, version, answer = line.split(" ", 2)
        assert (status, version) == ("200", "HTTP_1_1"), line
        assert json.loads(answer)["choices"][0]["message"]["content"], line
    seen = stack.requests_since(before)
    assert [r["body"]["messages"][0]["content"] for r in seen if r["path"].endswith("/chat/completions")] \
        == ["hello from java"] * 4
