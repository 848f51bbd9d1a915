"""SIGKILL while state files are written: never a torn file, and the next start reads it.

- The memory proxy (``python -m memory_proxy``, no supervisor) saves Supermemory's cookies
  on every answer that sets one; it is killed at a random moment of a stream of such
  answers, 15 times, and restarted each time.
- A writer that does nothing but rewrite the cookie jar and ``processes.json`` through the
  same ``atomic_write`` is killed 60 times at random moments (most land inside a write).
- A first start, which writes the LiteLLM master key, is killed 10 times at random moments.
"""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time

import httpx
import pytest

from memory_proxy.state import StateDir
from memory_proxy.supermemory import cookie_jar
from tests.support import ROOT
from tests.support.configs import SUPERMEMORY_KEY, build_config, model
from tests.support.ports import free_port
from tests.support.stacks import ProxyProcess, start_emulator

from .conftest import SECRETS, fault, start_direct

SECRET = "faults-egress-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def jar_emu(tmp_path_factory):
    emulator = start_emulator(tmp_path_factory.mktemp("jar-emulator"), chunk_delay=0.0)
    yield emulator
    emulator.stop()


def jar_config(tmp_path, emu) -> os.PathLike:
    config = tmp_path / "config.yaml"
    supermemory = f"http://127.0.0.1:{emu.supermemory_port}"
    config.write_text(build_config([model("mem", "openai/x", f"{supermemory}/v3/{emu.url}/v1")],
                                   supermemory={"base_url": supermemory, "api_key": SUPERMEMORY_KEY,
                                                "cloudflare_retry_delay": 0}))
    return config


def egress(url: str, client: httpx.Client) -> int:
    return client.post(url + "/_egress/v3/http://provider/v1/chat/completions",
                       json={"model": "x", "messages": [{"role": "user", "content": "cookie"}]},
                       headers={"x-memory-proxy-egress-secret": SECRET, "x-supermemory-user-id": "jar-user",
                                "authorization": "Bearer provider-key"}).status_code


def check_jar(path) -> dict[str, str]:
    """The jar parses completely and holds Cloudflare's two cookies; returns name -> value."""
    data = json.loads(path.read_text())  # a torn file fails here
    cookies = {c["name"]: c["value"] for c in data["cookies"]}
    assert {"cf_clearance", "__cf_bm"} <= set(cookies), cookies
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = {c.name: c.value for c in cookie_jar.load(path)}
    assert loaded == cookies
    return cookies


def test_sigkill_while_the_proxy_saves_its_cookie_jar(tmp_path, jar_emu):
    config = jar_config(tmp_path, jar_emu)
    state = tmp_path / "state"
    jar = StateDir(state).cookie_jar
    control = jar_emu.url + "/_emulator/cloudflare"
    values_seen: set[str] = set()
    rng = random.Random(5)
    for _ in range(15):
        proxy = start_direct(config, state, free_port(), jar_emu.url, secret=SECRET)
        stop = threading.Event()
        saves = [0]

        def drive(proxy: ProxyProcess, stop: threading.Event, saves: list[int]) -> None:
            # Each round: Cloudflare refuses once (fresh cookies), the retry passes: one save.
            with httpx.Client(trust_env=False, timeout=10) as c:
                while not stop.is_set():
                    try:
                        c.post(control, json={"refuse_next": 1})
                        if egress(proxy.url, c) == 200:
                            saves[0] += 1
                    except httpx.HTTPError:
                        return
        driver = threading.Thread(target=drive, args=(proxy, stop, saves))
        driver.start()
        # The kill lands at a random moment among the saves; waiting for the first one keeps a
        # busy machine (a slow first request) from killing the proxy before it saved anything.
        deadline = time.monotonic() + 30
        while saves[0] == 0 and driver.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.05, 0.6))
        proxy.kill()
        stop.set()
        driver.join()
        assert saves[0] > 0, "no save happened before the kill"
        values_seen.add(check_jar(jar)["cf_clearance"])
        fault("memory proxy SIGKILLed while saving its cookie jar")
    assert len(values_seen) > 5, "the jar was not rewritten between kills"
    # The next start reads the jar: its cookies go out with the first request.
    cookies = check_jar(jar)
    httpx.post(control, json={"refuse_next": 0}, trust_env=False)
    proxy = start_direct(config, state, free_port(), jar_emu.url, secret=SECRET)
    try:
        leftovers = sorted(p.name for p in state.iterdir() if p.name.endswith(".tmp"))
        assert not leftovers, f"temporary files of interrupted writes left beside the jar: {leftovers}"
        since = jar_emu.request_count()
        with httpx.Client(trust_env=False, timeout=10) as c:
            assert egress(proxy.url, c) == 200
        (call,) = [r for r in jar_emu.requests_since(since) if r["path"].startswith("/v3/")]
        assert call["cookies"] == cookies
    finally:
        proxy.stop()
    log = (state / "logs" / "memory.log").read_text()
    assert "ignoring unreadable cookie jar" not in log and "Traceback" not in log, log[-2000:]


