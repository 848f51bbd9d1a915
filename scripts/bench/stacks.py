"""What the parts start and stop: the emulator (tests.emulator, run as ``python -m``), instances of
``start_proxies.py up --detach`` (the full chain, the memory proxy alone, SDK mode), each with its
own config and state folder, the OTLP sink, and other commits of this repository checked out
into a temporary git worktree to compare with."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from memory_proxy.launcher import bootstrap

from .common import PYTHON, ROOT, log


def bench_env(master: str | None = None) -> dict[str, str]:
    """The environment of everything a part starts: none of the user's ``MEMORY_PROXY_*`` or
    ``OTEL_*`` settings (tracing is on only where a part switches it on), this checkout's .venv
    for every checkout's launcher, fake provider keys, and LiteLLM's master key when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMORY_PROXY_", "OTEL_"))}
    env.update(BENCH_PROVIDER_KEY="sk-emulator-" + secrets.token_hex(8),
               BENCH_SUPERMEMORY_KEY="sm-emulator-" + secrets.token_hex(8), PYTHONUNBUFFERED="1",
               MEMORY_PROXY_VENV=str(bootstrap.VENV))
    env.pop("LITELLM_MASTER_KEY", None)
    if master:
        env["LITELLM_MASTER_KEY"] = master
    return env


