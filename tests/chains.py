"""Both backends from one config, as the observability tests run them: the emulator (provider
+ Supermemory ports), the real ``litellm`` binary with the generated config behind
``create_app`` (binary mode), and ``create_sdk_app`` in this process (SDK mode)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from memory_proxy.config.litellm import build_litellm_config, egress_base, render, usage_callback_env
from memory_proxy.config.model import Config
from memory_proxy.server.app import create_app
from tests.servers import ServerThread
from tests.test_parity import MASTER, SECRET, free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]


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
def running(tmp: Path, env: dict[str, str], config_for: Callable[[Ports], Config], *,
            litellm_env: Callable[[dict], dict[str, str]] | None = None,
            before_sdk: Callable[[], None] | None = None) -> Iterator[Backends]:
    """``litellm_env(generated)`` may change the generated config and returns LiteLLM's extra
    environment (what the launcher adds besides the usage callback's); ``before_sdk`` runs once
    LiteLLM is importable here. The generated config is written to ``tmp/state``, where the launcher writes it."""
    ports = Ports(*(free_port() for _ in range(5)))
    config = config_for(ports)
    generated = build_litellm_config(config, egress_base(ports.binary), env)
    extra = {**usage_callback_env(ports.binary, "127.0.0.1"), **(litellm_env(generated) if litellm_env else {})}
    path = tmp / "state" / "litellm_config.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(render(generated))
    procs = []
    try:
        with open(tmp / "emulator.log", "w") as emulator_log, open(tmp / "litellm.log", "w") as litellm_log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "tests.emulator", "--port", str(ports.provider), "--port",
                 str(ports.supermemory)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=emulator_log))
            procs.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "litellm"), "--config", str(path), "--host", "127.0.0.1",
                 "--port", str(ports.litellm)],
                cwd=path.parent, env={**env, **extra}, stdout=litellm_log, stderr=subprocess.STDOUT))
        # LiteLLM boots in its process while this one imports LiteLLM for the SDK app.
        from memory_proxy.sdk.app import create_sdk_app

        if before_sdk:
            before_sdk()
        deadline = time.monotonic() + 120
        wait_http(f"http://127.0.0.1:{ports.provider}/health/liveliness", deadline, procs[0])
        sdk_app = create_sdk_app(config, master_key=MASTER, egress_secret=SECRET, port=ports.sdk,
                                 state_dir=tmp / "sdk-state", environ=env)
        binary_app = create_app(config, litellm_url=f"http://127.0.0.1:{ports.litellm}", master_key=MASTER,
                                egress_secret=SECRET, state_dir=tmp / "binary-state", environ=env)
        with ServerThread(sdk_app, port=ports.sdk) as sdk_server:
            wait_http(f"http://127.0.0.1:{ports.litellm}/health/readiness", deadline, procs[1])
            with ServerThread(binary_app, port=ports.binary) as binary_server:
                yield Backends(f"http://127.0.0.1:{ports.provider}",
                               {"binary": binary_server.url, "sdk": sdk_server.url},
                               {"binary": binary_app, "sdk": sdk_app})
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
