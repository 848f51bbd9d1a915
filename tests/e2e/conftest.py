"""The whole chain, for real: ``start_proxies.py up --detach`` starts the real ``litellm``
binary and the memory proxy in front of the upstream emulator, once per test session.

The emulator listens on two ports that share one state: port A plays OpenAI and Anthropic,
port B plays Supermemory's router (``memory_proxy.supermemory.base_url``), so only models
whose ``api_base`` starts with B are Supermemory-backed. Every port is a free one and every
session has its own state folder, so the suite never touches a user's installation.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = ROOT / "start_proxies.py"
PYCHARM_UA = "OpenAIClientImpl/Java unknown"
CLAUDE_UA = "claude-cli/2.0.14 (external, cli)"
SM_KEY = "sm-test-e2e-supermemory-key"
ENV_KEYS = {
    "OPENAI_API_KEY": "sk-test-openai-e2e",
    "ANTHROPIC_API_KEY": "sk-ant-test-e2e",
    "SUPERMEMORY_API_KEY": SM_KEY,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def config_text(provider: int, supermemory: int, proxy_port: int, litellm_port: int, extra: str = "", *,
                models: str = "", read_timeout: float = 60, total_timeout: float | None = None,
                startup_wait: float = 120) -> str:
    """The test stacks' config: four models on the emulator (two Supermemory-backed) and one
    whose key is never set, then ``models`` (more ``model_list`` entries, ``{a}`` standing for
    the provider URL and ``{b}`` for Supermemory's); ``extra`` lines go under ``memory_proxy``.
    ``startup_wait``: a LiteLLM restart takes 14-20 s on an idle machine, far more on a loaded
    one, and requests sent meanwhile must wait for it rather than get a 503."""
    a, b = f"http://127.0.0.1:{provider}", f"http://127.0.0.1:{supermemory}"
    timeouts = f"connect: 2, read: {read_timeout:g}" + (f", total: {total_timeout:g}" if total_timeout else "")
    return f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{a}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: claude-3-5-haiku-latest
    litellm_params: {{model: anthropic/claude-3-5-haiku-latest, api_base: "{a}", api_key: os.environ/ANTHROPIC_API_KEY}}
  - model_name: memory/gpt-4o-mini
    litellm_params: {{model: openai/gpt-4o-mini, api_base: "{b}/v3/{a}/v1", api_key: os.environ/OPENAI_API_KEY}}
  - model_name: claude-sonnet-4-5
    litellm_params: {{model: anthropic/claude-3-5-haiku-latest, api_base: "{b}/v3/{a}",
                      api_key: os.environ/ANTHROPIC_API_KEY}}
  - model_name: needs-a-key
    litellm_params: {{model: openai/gpt-4o, api_base: "{a}/v1", api_key: os.environ/E2E_NEVER_SET_KEY}}
{models.format(a=a, b=b)}user_id_mappings:
  custom_header: x-memory-user-id
  header_patterns:
    - {{header: user-agent, pattern: '^OpenAIClientImpl/Java', user_id: pycharm-ai}}
    - {{header: user-agent, pattern: '^claude-cli/', user_id: claude-cli}}
    - {{header: user-agent, pattern: '^(Async)?OpenAI/Python', user_id: openai-python}}
    - {{header: user-agent, pattern: '^(Async)?Anthropic/Python', user_id: anthropic-python}}
    - {{header: user-agent, pattern: '^curl/', user_id: curl}}
  default_user_id: default-dev
memory_proxy:
  port: {proxy_port}
  litellm_port: {litellm_port}
  startup_wait: {startup_wait:g}
  timeouts: {{{timeouts}}}
  supermemory:
    base_url: {b}
    api_key: os.environ/SUPERMEMORY_API_KEY
    cloudflare_retry_delay: 0.1
{extra}"""


def cli_env(**extra: str) -> dict[str, str]:
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
    root: Path
    config: Path
    state: Path
    provider_port: int
    supermemory_port: int
    proxy_port: int
    litellm_port: int
    env: dict[str, str] = field(default_factory=cli_env)
    last_up: subprocess.CompletedProcess | None = None

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

    def up(self) -> subprocess.CompletedProcess:
        result = self.cli("up", "--detach")
        assert result.returncode == 0, f"up --detach failed:\n{result.stdout}\n{result.stderr}\n" + \
            (self.state / "logs" / "litellm.log").read_text(errors="replace")[-3000:] \
            if (self.state / "logs" / "litellm.log").exists() else ""
        self.last_up = result
        return result


def _wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    """The emulator on two ports (providers, Supermemory) sharing one state."""
    root = tmp_path_factory.mktemp("emulator")
    provider, supermemory = free_port(), free_port()
    with open(root / "emulator.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.emulator", "--port", str(provider),
                                 "--port", str(supermemory), "--chunk-delay", "0.01"],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{provider}/_emulator/stats")
        _wait_http(f"http://127.0.0.1:{supermemory}/_emulator/stats")
        yield provider, supermemory
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def new_stack(root: Path, emulator: tuple[int, int]) -> Stack:
    """A stack on free ports with its config and state under ``root``; nothing started yet."""
    provider, supermemory = emulator
    proxy_port, litellm_port = free_port(), free_port()
    config = root / "config.yaml"
    config.write_text(config_text(provider, supermemory, proxy_port, litellm_port))
    return Stack(root, config, root / "state", provider, supermemory, proxy_port, litellm_port)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, emulator):
    """LiteLLM and the memory proxy, started once by ``up --detach``; ``down`` at the end."""
    if shutil.which("litellm", path=str(Path(sys.executable).parent)) is None and shutil.which("litellm") is None:
        pytest.fail("the litellm executable is missing: the e2e tests run the real binary")
    st = new_stack(tmp_path_factory.mktemp("e2e"), emulator)
    try:
        st.up()
        yield st
    finally:
        result = st.cli("down", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert not port_taken(st.proxy_port) and not port_taken(st.litellm_port)
