"""The processes the tests start, each written once:

- ``start_emulator``: the emulator (``python -m tests.emulator``) on two ports sharing one
  state: port A plays OpenAI and Anthropic, port B Supermemory's router
  (``memory_proxy.supermemory.base_url``), so only models whose ``api_base`` starts with B
  are Supermemory-backed;
- ``start_memory_proxy``: ``python -m memory_proxy`` (or ``memory_proxy.sdk``) alone, no
  supervisor;
- ``Stack``/``new_stack``: what a user runs, through the launcher (``start_proxies.py up
  --detach``: the supervisor, the real ``litellm`` binary, the memory proxy);
- ``both_backends``: one config served by both backends: the real ``litellm`` binary with the
  generated config behind ``create_app`` (binary mode) and ``create_sdk_app`` (SDK mode), both
  in this process, in front of the emulator.

Every port is a free one and every stack has its own state folder, so the suite never touches
a user's installation.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from memory_proxy.config.litellm import build_litellm_config, egress_base, render, usage_callback_env
from memory_proxy.config.model import Config
from memory_proxy.names import EGRESS_SECRET_ENV
from tests.support import LAUNCHER, ROOT
from tests.support.configs import config_text
from tests.support.ports import free_port, port_taken
from tests.support.readiness import poll, wait_http
from tests.support.servers import ServerThread


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the emulator ---------------------------------------------------------------------------


@dataclass
class Emulator:
    """The emulator process and its control endpoints (``/_emulator/...``)."""

    proc: subprocess.Popen
    provider_port: int
    supermemory_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    def fault(self, mode: str | None, count: int = 1, delay: float | None = None) -> None:
        body: dict = {"mode": mode, "count": count}
        if delay is not None:
            body["delay"] = delay
        answer = httpx.post(self.url + "/_emulator/faults", json=body, trust_env=False)
        assert answer.status_code == 200, answer.text

    def clear_fault(self) -> None:
        self.fault(None, 0)

    def refuse_cloudflare(self, count: int = 1) -> None:
        """Cloudflare refuses the next ``count`` Supermemory requests (503, error code 1200)."""
        answer = httpx.post(self.url + "/_emulator/cloudflare", json={"refuse_next": count}, trust_env=False)
        assert answer.status_code == 200, answer.text

    def stats(self) -> dict:
        return httpx.get(self.url + "/_emulator/stats", trust_env=False).json()

    def request_count(self) -> int:
        return self.stats()["requests"]

    def requests_since(self, index: int) -> list[dict]:
        return httpx.get(self.url + "/_emulator/requests", params={"since": index}, trust_env=False).json()

    def forget_requests(self) -> None:
        httpx.delete(self.url + "/_emulator/requests", trust_env=False)

    def wait_streams(self, expected: int = 0, timeout: float = 5.0) -> dict:
        """The stats once ``expected`` streams are open, or after ``timeout`` seconds."""
        return poll(self.stats, lambda stats: stats["active_streams"] == expected, timeout)

    def stop(self) -> None:
        stop_process(self.proc)


def start_emulator(root: Path, *, chunk_delay: float | None = None, chunks: int | None = None,
                   env: dict[str, str] | None = None) -> Emulator:
    """The emulator on two free ports (providers; Supermemory) sharing one state, as a real
    process logging to ``root/emulator.log``; the emulator's own defaults where no
    ``chunk_delay`` (pause between streamed chunks) or ``chunks`` (per answer) is given."""
    root.mkdir(parents=True, exist_ok=True)
    provider, supermemory = free_port(), free_port()
    argv = [sys.executable, "-m", "tests.emulator", "--port", str(provider), "--port", str(supermemory)]
    if chunk_delay is not None:
        argv += ["--chunk-delay", str(chunk_delay)]
    if chunks is not None:
        argv += ["--chunks", str(chunks)]
    log = root / "emulator.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    emu = Emulator(proc, provider, supermemory)
    try:
        for port in (provider, supermemory):
            wait_http(f"http://127.0.0.1:{port}/_emulator/stats", proc=proc, log=log)
    except BaseException:
        emu.stop()
        raise
    return emu


# --- a memory proxy alone ----------------------------------------------------------------------


@dataclass
class ProxyProcess:
    """``python -m memory_proxy`` (or ``memory_proxy.sdk``) started by a test, no supervisor."""

    proc: subprocess.Popen
    port: int
    state: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc)


def start_memory_proxy(config: Path, state: Path, port: int, *args: str, env: dict[str, str],
                       module: str = "memory_proxy", log: Path | None = None, cwd: Path = ROOT,
                       wait: bool = True, timeout: float = 30) -> ProxyProcess:
    """``python -m <module> --config <config> --state-dir <state> <args>``, serving on ``port``
    (``--port`` among ``args``, or the config's), its output in ``log`` (default: the state
    folder's ``logs/memory.log``, as the launcher's). With ``wait``: once ``/health`` answers
    at all (503 too: LiteLLM may be away); killed if it does not within ``timeout`` seconds."""
    log = log or state / "logs" / "memory.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(config), "--state-dir", str(state),
                                 *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    proxy = ProxyProcess(proc, port, state, log)
    if wait:
        try:
            wait_http(proxy.url + "/health", timeout=timeout, ok=None, proc=proc, log=log, every=0.05)
        except BaseException:
            proxy.kill()
            raise
    return proxy


# --- a stack as a user starts it (start_proxies.py up --detach) --------------------------------

SM_KEY = "sm-test-e2e-supermemory-key"
ENV_KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-e2e",
    "ANTHROPIC_API_KEY": "sk-ant-test-e2e",
    "SUPERMEMORY_API_KEY": SM_KEY,
}


def cli_env(**extra: str) -> dict[str, str]:
    """The launcher's environment: this one without proxies or the launcher's own settings,
    ``ENV_KEYS`` and ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LITELLM_MASTER_KEY", "MEMORY_PROXY_STATE_DIR", "MEMORY_PROXY_CONFIG")
           and not k.lower().endswith("_proxy")}
    env.update(ENV_KEYS)
    # The interpreter running the tests has every dependency: let bootstrap treat it as the
    # project's venv instead of creating .venv (scripts call plain python3 otherwise).
    env["MEMORY_PROXY_VENV"] = sys.prefix
    env["MEMORY_PROXY_PYTHON"] = sys.executable
    env.pop("E2E_NEVER_SET_KEY", None)
    env.update(extra)
    return env


