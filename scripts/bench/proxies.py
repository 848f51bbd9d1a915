"""Part ``proxies``: the seven paths side by side, round by round (issue 4), SDK mode against
binary mode (issue 6), the memory proxy's RSS over many requests and the launcher's own times.

  1. direct        the emulator itself (one process per core sharing a port: stateless load)
  2. proxy         the memory proxy alone in front of the emulator (``up --litellm-url``)
  3. litellm       LiteLLM alone in front of the emulator
  4. chain         memory proxy -> LiteLLM -> emulator (ordinary model)
  5. chain_sm      memory proxy -> LiteLLM -> egress -> emulator (Supermemory-backed model)
  6. sdk           SDK-mode memory proxy (Router in-process) -> emulator (ordinary model)
  7. sdk_sm        SDK-mode memory proxy -> its egress -> emulator (Supermemory-backed model)
"""

from __future__ import annotations

import argparse
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from .common import cpu_s, free_ports, log, med, timed, tree_rss_mb, user_python
from .load import Endpoint, PyLoad, Wrk, generator, httpx_latency
from .stacks import Instance, Stack, bench_env, path_models, write_config
from .streams import StreamClient, chunk_delays, idle_latency
from .targets import Measured

PATHS = ("direct", "proxy", "litellm", "chain", "chain_sm", "sdk", "sdk_sm")
LABELS = {
    "direct": "1 emulator directly",
    "proxy": "2 memory proxy alone",
    "litellm": "3 LiteLLM alone",
    "chain": "4 full chain",
    "chain_sm": "5 full chain, Supermemory",
    "sdk": "6 SDK mode",
    "sdk_sm": "7 SDK mode, Supermemory",
}
SDK_PAIRS = (("sdk", "chain"), ("sdk_sm", "chain_sm"))  # SDK mode vs binary mode, same model
SLOW = {"litellm", "chain", "chain_sm", "sdk", "sdk_sm"}  # LiteLLM inside: fewer requests, longer runs


@dataclass
class Setup:
    """What the part started and measures."""

    stack: Stack
    gen: Wrk | PyLoad
    provider: int
    endpoints: dict[str, Endpoint]
    pids: dict[str, int]  # litellm, chain (its memory proxy), alone, sdk
    per_round: dict[str, dict[str, list]] = field(default_factory=lambda: {p: {} for p in PATHS})

    def record(self, path: str, key: str, value: dict, round_: int) -> None:
        self.per_round[path].setdefault(key, []).append({**value, "round": round_})

    def settle(self, quiet: float = 0.3) -> None:
        self.stack.settle(self.provider, quiet=quiet)


def order(round_: int) -> tuple[str, ...]:
    """One round's runs: every path in turn; LiteLLM alone and the full chain, whose ratio has the
    tightest targets, twice and mirrored (L C S C L), so a drift of the machine's load within a
    round favours neither; SDK mode between the two chains, its order reversed every other round."""
    first = ("direct", "proxy") if round_ % 2 == 0 else ("proxy", "direct")
    middle = ("chain_sm", "sdk_sm", "sdk") if round_ % 2 == 0 else ("sdk", "sdk_sm", "chain_sm")
    return first + ("litellm", "chain") + middle + ("chain", "litellm")


def run(args: argparse.Namespace, workdir: Path) -> tuple[dict, list[Measured]]:
    rounds = args.rounds or (1 if args.quick else 3)
    direct_processes = args.direct_processes or os.cpu_count() or 1
    stack = Stack(workdir, bench_env(master="sk-bench-" + secrets.token_urlsafe(24)), args.chunk_delay, args.chunks)
    gen = generator(args.generator, workdir)
    results: dict = {"rounds": rounds, "direct_processes": direct_processes, "generator": gen.version,
                     "generator_name": gen.name}  # wrk or Python: names the 1-client column measured with it
    log(f"work folder {workdir}; generator: {gen.version}")
    try:
        setup = start(stack, gen, direct_processes, results)
        warm_up(setup, workdir)
        one_client(setup, rounds, args.quick)
        under_load(setup, rounds, args.quick)
        samples = streaming(setup, rounds, args.quick)
        results["idle_wake"] = idle_wake(setup, rounds, args.quick, args.chunk_delay)
        rss_after_load(setup, results["rss_mb"])
        results["rss_mb"].update(rss_over_requests(setup, args.rss_requests or (5000 if args.quick else 50000)))
    finally:
        log("stopping the seven paths ...")
        stack.stop()
        gen.close()
    results["paths"] = summarize(setup.per_round, samples)
    results["sdk_vs_binary"] = compare_modes(results, setup.per_round)
    return results, measured(results, setup.per_round)


