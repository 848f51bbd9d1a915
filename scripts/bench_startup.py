"""The benchmark's part "first requests and restarts" (issue 16), run by ``scripts/benchmark.py``
(at the end of a full run, or alone with ``--startup-only``).

On its own chain (``up --detach``: real LiteLLM binary, memory proxy, the emulator), with an
OpenAI-family and an Anthropic-family model:

1. the first request per API shape after ``up`` (``/v1/chat/completions`` and ``/v1/messages``,
   streamed and not, each through the memory proxy) against the median of the next 50 of the
   same shape: target at most 2x (the warm-up in ``memory_proxy/config/warmup.py`` is what meets it);
2. ``scripts/restart_litellm.sh --kill`` under a steady trickle (a new request every 0.2 s,
   each on its own connection, from before the kill until after LiteLLM is back): every
   request sent while LiteLLM is away succeeds, and the longest wait is reported. A request
   LiteLLM already had when it was killed is never sent again (it may have reached the
   provider) and gets a 503 ``upstream_disconnected``; those are counted apart;
3. the first request per shape after that restart, against the same medians (target 2x).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from pathlib import Path

import httpx
import yaml

SHAPES = (("chat", "/v1/chat/completions", "openai-model", False),
          ("chat, streamed", "/v1/chat/completions", "openai-model", True),
          ("messages", "/v1/messages", "anthropic-model", False),
          ("messages, streamed", "/v1/messages", "anthropic-model", True))
STEADY = 50
TRICKLE_EVERY = 0.2


def write_config(path: Path, *, port: int, litellm_port: int, provider: int, supermemory: int) -> None:
    a = f"http://127.0.0.1:{provider}"
    config = {
        "model_list": [
            {"model_name": "openai-model", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": a + "/v1",
                                                              "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
            {"model_name": "anthropic-model", "litellm_params": {"model": "anthropic/claude-3-5-haiku-latest",
                                                                 "api_base": a,
                                                                 "api_key": "os.environ/BENCH_PROVIDER_KEY"}},
        ],
        "user_id_mappings": {"default_user_id": "bench"},
        "memory_proxy": {"host": "127.0.0.1", "port": port, "litellm_port": litellm_port,
                         "supermemory": {"base_url": f"http://127.0.0.1:{supermemory}",
                                         "api_key": "os.environ/BENCH_SUPERMEMORY_KEY"}},
    }
    path.write_text("# written by scripts/benchmark.py (first requests and restarts)\n"
                    + yaml.safe_dump(config, sort_keys=False))


def once(url: str, path: str, model: str, stream: bool, text: str = "hello",
         timeout: float = 120) -> tuple[int, float, str]:
    """(status, seconds, body) of one request on a fresh connection, its answer read whole."""
    body = {"model": model, "max_tokens": 16, "stream": stream, "messages": [{"role": "user", "content": text}]}
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client:
        with client.stream("POST", path, json=body, headers={"anthropic-version": "2023-06-01"}) as answer:
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


def trickle_through_restart(bench, url: str, config: Path, state: Path) -> dict:
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
    script = Path(__file__).resolve().parent / "restart_litellm.sh"
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(script), "--kill", "--config", str(config), "--state-dir", str(state)],
                            env=bench.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def run_part(bench, workdir: Path, provider: int, supermemory: int, ports: tuple[int, int]) -> dict:
    """The whole part on its own chain (``bench`` has the emulator running)."""
    port, litellm_port = ports
    config, state = workdir / "startup.yaml", workdir / "state-startup"
    write_config(config, port=port, litellm_port=litellm_port, provider=provider, supermemory=supermemory)
    url = f"http://127.0.0.1:{port}"
    bench.states.append((config, state))
    started = time.monotonic()
    up = bench.launcher(config, state, "up", "--detach", timeout=400)
    up_s = time.monotonic() - started
    if up.returncode != 0:
        raise RuntimeError(f"up --detach failed ({up.returncode}):\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
    log_text = (state / "logs" / "supervisor.log").read_text(errors="replace")
    warmed = [line.split(" ", 2)[2] for line in log_text.splitlines() if "warmed LiteLLM" in line]
    first = firsts(url)
    steady: dict[str, float] = {}
    for name, path, model, stream in SHAPES:
        times = []
        for _ in range(STEADY):
            status, seconds, data = once(url, path, model, stream)
            if status != 200:
                raise RuntimeError(f"{name} answered {status}: {data}")
            times.append(seconds)
        steady[name] = statistics.median(times)
    restart = trickle_through_restart(bench, url, config, state)
    after = firsts(url)
    bench.launcher(config, state, "down", timeout=120)
    bench.states.remove((config, state))
    shapes = {name: {"first_ms": first[name] * 1000, "median_ms": steady[name] * 1000,
                     "ratio": first[name] / steady[name], "first_after_restart_ms": after[name] * 1000,
                     "ratio_after_restart": after[name] / steady[name]} for name in steady}
    return {"up_detach_s": up_s, "warm_up": warmed[0] if warmed else None, "shapes": shapes, "restart": restart,
            "targets": targets(shapes, restart)}


def targets(shapes: dict, restart: dict) -> list[dict]:
    out = []
    for name, s in shapes.items():
        out.append({"target": f"first {name} after up <= 2x the median of the next {STEADY}",
                    "value": s["ratio"], "met": s["ratio"] <= 2.0})
        out.append({"target": f"first {name} after a LiteLLM restart <= 2x that median",
                    "value": s["ratio_after_restart"], "met": s["ratio_after_restart"] <= 2.0})
    out.append({"target": "every request sent during restart_litellm.sh --kill succeeds",
                "value": restart["failed"], "met": restart["failed"] == 0})
    return out


def render(part: dict) -> str:
    lines = ["", "First requests and restarts (issue 16)",
             f"  up --detach: {part['up_detach_s']:.1f} s; {part['warm_up'] or 'no warm-up logged'}",
             f"  {'shape':<20} {'first ms':>9} {'median ms':>10} {'ratio':>6} {'after restart ms':>17} {'ratio':>6}"]
    for name, s in part["shapes"].items():
        lines.append(f"  {name:<20} {s['first_ms']:9.1f} {s['median_ms']:10.1f} {s['ratio']:6.2f} "
                     f"{s['first_after_restart_ms']:17.1f} {s['ratio_after_restart']:6.2f}")
    r = part["restart"]
    lines.append(f"  restart_litellm.sh --kill under a trickle (one request every {TRICKLE_EVERY:g} s): "
                 f"{r['succeeded']} of {r['requests']} succeeded, {r['in_litellm_when_killed']} were inside "
                 f"LiteLLM when it was killed (503, never sent twice), {r['failed']} failed otherwise; "
                 f"longest wait {r['longest_wait_s']:.1f} s; LiteLLM back after {r['restart_s']:.1f} s")
    for f in r["failures"]:
        lines.append(f"    failed: {f}")
    for t in part["targets"]:
        lines.append(f"  [{'met' if t['met'] else 'NOT MET'}] {t['target']}: {t['value']:.2f}"
                     if isinstance(t["value"], float) else
                     f"  [{'met' if t['met'] else 'NOT MET'}] {t['target']}: {t['value']}")
    return "\n".join(lines)