@dataclass
class Stack:
    """A config and a state folder for ``start_proxies.py``, and what runs from them."""

    root: Path
    config: Path
    state: Path
    provider_port: int
    supermemory_port: int
    proxy_port: int
    litellm_port: int
    env: dict[str, str] = field(default_factory=cli_env)
    last_up: subprocess.CompletedProcess | None = None
    emu: Emulator | None = None

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    def cli(self, *args: str, config: Path | None = None, state: Path | None = None, timeout: float = 300,
            env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(LAUNCHER), "--config", str(config or self.config),
                "--state-dir", str(state or self.state), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env or self.env,
                              cwd=cwd or self.root)

    def status(self) -> dict:
        result = self.cli("status", "--json", timeout=30)
        return json.loads(result.stdout)

    def record(self) -> dict:
        return json.loads((self.state / "processes.json").read_text())

    def pid(self, name: str) -> int:
        return int(self.record()["processes"][name]["pid"])

    def process(self, name: str) -> psutil.Process:
        return psutil.Process(self.pid(name))

    def master_key(self) -> str:
        return (self.state / "litellm_master_key").read_text().strip()

    def signal_litellm(self, sig: int) -> int:
        """Signal the recorded LiteLLM's process group (it leads its own session)."""
        pid = self.pid("litellm")
        os.killpg(pid, sig)
        return pid

    def proxy_connections(self) -> list:
        """The memory proxy's TCP connections that are not its listening socket."""
        return [c for c in self.process("memory_proxy").net_connections(kind="tcp")
                if c.status != psutil.CONN_LISTEN]

    def logs(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace") for p in (self.state / "logs").glob("*.log")}

    def requests_since(self, index: int) -> list[dict]:
        return httpx.get(f"{self.emulator_url}/_emulator/requests", params={"since": index}).json()

    def request_count(self) -> int:
        return httpx.get(f"{self.emulator_url}/_emulator/stats").json()["requests"]

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.proxy_url, timeout=60, trust_env=False, **kwargs)

    def wait_healthy(self, timeout: float = 180, changed_from: int | None = None) -> dict:
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            status = self.status()
            pid = status["processes"].get("litellm", {}).get("pid")
            if status["healthy"] and (changed_from is None or (pid and pid != changed_from)):
                return status
            time.sleep(1)
        raise AssertionError(f"not healthy within {timeout} s: {json.dumps(status, indent=1)}")

    def up(self, *args: str) -> subprocess.CompletedProcess:
        """``up --detach <args>``, which must succeed."""
        result = self.cli("up", "--detach", *args)
        litellm_log = self.state / "logs" / "litellm.log"  # none in SDK mode
        assert result.returncode == 0, f"up --detach failed:\n{result.stdout}\n{result.stderr}\n" + (
            litellm_log.read_text(errors="replace")[-3000:] if litellm_log.exists() else "")
        self.last_up = result
        return result

    @contextlib.contextmanager
    def running(self, *args: str) -> Iterator[Stack]:
        """``up --detach <args>`` for the block, then ``down`` (also after a failed ``up``)."""
        try:
            self.up(*args)
            yield self
        finally:
            self.down()

    def down(self) -> subprocess.CompletedProcess:
        """``down``, which must succeed and leave both ports free."""
        result = self.cli("down", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not port_taken(self.proxy_port) and not port_taken(self.litellm_port)
        return result


def new_stack(root: Path, emu: Emulator, *, config: Callable[[int, int], str] | None = None,
              env: dict[str, str] | None = None, litellm_port: int | None = None) -> Stack:
    """A stack on free ports in front of ``emu``, its config and state under ``root``; nothing
    started yet. ``config(proxy_port, litellm_port)``: the config's text (default: the
    emulator stacks' ``config_text``)."""
    root.mkdir(parents=True, exist_ok=True)
    proxy_port, litellm_port = free_port(), litellm_port or free_port()
    path = root / "config.yaml"
    path.write_text(config(proxy_port, litellm_port) if config else
                    config_text(emu.provider_port, emu.supermemory_port, proxy_port, litellm_port))
    return Stack(root, path, root / "state", emu.provider_port, emu.supermemory_port, proxy_port, litellm_port,
                 env=env or cli_env(), emu=emu)


# --- both backends from one config ---------------------------------------------------------------

MODES = ("binary", "sdk")
FRONT_KEY = "front-door-key-0123456789abcdef"
MASTER = "sk-parity-master-" + "7" * 24
SECRET = "parity-egress-secret-0123456789"
CHAIN_SM_KEY = "sm-parity-supermemory-key"
OPENAI_KEY, ANTHROPIC_KEY = "sk-parity-openai", "sk-ant-parity"
ENV = {"OPENAI_API_KEY": OPENAI_KEY, "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "SUPERMEMORY_API_KEY": CHAIN_SM_KEY,
       "FRONT_KEY": FRONT_KEY}


def chain_env(**extra: str) -> dict[str, str]:
    """The environment of ``both_backends``: this one without proxies, ``ENV``, LiteLLM's local
    cost map, the master key and the egress secret, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(ENV, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MASTER_KEY=MASTER, **{EGRESS_SECRET_ENV: SECRET})
    env.update(extra)
    return env


@dataclass(frozen=True)
class Ports:
    provider: int
    supermemory: int
    binary: int
    litellm: int
    sdk: int


@dataclass
class Backends:
    emulator: str  # the provider port's URL (the emulator's control endpoints too)
    urls: dict[str, str]  # mode -> memory proxy URL
    apps: dict[str, object]  # mode -> the running app (app.state.runtime)


@contextlib.contextmanager
def both_backends(tmp: Path, env: dict[str, str], config_for: Callable[[Ports], Config], *,
                  litellm_env: Callable[[dict], dict[str, str]] | None = None,
                  before_sdk: Callable[[], None] | None = None) -> Iterator[Backends]:
    """The emulator, the real ``litellm`` binary with the generated config behind ``create_app``
    (binary mode) and ``create_sdk_app`` in this process (SDK mode), from ``config_for(ports)``.
    ``litellm_env(generated)`` may change the generated config and returns LiteLLM's extra
    environment (what the launcher adds besides the usage callback's); ``before_sdk`` runs once
    LiteLLM is importable here. The generated config is written to ``tmp/state``, where the
    launcher writes it."""
    from memory_proxy.server.app import create_app

    emu = start_emulator(tmp, env=env)
    try:
        ports = Ports(emu.provider_port, emu.supermemory_port, free_port(), free_port(), free_port())
        config = config_for(ports)
        generated = build_litellm_config(config, egress_base(ports.binary), env)
        extra = {**usage_callback_env(ports.binary, "127.0.0.1"),
                 **(litellm_env(generated) if litellm_env else {})}
        path = tmp / "state" / "litellm_config.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(render(generated, config.path))
        with open(tmp / "litellm.log", "w") as log:
            litellm = subprocess.Popen(
                [str(Path(sys.executable).parent / "litellm"), "--config", str(path), "--host", "127.0.0.1",
                 "--port", str(ports.litellm)], cwd=path.parent, env={**env, **extra}, stdout=log,
                stderr=subprocess.STDOUT)
        try:
            # LiteLLM boots in its process while this one imports LiteLLM for the SDK app.
            from memory_proxy.sdk.app import create_sdk_app

            if before_sdk:
                before_sdk()
            deadline = time.monotonic() + 120
            sdk_app = create_sdk_app(config, master_key=MASTER, egress_secret=SECRET, port=ports.sdk,
                                     state_dir=tmp / "sdk-state", environ=env)
            binary_app = create_app(config, litellm_url=f"http://127.0.0.1:{ports.litellm}", master_key=MASTER,
                                    egress_secret=SECRET, state_dir=tmp / "binary-state", environ=env)
            with ServerThread(sdk_app, port=ports.sdk) as sdk_server:
                wait_http(f"http://127.0.0.1:{ports.litellm}/health/readiness", timeout=deadline - time.monotonic(),
                          proc=litellm, log=tmp / "litellm.log", every=0.2)
                with ServerThread(binary_app, port=ports.binary) as binary_server:
                    yield Backends(emu.url, {"binary": binary_server.url, "sdk": sdk_server.url},
                                   {"binary": binary_app, "sdk": sdk_app})
        finally:
            stop_process(litellm)
    finally:
        emu.stop()
