"""Parts ``usage`` and ``tracing``: copies of the memory proxy alone in front of the emulator
(``up --detach --litellm-url``), each configured differently, measured with the load generator at
1 and 20 clients, 3 s a run, their order reversed every other round; figures are medians over
rounds and the ratios are of those medians.

- ``usage`` (issue 17): the usage record on (the default) against ``memory_proxy.usage.enabled:
  false``; target: on within 5 % of off in throughput and p50.
- ``tracing`` (issue 18): this checkout with tracing off (no collector named) against the
  reference commit, main before issue 18 was merged (``--tracing-against``, default
  ``TRACING_REFERENCE``): the proxy without /metrics, structured logs and tracing code at all;
  target: off within 5 % of it. And the cost of tracing on, for information: this checkout with
  ``memory_proxy.otel.endpoint`` naming a local OTLP/HTTP sink that accepts and discards every
  export (``otlp_sink.py``), against tracing off.

Each part also runs a ``control``: a second copy configured exactly like the one it is compared
with (``off``, ``reference``), in the same rounds. Its ratio is the run's own noise: a compared
ratio no further from 1 than the control's says nothing about the copies' difference.
"""

from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path

import httpx

from .common import ROOT, free_ports, log, med
from .load import Endpoint, PyLoad, Wrk, generator, httpx_latency
from .stacks import Instance, Stack, bench_env, checkout, path_models, write_config
from .targets import Measured

TRACING_REFERENCE = "68b084f"  # main before issue 18's merge (ae954e5^1): no /metrics, no tracing code
LOADS = (1, 20)  # clients


def _stack(args: argparse.Namespace, workdir: Path) -> Stack:
    return Stack(workdir, bench_env(master="sk-bench-" + secrets.token_urlsafe(24)), args.chunk_delay, args.chunks)


def _instance(name: str, workdir: Path, emulator: list[int], ports: list[int], root: Path | None = None,
              **proxy: object) -> tuple[Instance, int]:
    """One copy: in front of the emulator's ``(provider, supermemory)`` ports, on ``ports[0]``."""
    provider, supermemory = emulator
    port, unused = ports
    config = write_config(workdir / f"{name}.yaml", path_models(provider, supermemory), port=port,
                          litellm_port=unused, supermemory=supermemory, **proxy)
    return Instance(name, config, workdir / f"state-{name}", root or ROOT), port


def alternate(stack: Stack, gen: Wrk | PyLoad, provider: int, copies: list[tuple[Instance, int]],
              rounds: int) -> dict[str, dict[str, list]]:
    """Start each copy, warm it up, then the rounds; returns each copy's runs per load."""
    for instance, _ in copies:
        stack.up(instance, "--litellm-url", f"http://127.0.0.1:{provider}", timeout=120)
    endpoints = {i.name: Endpoint(i.name, port, "sk-anything", "plain") for i, port in copies}
    for endpoint in endpoints.values():
        httpx_latency(endpoint, 300)
    stack.settle(provider)
    names = list(endpoints)
    log(f"{', '.join(names)}: {rounds} rounds x (1 and 20 clients) x {len(names)} proxies x 3 s ...")
    per: dict[str, dict[str, list]] = {name: {} for name in names}
    for r in range(rounds):
        for clients in LOADS:
            for name in names if r % 2 == 0 else names[::-1]:
                per[name].setdefault(f"c{clients}", []).append(gen.run(endpoints[name], clients, 3.0))
                stack.settle(provider)
    return per


def compare(per: dict, a: str, b: str, key: str) -> dict:
    """``a`` against ``b`` at one load: medians over rounds, their ratios, and each round's ratio."""
    out: dict = {}
    for field_, name in (("rps", "rps"), ("p50_ms", "p50")):
        out[f"{a}_{field_}"], out[f"{b}_{field_}"] = (med([x[field_] for x in per[n][key]]) for n in (a, b))
        out[f"{name}_ratio"] = out[f"{a}_{field_}"] / out[f"{b}_{field_}"]
        out[f"{name}_per_round"] = [round(x[field_] / y[field_], 3)
                                    for x, y in zip(per[a][key], per[b][key], strict=True)]
    return out


