"""Part ``startup``: first requests and restarts (issue 16), in binary mode and in SDK mode.

On its own instance (the emulator, an OpenAI-family and an Anthropic-family model):

1. the first request per API shape after ``up --detach`` (``/v1/chat/completions`` and
   ``/v1/messages``, streamed and not, each through the memory proxy) against the median of the
   next 50 of the same shape: target at most 2x (the warm-up in ``memory_proxy/config/warmup.py``
   is what meets it);
2. binary mode: ``scripts/restart_litellm.sh --kill`` under a steady trickle (a new request every
   0.2 s, each on its own connection, from before the kill until after LiteLLM is back): every
   request sent while LiteLLM is away succeeds, and the longest wait is reported. A request
   LiteLLM already had when it was killed is never sent again (it may have reached the provider)
   and gets a 503 ``upstream_disconnected``; those are counted apart;
3. the first request per shape after that restart, against the same medians (target 2x).

SDK mode (``up --detach --backend sdk``) where it applies: 1, and 3 after its one process was
killed and the supervisor restarted it (LiteLLM lives in that process). 2 does not apply: with no
second process nothing holds requests while it restarts, and ``restart_litellm.sh`` has no LiteLLM
pid to signal (docs/sdk-mode.md).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx

from memory_proxy.names import MEMORY_PROXY, SUPERVISOR
from memory_proxy.state import StateDir

from .common import ROOT, free_ports, log
from .stacks import Instance, Stack, bench_env, shape_models, write_config
from .targets import Measured

SHAPES = (("chat", "/v1/chat/completions", "openai-model", False),
          ("chat, streamed", "/v1/chat/completions", "openai-model", True),
          ("messages", "/v1/messages", "anthropic-model", False),
          ("messages, streamed", "/v1/messages", "anthropic-model", True))
STEADY = 50
TRICKLE_EVERY = 0.2


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Measured]]:
    provider, supermemory, port, litellm_port, sdk_port, unused = free_ports(6)
    stack = Stack(workdir, bench_env(), args.chunk_delay, args.chunks)
    try:
        stack.start_emulator([provider, supermemory])
        log(f"work folder {workdir}; first requests and restarts, binary mode ...")
        binary = Instance("startup", write_config(workdir / "startup.yaml", shape_models(provider), port=port,
                                                  litellm_port=litellm_port, supermemory=supermemory),
                          workdir / "state-startup")
        part = binary_mode(stack, binary, f"http://127.0.0.1:{port}")
        log("first requests and restarts, SDK mode ...")
        sdk = Instance("startup-sdk", write_config(workdir / "startup-sdk.yaml", shape_models(provider),
                                                   port=sdk_port, litellm_port=unused, supermemory=supermemory),
                       workdir / "state-startup-sdk")
        part["sdk"] = sdk_mode(stack, sdk, f"http://127.0.0.1:{sdk_port}")
    finally:
        stack.stop()
    return part, measured(part)


def binary_mode(stack: Stack, instance: Instance, url: str) -> dict:
    up_s = stack.up(instance)
    warmed = _warm_up_line(StateDir(instance.state).process_log(SUPERVISOR))
    first, steady = firsts(url), steadies(url)
    restart = trickle_through_restart(stack, url, instance)
    after = firsts(url)
    stack.down(instance)
    return {"up_detach_s": up_s, "warm_up": warmed, "shapes": shapes(first, steady, after), "restart": restart}


def sdk_mode(stack: Stack, instance: Instance, url: str) -> dict:
    up_s = stack.up(instance, "--backend", "sdk")
    warmed = _warm_up_line(StateDir(instance.state).process_log(MEMORY_PROXY))
    first, steady = firsts(url), steadies(url)
    restart_s = kill_and_wait(stack, instance)
    after = firsts(url)
    stack.down(instance)
    return {"up_detach_s": up_s, "warm_up": warmed, "shapes": shapes(first, steady, after),
            "restart": {"killed": "the SDK process (SIGKILL)", "restart_s": restart_s}}


def _warm_up_line(log_file: Path) -> str | None:
    """The first warm-up line of a log (the supervisor's in binary mode, the process's in SDK mode)."""
    text = log_file.read_text(errors="replace") if log_file.exists() else ""
    lines = [line[line.index("warmed LiteLLM"):] for line in text.splitlines() if "warmed LiteLLM" in line]
    return lines[0] if lines else None


def once(url: str, path: str, model: str, stream: bool, text: str = "hello",
         timeout: float = 120) -> tuple[int, float, str]:
    """(status, seconds, body) of one request on a fresh connection, its answer read whole."""
    body = {"model": model, "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client, \
            client.stream("POST", path, json=body, headers={"anthropic-version": "2023-06-01"}) as answer:
        data = answer.read()
    return answer.status_code, time.perf_counter() - started, data[-300:].decode("utf-8", "replace")


def firsts(url: str) -> dict[str, float]:
    out = {}
    for name, path, model, stream in SHAPES:
        status, seconds, data = once(url, path, model, stream)
        if status != 200:
            raise RuntimeError(f"first {name} request answered {status}: {data}")
        out[name] = seconds
    return out


def steadies(url: str) -> dict[str, float]:
    """Per shape, the median of the next STEADY requests."""
    steady: dict[str, float] = {}
    for name, path, model, stream in SHAPES:
        times = []
        for _ in range(STEADY):
            status, seconds, data = once(url, path, model, stream)
            if status != 200:
                raise RuntimeError(f"{name} answered {status}: {data}")
            times.append(seconds)
        steady[name] = statistics.median(times)
    return steady


def shapes(first: dict, steady: dict, after: dict) -> dict:
    return {name: {"first_ms": first[name] * 1000, "median_ms": steady[name] * 1000,
                   "ratio": first[name] / steady[name], "first_after_restart_ms": after[name] * 1000,
                   "ratio_after_restart": after[name] / steady[name]} for name in steady}


def trickle_through_restart(stack: Stack, url: str, instance: Instance) -> dict:
    """Run restart_litellm.sh --kill while a new request starts every TRICKLE_EVERY seconds."""
    results: list[tuple[float, int, float, str]] = []  # (sent at, status, seconds, body tail)
    lock = threading.Lock()

    def one(i: int) -> None:
        sent = time.monotonic()
        try:
            status, seconds, data = once(url, "/v1/chat/completions", "openai-model", False, f"trickle {i}")
        except httpx.HTTPError as exc:
            status, seconds, data = 0, time.monotonic() - sent, type(exc).__name__
        with lock:
            results.append((sent, status, seconds, data))

    threads: list[threading.Thread] = []

    def spawn() -> None:
        threads.append(threading.Thread(target=one, args=(len(threads),), daemon=True))
        threads[-1].start()

    for _ in range(5):  # the trickle runs before the kill
        spawn()
        time.sleep(TRICKLE_EVERY)
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(ROOT / "scripts" / "restart_litellm.sh"), "--kill", "--config",
                             str(instance.config), "--state-dir", str(instance.state)],
                            env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while proc.poll() is None:
        spawn()
        time.sleep(TRICKLE_EVERY)
    back = time.monotonic()
    for _ in range(5):  # and after LiteLLM is back
        spawn()
        time.sleep(TRICKLE_EVERY)
    for t in threads:
        t.join(300)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise RuntimeError(f"restart_litellm.sh --kill failed ({proc.returncode}): {out[-2000:]}")
    in_litellm = [r for r in results if r[1] == 503 and "upstream_disconnected" in r[3]]
    failed = [r for r in results if r[1] != 200 and r not in in_litellm]
    return {"requests": len(results), "succeeded": sum(1 for r in results if r[1] == 200),
            "in_litellm_when_killed": len(in_litellm), "failed": len(failed),
            "failures": [f"{r[1]} {r[3][:200]}" for r in failed][:5],
            "longest_wait_s": max(r[2] for r in results if r[1] == 200),
            "restart_s": back - started}


def kill_and_wait(stack: Stack, instance: Instance, limit: float = 300) -> float:
    """SIGKILL the SDK process (the recorded pid) and wait until the supervisor has it healthy
    again under a new pid; returns the seconds that took."""
    old = stack.pid(instance)
    started = time.monotonic()
    os.kill(old, signal.SIGKILL)
    while time.monotonic() - started < limit:
        time.sleep(0.2)
        p = stack.status(instance)["processes"]["memory_proxy"]
        if p.get("pid") not in (None, old) and p.get("healthy"):
            return time.monotonic() - started
    raise RuntimeError(f"the SDK process was not back after {limit:g} s; see {instance.state / 'logs'}")


def measured(part: dict) -> list[Measured]:
    out = []
    for prefix, mode in (("", part), ("sdk_", part.get("sdk"))):
        for name, s in (mode or {}).get("shapes", {}).items():
            out.append(Measured(prefix + "first_after_up", s["ratio"], fields={"shape": name}))
            out.append(Measured(prefix + "first_after_restart", s["ratio_after_restart"], fields={"shape": name}))
    out.append(Measured("restart_failed", part["restart"]["failed"]))
    return out