WRITER = r"""
import http.cookiejar, json, sys, time
from pathlib import Path
from memory_proxy.supermemory import cookie_jar
from memory_proxy.state import StateDir
from memory_proxy.launcher.supervisor import write_record
state = StateDir(Path(sys.argv[1]))
n = 0
while True:
    n += 1
    jar = http.cookiejar.CookieJar()
    for i in range(40):
        jar.set_cookie(http.cookiejar.Cookie(0, f"c{i}", f"{n}-" + "v" * 200, None, False, "example.test", True,
                                             False, "/", True, True, time.time() + 3600, False, None, None, {}))
    cookie_jar.save(jar, state.cookie_jar)
    write_record(state, {"version": 1, "n": n, "pad": "x" * 20000})
    print(n, flush=True)
"""


def test_sigkill_in_the_middle_of_atomic_writes(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    rng = random.Random(7)
    last = 0
    for _ in range(60):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(state)], cwd=ROOT, stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline()  # at least one whole write of each file happened
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        jar = json.loads((state / "supermemory_cookies.json").read_text())
        assert len(jar["cookies"]) == 40 and len({c["value"].split("-")[0] for c in jar["cookies"]}) == 1
        record = json.loads((state / "processes.json").read_text())
        assert record["version"] == 1 and len(record["pad"]) == 20000
        last = max(last, record["n"])
        fault("writer SIGKILLed in the middle of atomic writes (cookie jar, processes.json)")
    assert last > 1
    # SIGKILL leaves the temporary file of an interrupted write behind; the next start of the
    # memory proxy removes those beside the jar (test above), and they never hold a secret.
    for leftover in state.glob(".*.tmp"):
        leftover.unlink()


def test_sigkill_during_a_first_start_never_leaves_a_torn_master_key(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("memory_proxy:\n  supermemory: {api_key: os.environ/SUPERMEMORY_API_KEY}\n")
    state = tmp_path / "state"
    key_file = StateDir(state).master_key_file
    rng = random.Random(11)
    key = None
    for _ in range(10):
        proxy = start_direct(config, state, free_port(), "http://127.0.0.1:9", secret=SECRET, master_key=None,
                             wait=False)
        time.sleep(rng.uniform(0.2, 1.2))
        proxy.kill()
        if key_file.exists():
            text = key_file.read_text()
            assert text.endswith("\n") and text.startswith("sk-mp-") and len(text.strip()) > 40, repr(text)
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert key in (None, text.strip()), "the master key changed between starts"
            key = text.strip()
        fault("memory proxy SIGKILLed during its first start (master key)")
    if key is None:  # never got that far: one full start writes it
        proxy = start_direct(config, state, free_port(), "http://127.0.0.1:9", secret=SECRET, master_key=None)
        proxy.stop()
        key = key_file.read_text().strip()
    SECRETS["LITELLM_MASTER_KEY (first-start test)"] = key