def _rounds(figures: dict, name: str, control: dict) -> str:
    """The note beside a target: each round's ratio, and the control's ratio (the run's noise)."""
    return ("per round: " + ", ".join(f"{x:.2f}" for x in figures[f"{name}_per_round"])
            + f"; control (two identical copies): {control[f'{name}_ratio']:.3f}")


def usage(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Measured]]:
    rounds = args.rounds or (2 if args.quick else 4)
    provider, supermemory, *own = free_ports(8)  # all at once: none is handed out twice
    stack, gen = _stack(args, workdir), generator(args.generator, workdir)
    try:
        stack.start_emulator([provider, supermemory])
        emulator = [provider, supermemory]
        on = _instance("on", workdir, emulator, own[0:2])
        copies = [on, _instance("off", workdir, emulator, own[2:4], usage={"enabled": False}),
                  _instance("control", workdir, emulator, own[4:6], usage={"enabled": False})]
        per = alternate(stack, gen, provider, copies, rounds)
        written = httpx.get(f"http://127.0.0.1:{on[1]}/health", timeout=5).json()["memory_proxy"]["usage"]
    finally:
        stack.stop()
        gen.close()
    result: dict = {"rounds": rounds, "generator": gen.version, "usage_on": written}
    out = []
    for c in LOADS:
        key = f"c{c}"
        figures = result[key] = compare(per, "on", "off", key)
        control = figures["control"] = compare(per, "control", "off", key)
        out.append(Measured("usage_on_rps", figures["rps_ratio"], _rounds(figures, "rps", control), {"clients": c}))
        out.append(Measured("usage_on_p50", figures["p50_ratio"], _rounds(figures, "p50", control), {"clients": c}))
    return result, out


def tracing(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Measured]]:
    rounds = args.rounds or (2 if args.quick else 4)
    provider, supermemory, sink_port, *own = free_ports(11)
    stack, gen = _stack(args, workdir), generator(args.generator, workdir)
    with checkout(args.tracing_against, workdir) as ref:
        try:
            stack.start_emulator([provider, supermemory])
            sink = stack.start_sink(sink_port)
            emulator = [provider, supermemory]
            copies = [_instance("reference", workdir, emulator, own[0:2], root=ref.root),
                      _instance("off", workdir, emulator, own[2:4]),
                      _instance("on", workdir, emulator, own[4:6], otel={"endpoint": sink}),
                      _instance("control", workdir, emulator, own[6:8], root=ref.root)]
            per = alternate(stack, gen, provider, copies, rounds)
            exported = _exported(sink)
        finally:
            stack.stop()
            gen.close()
    result: dict = {"rounds": rounds, "generator": gen.version, "exported": exported,
                    "reference": {"rev": ref.rev, "commit": ref.commit, "subject": ref.subject}}
    out = []
    for c in LOADS:
        key = f"c{c}"
        result[key] = {"off_vs_reference": compare(per, "off", "reference", key),
                       "on_vs_off": compare(per, "on", "off", key),
                       "control": compare(per, "control", "reference", key)}
        fields = {"reference": ref.commit[:7], "clients": c}
        off = result[key]["off_vs_reference"]
        control = result[key]["control"]
        out.append(Measured("tracing_off_rps", off["rps_ratio"], _rounds(off, "rps", control), fields))
        out.append(Measured("tracing_off_p50", off["p50_ratio"], _rounds(off, "p50", control), fields))
    return result, out


def _exported(sink: str, wait: float = 8.0) -> dict:
    """What the sink received; waits for the batch processor's next export (every 5 s) if nothing yet."""
    deadline = time.monotonic() + wait
    while True:
        got = httpx.get(sink + "/stats", timeout=5).json()
        if got["exports"] or time.monotonic() > deadline:
            return got
        time.sleep(0.5)