def start(stack: Stack, gen: Wrk | PyLoad, direct_processes: int, results: dict) -> Setup:
    """The emulator, then ``up --detach`` three times: the full chain (timing ``--help``, ``up`` and
    ``status`` as the user's interpreter runs them), the memory proxy alone, SDK mode."""
    provider, sm_port, chain_port, litellm_port, alone_port, unused, sdk_port, direct_port = free_ports(8)
    workdir = stack.workdir
    chain = Instance("chain", write_config(workdir / "chain.yaml", path_models(provider, sm_port), port=chain_port,
                                           litellm_port=litellm_port, supermemory=sm_port), workdir / "state-chain")
    alone = Instance("alone", write_config(workdir / "alone.yaml", path_models(provider, sm_port), port=alone_port,
                                           litellm_port=unused, supermemory=sm_port), workdir / "state-alone")
    sdk = Instance("sdk", write_config(workdir / "sdk.yaml", path_models(provider, sm_port), port=sdk_port,
                                       litellm_port=unused, supermemory=sm_port), workdir / "state-sdk")
    stack.start_emulator([provider, sm_port], direct_port, direct_processes)
    python = user_python()
    launcher: dict = {"python": python}
    launcher["help_s"] = timed(lambda: stack.launcher(chain, "--help", python=python), 5)
    log("up --detach: LiteLLM and the memory proxy (the full chain) ...")
    ready_at = ReadinessWatch(litellm_port)
    launcher["up_detach_s"] = stack.up(chain, python=python)
    ready_at.stop()
    ll_pid, chain_pid = stack.pid(chain, "litellm"), stack.pid(chain)
    ll_start = (ready_at.at - psutil.Process(ll_pid).create_time()) if ready_at.at and ll_pid else None
    launcher["litellm_own_start_s"] = ll_start
    log(f"up --detach took {launcher['up_detach_s']:.1f} s (LiteLLM's own start: {ll_start or float('nan'):.1f} s)")
    launcher["status_s"] = timed(lambda: stack.launcher(chain, "status", python=python), 5)
    launcher["up_detach_litellm_url_s"] = stack.up(alone, "--litellm-url", f"http://127.0.0.1:{provider}",
                                                   timeout=120)
    alone_pid = stack.pid(alone)
    log("up --detach --backend sdk: the memory proxy with LiteLLM's Router in-process ...")
    launcher["up_detach_sdk_s"] = stack.up(sdk, "--backend", "sdk", python=python)
    sdk_pid = stack.pid(sdk)
    log(f"up --detach --backend sdk took {launcher['up_detach_sdk_s']:.1f} s")
    results["commands"] = launcher
    results["rss_mb"] = {"proxy_after_start": psutil.Process(alone_pid).memory_info().rss / 2**20,
                         "sdk_after_start": tree_rss_mb(sdk_pid),
                         "binary_after_start": tree_rss_mb(ll_pid) + tree_rss_mb(chain_pid)}
    master = stack.env["LITELLM_MASTER_KEY"]
    endpoints = {
        "direct": Endpoint("direct", direct_port, "sk-anything", "plain"),
        "proxy": Endpoint("proxy", alone_port, "sk-anything", "plain"),
        "litellm": Endpoint("litellm", litellm_port, master, "plain"),
        "chain": Endpoint("chain", chain_port, "sk-anything", "plain"),
        "chain_sm": Endpoint("chain_sm", chain_port, "sk-anything", "memory"),
        "sdk": Endpoint("sdk", sdk_port, "sk-anything", "plain"),
        "sdk_sm": Endpoint("sdk_sm", sdk_port, "sk-anything", "memory"),
    }
    return Setup(stack, gen, provider, endpoints,
                 {"litellm": ll_pid, "chain": chain_pid, "alone": alone_pid, "sdk": sdk_pid})


