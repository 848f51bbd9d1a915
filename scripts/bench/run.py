"""The run: the parts asked for, one after the other, each on what it starts itself and stops
again; then the targets judged (targets.py), the figures printed (render.py) and written as JSON."""

from __future__ import annotations

import argparse
import signal
import tempfile
import traceback
from pathlib import Path

from . import alone, launcher, proxies, render, startup, stats
from .common import log, machine, write_json
from .targets import Measured, judge

RUNNERS = {"proxies": proxies.run, "startup": startup.run, "launcher": launcher.run, "tracing": alone.tracing,
           "usage": alone.usage, "stats": stats.run}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(args: argparse.Namespace, parts: list[str]) -> dict:
    """Every part in ``parts``; one that fails is reported and the others still run."""
    workdir = Path(tempfile.mkdtemp(prefix="memory-proxy-bench-"))
    results: dict = {"machine": machine(), "quick": args.quick, "workdir": str(workdir), "parts": parts, "failed": {}}
    measured: list[Measured] = []
    signal.signal(signal.SIGTERM, _interrupt)
    for part in parts:
        log(f"part {part} ...")
        (workdir / part).mkdir()
        try:
            data, found = RUNNERS[part](args, workdir / part)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            log(f"part {part} failed:\n{traceback.format_exc()}")
            results["failed"][part] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            continue
        if part == "proxies":
            results.update(data)  # at the top of the JSON, where a full run has always put them
        else:
            results[part] = data
        measured += found
    results["targets"] = judge(measured)
    json_path = Path(args.json) if args.json else workdir / "benchmark.json"
    write_json(json_path, results)
    print(render.render(results))
    print(f"\nJSON: {json_path}")
    return results
