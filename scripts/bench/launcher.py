"""Part ``launcher``: ``start_proxies.py --help`` and ``status`` of this checkout against the same
commands of a reference commit (issue 15: the layout change must not make them slower).

``--against REV`` (default ``REFERENCE``, main's last commit before the layout change) is checked
out into a temporary git worktree. Both checkouts start their own memory proxy in front of the
emulator (``up --detach --litellm-url``), so each ``status`` has a running instance to report on,
and both run with this checkout's .venv interpreter directly: through the interpreter you typed,
the reference's bootstrap would see other pins (pyproject.toml, constraints.txt) and reinstall
the venv. The commands alternate (this, reference, reference, this, ...) so that a drift of the
machine's load favours neither; the target is the median of the per-pair ratios, with the CPU
time (user + system of the command) beside it, which a busy machine disturbs far less.
"""

from __future__ import annotations

import argparse
import resource
import secrets
import time
from pathlib import Path

from .common import PYTHON, free_ports, log, med
from .stacks import Instance, Stack, bench_env, checkout, path_models, write_config
from .targets import Measured

REFERENCE = "4aeaf39"  # main before the layout change (issue 15 measured the layout "on main at 4aeaf39")
COMMANDS = (("help", ("--help",)), ("status", ("status",)))


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Measured]]:
    runs = args.launcher_runs or (5 if args.quick else 15)
    provider, supermemory, port, ref_port, unused = free_ports(5)
    stack = Stack(workdir, bench_env(master="sk-bench-" + secrets.token_urlsafe(24)), args.chunk_delay, args.chunks)
    with checkout(args.against, workdir) as ref:
        try:
            stack.start_emulator([provider, supermemory])
            this = Instance("this checkout", write_config(workdir / "this.yaml", path_models(provider, supermemory),
                                                          port=port, litellm_port=unused, supermemory=supermemory),
                            workdir / "state-this")
            old = Instance(ref.label, write_config(workdir / "reference.yaml", path_models(provider, supermemory),
                                                   port=ref_port, litellm_port=unused, supermemory=supermemory),
                           workdir / "state-reference", root=ref.root)
            for instance in (this, old):
                stack.up(instance, "--litellm-url", f"http://127.0.0.1:{provider}", python=PYTHON, timeout=120)
            log(f"--help and status: {runs} interleaved pairs each, this checkout against {ref.label} ...")
            times = {name: alternate(stack, this, old, argv, runs) for name, argv in COMMANDS}
        finally:
            stack.stop()
    result = {"reference": {"rev": ref.rev, "commit": ref.commit, "subject": ref.subject}, "python": PYTHON,
              "runs": runs, **{name: summary(t) for name, t in times.items()}}
    fields = {"reference": ref.commit[:7]}
    return result, [Measured(f"{name}_vs_reference", result[name]["ratio"], note(result[name]), fields)
                    for name, _ in COMMANDS]


def one(stack: Stack, instance: Instance, argv: tuple[str, ...]) -> tuple[float, float, int]:
    """Wall and CPU seconds of one command, and its exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = stack.launcher(instance, *argv, python=PYTHON, timeout=60)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, done.returncode


def alternate(stack: Stack, this: Instance, old: Instance, argv: tuple[str, ...], runs: int) -> dict[str, list]:
    """``runs`` pairs after one unmeasured pair (bytecode written, files cached), in alternating order."""
    out: dict[str, list] = {"this": [], "reference": []}
    for i in range(runs + 1):
        pair = (("this", this), ("reference", old)) if i % 2 == 0 else (("reference", old), ("this", this))
        for name, instance in pair:
            sample = one(stack, instance, argv)
            if i:
                out[name].append(sample)
    return out


def summary(times: dict[str, list]) -> dict:
    this, ref = times["this"], times["reference"]
    ratios = [a[0] / b[0] for a, b in zip(this, ref, strict=True)]
    return {"this_s": med([t[0] for t in this]), "reference_s": med([t[0] for t in ref]), "ratio": med(ratios),
            "pair_ratios": [round(r, 3) for r in ratios],
            "this_cpu_s": med([t[1] for t in this]), "reference_cpu_s": med([t[1] for t in ref]),
            "exit_codes": sorted({t[2] for t in this} | {t[2] for t in ref})}


def note(s: dict) -> str:
    return (f"this checkout {s['this_s']:.3f} s, reference {s['reference_s']:.3f} s (medians); CPU "
            f"{s['this_cpu_s']:.3f} vs {s['reference_cpu_s']:.3f} s ({s['this_cpu_s'] / s['reference_cpu_s']:.2f}x); "
            f"pair ratios {min(s['pair_ratios']):.2f}-{max(s['pair_ratios']):.2f}")
