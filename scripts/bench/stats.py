"""Part ``stats``: ``start_proxies.py stats`` over a large usage store (issue 17: each report in
under a second over a million records). Starts nothing: the store is filled through the usage
writer's own upsert (the rollup included), then each report command runs three times."""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import subprocess
import time
from pathlib import Path

from .common import ROOT, log, med, user_python
from .targets import Measured

COMMANDS = ([], ["daily"], ["weekly", "--by", "model"], ["monthly", "--by", "provider", "--breakdown"],
            ["session"], ["daily", "--by", "project", "--json"])


def fill_usage_store(state: Path, records: int, days: int = 30) -> float:
    """``records`` synthetic usage records over ``days`` through the writer's own upsert (the
    rollup included), shaped like a busy installation: 10 clients, 4 models, Claude Code
    sessions of two hours. Returns the seconds the writer took."""
    from memory_proxy.usage.record import derive
    from memory_proxy.usage.store import SqliteStore

    store = SqliteStore(state / "usage.sqlite3")
    rnd = random.Random(17)
    now = int(time.time() * 1000)
    clients = ["claude-cli", "pycharm-ai", "openai-python", "proj-a", "proj-b", "curl", "default-dev", "ci-1",
               "ci-2", "notebook"]
    models = ["gpt-4o-mini", "claude-sonnet-4-5", "memory/gpt-4o-mini", "claude-3-5-haiku-latest"]
    started = time.perf_counter()
    batch = []
    for i in range(records):
        client, model = rnd.choice(clients), rnd.choice(models)
        ts = now - rnd.randrange(days * 86_400_000)
        latency = rnd.lognormvariate(6, 1)
        streamed = rnd.random() < 0.6
        batch.append(derive({
            "request_id": f"{i:032x}", "ts_ms": ts, "client_id": client,
            "client_source": "scope_path" if client.startswith("proj") else "pattern", "method": "POST",
            "path": "/v1/messages" if "claude" in model else "/v1/chat/completions", "model_group": model,
            "deployment": model, "provider": "anthropic" if "claude" in model else "openai",
            "status": 200 if rnd.random() > 0.03 else 500, "completed": 1, "streamed": int(streamed),
            "latency_ms": latency, "ttfb_ms": latency * 0.3, "first_event_ms": latency * 0.3 if streamed else None,
            "input_tokens": rnd.randrange(2000), "output_tokens": rnd.randrange(800),
            "cache_read_tokens": rnd.randrange(5000), "cache_write_tokens": rnd.randrange(300),
            "cost_usd": rnd.random() / 100, "priced": int("haiku" not in model),
            "sm_error": "x" if rnd.random() < 0.01 else None, "sm_context_modified": int(rnd.random() < 0.5),
            "cf_retries": 0, "session_id": f"{client}-{ts // 7_200_000}" if client == "claude-cli" else None,
        }, frozenset({"memory/gpt-4o-mini"})))
        if len(batch) == 5000:  # the writer's largest batch
            store.upsert(batch)
            batch = []
    if batch:
        store.upsert(batch)
    store.close()
    return time.perf_counter() - started


def time_command(argv: list[str], label: str) -> dict:
    """Three runs of one command: median and largest wall time, median CPU time."""
    times, cpu = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        if done.returncode != 0:
            raise RuntimeError(f"{label} failed: {done.stderr[-500:]}")
    return {"command": label, "median_s": round(med(times), 3), "max_s": round(max(times), 3),
            "cpu_median_s": round(med(cpu), 3)}


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Measured]]:
    state = workdir / "state"
    state.mkdir(parents=True)
    config = workdir / "config.yaml"
    config.write_text("model_list: []\n")
    log(f"writing {args.stats_records:,} usage records (the writer's upsert and rollup) into {state}")
    fill_s = fill_usage_store(state, args.stats_records)
    size_mb = (state / "usage.sqlite3").stat().st_size / 1e6
    log(f"  {fill_s:.1f} s ({args.stats_records / fill_s:,.0f} records/s), {size_mb:.0f} MB")
    base = [user_python(), str(ROOT / "start_proxies.py"), "--config", str(config), "--state-dir", str(state)]
    rows = [time_command([*base, "stats", *extra], " ".join(["stats", *extra])) for extra in COMMANDS]
    shutil.rmtree(state, ignore_errors=True)
    result = {"records": args.stats_records, "fill_s": round(fill_s, 1), "store_mb": round(size_mb), "stats": rows}
    fields = {"records": f"{args.stats_records:,}"}
    return result, [Measured("stats_s", r["median_s"], f"max {r['max_s']:.3f} s, CPU {r['cpu_median_s']:.3f} s",
                             {**fields, "command": r["command"]}) for r in rows]