class ReadinessWatch:
    """When LiteLLM's ``/health/readiness`` first answers 200 (``at``, epoch seconds), polled every
    50 ms on a thread until ``stop()``."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/health/readiness"
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    self.at = time.time()
                    return
            except httpx.HTTPError:
                pass
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def warm_up(setup: Setup, workdir: Path) -> None:
    log("warming up every path ...")
    for name, endpoint in setup.endpoints.items():
        r = httpx_latency(endpoint, 30 if name in SLOW else 300)
        if r["errors"]:
            raise RuntimeError(f"warm-up: {name} answered {r['errors']} errors; see {workdir}")
    setup.settle()


def one_client(setup: Setup, rounds: int, quick: bool) -> None:
    """One client: the load generator (2 s per run), then one httpx client (a number of requests);
    after each run, wait until LiteLLM has drained its backlog."""
    runs = len(order(0))
    log(f"one client, {setup.gen.name}: {rounds} round(s) x {runs} runs x 2 s ...")
    for r in range(rounds):
        for name in order(r):
            setup.record(name, "c1_gen", setup.gen.run(setup.endpoints[name], 1, 2.0), r)
            setup.settle()
    n1 = 300 if quick else 500
    log(f"one client, httpx: {rounds} round(s) x {runs} runs x {n1 // 10}-{n1} requests ...")
    for r in range(rounds):
        for name in order(r):
            setup.record(name, "c1_httpx", httpx_latency(setup.endpoints[name], n1 // 10 if name in SLOW else n1), r)
    setup.settle()


def under_load(setup: Setup, rounds: int, quick: bool) -> None:
    """20 and 100 clients. At 100 clients LiteLLM's answers take seconds (p99 4-8 s, with stalls):
    a run shorter than a few of those counts mostly luck (8 s runs of the same path differed by up
    to 30%, and a round's ratio by as much), so those runs are long."""
    emulator_procs = [psutil.Process(setup.stack.emulator.pid)]
    direct_procs = [psutil.Process(p.pid) for p in setup.stack.direct]
    for clients in (20, 100):
        fast_s, slow_s = 2.0, 3.0 if clients == 20 else (5.0 if quick else 16.0)
        log(f"{clients} clients: {rounds} round(s) x {len(order(0))} runs x {fast_s:g}-{slow_s:g} s ...")
        for r in range(rounds):
            for name in order(r):
                procs = direct_procs if name == "direct" else emulator_procs
                emulator_cpu = cpu_s(procs)
                result = setup.gen.run(setup.endpoints[name], clients, slow_s if name in SLOW else fast_s)
                result["emulator_cpu"] = (cpu_s(procs) - emulator_cpu) / result["seconds"]
                setup.record(name, f"c{clients}", result, r)
                setup.settle()


def streaming(setup: Setup, rounds: int, quick: bool) -> dict[str, list[dict]]:
    streams = 8 if quick else 10
    log(f"streaming: {rounds} round(s) x {len(PATHS)} paths x {streams} streams ...")
    clients = {name: StreamClient(e) for name, e in setup.endpoints.items()}
    samples: dict[str, list[dict]] = {p: [] for p in PATHS}
    for r in range(rounds):
        for name in dict.fromkeys(order(r)):  # each path once per round
            for _ in range(streams):
                samples[name].append(clients[name].once())
            clients[name].close()  # servers drop idle connections after 5 s
    for c in clients.values():
        c.close()
    return samples


def idle_wake(setup: Setup, rounds: int, quick: bool, pause: float) -> dict:
    """A non-streamed answer on the direct path and through the proxy alone, back to back and
    after one chunk delay of idle (for information, under the first-event target)."""
    n_idle = 20 if quick else 40
    log(f"idle wake-up: {rounds} round(s) x 2 paths x {n_idle} requests back to back and after "
        f"{pause * 1000:g} ms idle ...")
    wake: dict[str, list[dict]] = {"direct": [], "proxy": []}
    for r in range(rounds):
        for name in order(r)[:2]:  # direct and proxy, in this round's order
            wake[name].append(idle_latency(setup.endpoints[name], n_idle, pause))
    setup.settle()
    return {"pause_ms": pause * 1000, "requests": n_idle, **wake}


def rss_after_load(setup: Setup, rss: dict) -> None:
    """SDK mode against binary mode after the same load: the SDK process holds LiteLLM too."""
    rss.update(sdk_after_load=tree_rss_mb(setup.pids["sdk"]), litellm_after_load=tree_rss_mb(setup.pids["litellm"]),
               chain_proxy_after_load=tree_rss_mb(setup.pids["chain"]))
    rss["binary_after_load"] = rss["litellm_after_load"] + rss["chain_proxy_after_load"]


def rss_over_requests(setup: Setup, n_rss: int) -> dict:
    """The proxy alone's RSS before and after ``n_rss`` requests at 20 clients."""
    proxy_proc = psutil.Process(setup.pids["alone"])
    rss_before = proxy_proc.memory_info().rss / 2**20
    log(f"memory proxy RSS {rss_before:.1f} MB; sending {n_rss} requests with 20 clients ...")
    done, runs, samples = 0, [], [rss_before]
    while done < n_rss:
        run_ = setup.gen.run(setup.endpoints["proxy"], 20, 5.0)
        done += run_["requests"]
        runs.append(run_)
        samples.append(proxy_proc.memory_info().rss / 2**20)
        setup.settle(quiet=0.2)
    log(f"memory proxy RSS after {done} requests: {samples[-1]:.1f} MB")
    return {"proxy_before": rss_before, "proxy_after": samples[-1], "proxy_peak": max(samples), "requests": done,
            "samples": [round(x, 1) for x in samples],
            "rps_during": sum(r["requests"] for r in runs) / sum(r["seconds"] for r in runs),
            "errors_during": sum(r["errors"] for r in runs),
            "chain_proxy": psutil.Process(setup.pids["chain"]).memory_info().rss / 2**20}


# --- figures -------------------------------------------------------------------------------------


def summarize(per_round: dict, stream_samples: dict) -> dict:
    out = {}
    for name in PATHS:
        entry = {}
        for key, runs in per_round[name].items():
            entry[key] = {f: med([r[f] for r in runs]) for f in runs[0] if f not in ("seconds", "round")}
            entry[key]["rounds"] = [{k: round(v, 3) for k, v in r.items()} for r in runs]
        samples = stream_samples[name]
        transit = [t for s in samples for t in s["transit"]]
        entry["stream"] = {"streams": len(samples),
                           "chunk_transit_p50_ms": med(transit) * 1000 if transit else None,
                           "first_event_p50_ms": med([s["events"][0] for s in samples if s["events"]]) * 1000,
                           "first_byte_p50_ms": med([s["first_byte"] for s in samples if s["first_byte"]]) * 1000,
                           "events_per_stream": med([len(s["events"]) for s in samples])}
        ref = "direct" if name in ("direct", "proxy") else "litellm"
        if name not in ("direct", "litellm"):
            entry["stream"]["extra_chunk_delay_vs_" + ref] = chunk_delays(samples, stream_samples[ref])
        out[name] = entry
    return out


def round_ratios(per_round: dict, a: str, b: str, key: str, field_: str) -> list[float]:
    """Per round, a/b of the round's medians (runs of one round are a minute apart at most)."""
    rounds = sorted({r["round"] for r in per_round[a][key]} & {r["round"] for r in per_round[b][key]})
    return [med([r[field_] for r in per_round[a][key] if r["round"] == n])
            / med([r[field_] for r in per_round[b][key] if r["round"] == n]) for n in rounds]


def _per_round(ratios: list[float]) -> str:
    return "per round: " + ", ".join(f"{x:.2f}" for x in ratios)


def measured(results: dict, per_round: dict) -> list[Measured]:
    """What the targets of part ``proxies`` judge (targets.py), with the notes printed under them."""
    gen = {"gen": results["generator_name"]}
    paths, launcher, rss = results["paths"], results["commands"], results["rss_mb"]
    out = []

    def paired(key: str, a: str, b: str, run_key: str, field_: str, **fields: object) -> None:
        ratios = round_ratios(per_round, a, b, run_key, field_)
        out.append(Measured(key, med(ratios), _per_round(ratios), fields))

    paired("proxy_c1_httpx", "proxy", "direct", "c1_httpx", "p50_ms")
    paired("proxy_c1_gen", "proxy", "direct", "c1_gen", "p50_ms", **gen)
    paired("proxy_c20_rps", "proxy", "litellm", "c20", "rps")
    out.append(Measured("proxy_c20_tail", paths["proxy"]["c20"]["p99_ms"] / paths["proxy"]["c20"]["p50_ms"]))
    s_proxy, s_direct = paths["proxy"]["stream"], paths["direct"]["stream"]
    out.append(Measured("stream_first_event", s_proxy["first_event_p50_ms"] / s_direct["first_event_p50_ms"],
                        _idle_note(results.get("idle_wake"))))
    chunks = s_proxy["extra_chunk_delay_vs_direct"]
    out.append(Measured("stream_chunk_delay", chunks["max_ms"],
                        f"per chunk position, median over streams ({chunks['method']}); worst single chunk "
                        f"{chunks['worst_single_ms']:.2f} ms vs {chunks['reference_worst_single_ms']:.2f} ms direct"))
    paired("chain_c1", "chain", "litellm", "c1_gen", "p50_ms", **gen)
    for clients in (20, 100):
        paired("chain_rps", "chain", "litellm", f"c{clients}", "rps", clients=clients)
    out.append(Measured("proxy_rss", rss["proxy_after"]))
    out.append(Measured("proxy_rss_growth", (rss["proxy_after"] / rss["proxy_before"] - 1) * 100,
                        fields={"requests": rss["requests"]}))
    out.append(Measured("status_s", med(launcher["status_s"])))
    out.append(Measured("help_s", med(launcher["help_s"])))
    if launcher.get("litellm_own_start_s"):
        out.append(Measured("up_detach", launcher["up_detach_s"] - launcher["litellm_own_start_s"]))
    out.append(_headroom(results, per_round))
    return out


def _idle_note(wake: dict | None) -> str:
    if not wake:
        return ""

    def pair(key: str) -> str:
        d, p = med([x[key] for x in wake["direct"]]), med([x[key] for x in wake["proxy"]])
        ratios = ", ".join(f"{b[key] / a[key]:.2f}" for a, b in zip(wake["direct"], wake["proxy"], strict=True))
        return f"direct {d:.2f} ms, proxy {p:.2f} ms ({p / d:.2f}x; per round {ratios})"
    return (f"a non-streamed answer after {wake['pause_ms']:g} ms idle, as a stream's first event comes: "
            f"{pair('idle_ms')}\n             back to back: {pair('warm_ms')}")


def _headroom(results: dict, per_round: dict) -> Measured:
    fastest = max(max(r["rps"] for r in per_round[p][f"c{c}"]) for p in PATHS if p != "direct" for c in (20, 100))
    direct_runs = [r for c in (20, 100) for r in per_round["direct"][f"c{c}"]]
    direct = max(r["rps"] for r in direct_runs)
    gen_cpu = [r["generator_cpu"] for r in direct_runs if r.get("generator_cpu") is not None]
    note = (f"on the direct path the generator used {med(gen_cpu) * 100:.0f}% of a core and the "
            f"{results['direct_processes']} emulator process(es) together "
            f"{med([r['emulator_cpu'] for r in direct_runs]) * 100:.0f}% (each at most 100%)") if gen_cpu else ""
    return Measured("headroom", direct / fastest, note)


def compare_modes(results: dict, per_round: dict) -> list[dict]:
    """SDK mode against binary mode, SDK / binary, for information (the issue sets no target).

    Per path pair (ordinary model: 6 vs 4, Supermemory-backed: 7 vs 5) the median of per-round
    ratios, as for the targets; streaming from the medians over all streams; RSS of the SDK
    process against LiteLLM's plus the full chain's memory proxy; start time of ``up --detach``."""
    paths, rss, launcher = results["paths"], results["rss_mb"], results["commands"]
    rows = []

    def add(name: str, values: list[float], better: str, note: str = "") -> None:
        rows.append({"compare": name, "sdk_over_binary": [round(v, 3) for v in values], "better": better,
                     "note": note})

    for label, key, field_, better in ((f"1 client p50 ({results['generator_name']})", "c1_gen", "p50_ms", "lower"),
                                       ("1 client p50 (httpx client)", "c1_httpx", "p50_ms", "lower"),
                                       ("20 clients: requests/s", "c20", "rps", "higher"),
                                       ("100 clients: requests/s", "c100", "rps", "higher")):
        ratios = [round_ratios(per_round, sdk, binary, key, field_) for sdk, binary in SDK_PAIRS]
        notes = [f"{pair} " + ", ".join(f"{x:.2f}" for x in r) for pair, r in zip(("6/4", "7/5"), ratios, strict=True)]
        add(label, [med(r) for r in ratios], better, "per round: " + "; ".join(notes))
    add("streaming: first event", [paths[sdk]["stream"]["first_event_p50_ms"]
                                   / paths[binary]["stream"]["first_event_p50_ms"] for sdk, binary in SDK_PAIRS],
        "lower")
    for when in ("after_start", "after_load"):
        add(f"RSS {when.replace('_', ' ')}", [rss[f"sdk_{when}"] / rss[f"binary_{when}"]], "lower",
            f"SDK process {rss[f'sdk_{when}']:.0f} MB vs LiteLLM + memory proxy {rss[f'binary_{when}']:.0f} MB")
    add("up --detach until healthy", [launcher["up_detach_sdk_s"] / launcher["up_detach_s"]], "lower",
        f"--backend sdk {launcher['up_detach_sdk_s']:.1f} s vs binary {launcher['up_detach_s']:.1f} s")
    return rows