def path_models(provider: int, supermemory: int) -> list[dict]:
    """The seven paths' models: ``plain`` and the Supermemory-backed ``memory``."""
    base = f"http://127.0.0.1:{provider}/v1"
    return [{"model_name": "plain", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base,
                                                       "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
            {"model_name": "memory", "litellm_params": {"model": "openai/gpt-4o-mini",
                                                        "api_base": f"http://127.0.0.1:{supermemory}/v3/{base}",
                                                        "api_key": "os.environ/BENCH_PROVIDER_KEY"}}]


def shape_models(provider: int) -> list[dict]:
    """One OpenAI-family and one Anthropic-family model (the first-request part's API shapes)."""
    base = f"http://127.0.0.1:{provider}"
    return [{"model_name": "openai-model", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": base + "/v1",
                                                              "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
            {"model_name": "anthropic-model", "litellm_params": {"model": "anthropic/claude-3-5-haiku-latest",
                                                                 "api_base": base,
                                                                 "api_key": "os.environ/BENCH_PROVIDER_KEY"}}]


def write_config(path: Path, models: list[dict], *, port: int, litellm_port: int, supermemory: int,
                 **proxy: object) -> Path:
    """A config for one instance; ``proxy`` adds keys of ``memory_proxy`` (``usage``, ``otel``)."""
    config = {
        "model_list": models,
        "user_id_mappings": {"default_user_id": "bench"},
        "memory_proxy": {"host": "127.0.0.1", "port": port, "litellm_port": litellm_port,
                         "supermemory": {"base_url": f"http://127.0.0.1:{supermemory}",
                                         "api_key": "os.environ/BENCH_SUPERMEMORY_KEY"}, **proxy},
    }
    path.write_text("# written by scripts/benchmark.py\n" + yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Instance:
    """One ``up --detach``: its config and state folder, and which checkout's launcher runs it."""

    name: str
    config: Path
    state: Path
    root: Path = ROOT


@dataclass
class Stack:
    workdir: Path
    env: dict
    chunk_delay: float = 0.02
    chunks: int = 8
    emulator: subprocess.Popen | None = None
    direct: list[subprocess.Popen] = field(default_factory=list)  # the direct path's emulator processes
    helpers: list[subprocess.Popen] = field(default_factory=list)  # e.g. the OTLP sink
    instances: list[Instance] = field(default_factory=list)  # started with up, stopped with down

    def launcher(self, instance: Instance, *argv: str, python: str | None = None,
                 timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [python or sys.executable, str(instance.root / "start_proxies.py"), "--config", str(instance.config),
               "--state-dir", str(instance.state), *argv]
        return subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=instance.root, timeout=timeout)

    def up(self, instance: Instance, *argv: str, python: str | None = None, timeout: float = 400) -> float:
        """``up --detach`` ARGV; returns the seconds it took, raises with its output if it failed."""
        self.instances.append(instance)
        started = time.time()
        done = self.launcher(instance, "up", "--detach", *argv, python=python, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{instance.name}: up --detach {' '.join(argv)} failed ({done.returncode}):\n"
                               f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return time.time() - started

    def status(self, instance: Instance) -> dict:
        return json.loads(self.launcher(instance, "status", "--json").stdout)

    def pid(self, instance: Instance, process: str = "memory_proxy") -> int | None:
        return self.status(instance)["processes"][process]["pid"]

    def down(self, instance: Instance) -> None:
        self.launcher(instance, "down", timeout=120)
        self.instances.remove(instance)

    def _emulator(self, ports: list[int], log_name: str, *extra: str) -> subprocess.Popen:
        argv = [PYTHON, "-m", "tests.emulator", "--host", "127.0.0.1"]
        for port in ports:
            argv += ["--port", str(port)]
        argv += ["--chunk-delay", str(self.chunk_delay), "--chunks", str(self.chunks), "--stamp-events", *extra]
        with open(self.workdir / log_name, "wb") as out:
            return subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    env=self.env)

    def start_emulator(self, ports: list[int], direct_port: int | None = None, direct_processes: int = 0) -> None:
        """The emulator on ``ports`` (one process: one state for the providers and Supermemory),
        and ``direct_processes`` more sharing ``direct_port`` for the direct path only: one Python
        process tops out at a few thousand requests/s, below what the generator can drive."""
        self.emulator = self._emulator(ports, "emulator.log")
        for i in range(direct_processes):
            self.direct.append(self._emulator([direct_port], f"emulator-direct-{i}.log", "--reuse-port"))
        deadline = time.monotonic() + 30
        for port in (ports[0], direct_port) if direct_processes else (ports[0],):
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or any(p.poll() is not None for p in [self.emulator, *self.direct]):
                    raise RuntimeError("the emulator did not start; see " + str(self.workdir / "emulator*.log"))
                time.sleep(0.1)

    def start_sink(self, port: int) -> str:
        """The OTLP/HTTP sink (``otlp_sink.py``) on ``port``; returns its base URL once it answers."""
        with open(self.workdir / "otlp-sink.log", "wb") as out:
            self.helpers.append(subprocess.Popen([PYTHON, str(Path(__file__).with_name("otlp_sink.py")),
                                                  "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                                 start_new_session=True, env=self.env))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(url + "/stats", timeout=1)
                return url
            except httpx.HTTPError as exc:
                if time.monotonic() > deadline or self.helpers[-1].poll() is not None:
                    raise RuntimeError(f"the OTLP sink did not start; see {self.workdir / 'otlp-sink.log'}") from exc
                time.sleep(0.1)

    def settle(self, port: int, quiet: float = 0.3, limit: float = 30.0) -> None:
        """Wait until no request has reached the emulator for ``quiet`` s (a load run leaves
        LiteLLM a backlog of abandoned requests that would slow the next run), then clear
        the emulator's request record so its memory stays flat."""
        deadline = time.monotonic() + limit
        last = None
        while time.monotonic() < deadline:
            try:
                count = httpx.get(f"http://127.0.0.1:{port}/_emulator/stats", timeout=10).json()["requests"]
            except (httpx.HTTPError, ValueError, KeyError):
                count = None
            if count is not None and count == last:
                break
            last = count
            time.sleep(quiet)
        try:
            httpx.delete(f"http://127.0.0.1:{port}/_emulator/requests", timeout=10)
        except httpx.HTTPError:
            pass

    def stop(self) -> None:
        for instance in list(self.instances):
            try:
                self.down(instance)
            except (subprocess.SubprocessError, OSError) as exc:
                log(f"down failed for {instance.state}: {exc}")
        self.instances.clear()
        procs = [p for p in [self.emulator, *self.direct, *self.helpers] if p]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.emulator = None
        self.direct.clear()
        self.helpers.clear()


@dataclass(frozen=True)
class Checkout:
    rev: str
    commit: str
    subject: str
    root: Path

    @property
    def label(self) -> str:
        return f"{self.commit[:7]} ({self.subject[:60]})"


def _git(*argv: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


@contextmanager
def checkout(rev: str, workdir: Path) -> Iterator[Checkout]:
    """REV of this repository checked out into a temporary ``git worktree`` under ``workdir``,
    removed again afterwards. Its launcher runs with this checkout's .venv
    (``MEMORY_PROXY_VENV``, see ``bench_env``) and puts its own root first on ``sys.path``, so its
    own code runs; the processes it starts get its root on ``PYTHONPATH`` likewise."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    subject = _git("log", "-1", "--format=%s", commit)
    path = workdir / f"checkout-{commit[:7]}"
    _git("worktree", "add", "--detach", str(path), commit)
    log(f"{rev}: {commit[:7]} checked out into {path}")
    try:
        yield Checkout(rev, commit, subject, path)
    finally:
        try:
            _git("worktree", "remove", "--force", str(path))
        except RuntimeError as exc:
            log(f"could not remove the worktree {path}: {exc}")
