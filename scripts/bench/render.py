"""What a run prints: one section per part, each followed by its targets, then a summary line.
The JSON holds the same figures (``run.py`` writes it)."""

from __future__ import annotations

from .common import fmt, med
from .proxies import LABELS, PATHS
from .startup import STEADY, TRICKLE_EVERY
from .targets import BY_KEY, TIMES


def machine_line(m: dict) -> str:
    return (f"{m['nproc']} cores ({m['cpu']}), Python {m['python']}, {m['system']}, "
            f"load {m['loadavg_at_start'][0]:.2f} at start")


def targets(rows: list[dict], title: str = "targets (ratios within this run):") -> list[str]:
    lines = ["", title]
    for t in rows:
        unit = "" if t["unit"] in ("x", "") else f" {t['unit']}"
        value = f"{t['value']:.0f}" if BY_KEY[t["key"]].unit == "" else f"{t['value']:.2f}"
        bound = BY_KEY[t["key"]].bound().replace(TIMES, "")
        lines.append(f"  {'met    ' if t['met'] else 'NOT MET'}  {t['target']}: {value}{unit} ({bound})"
                     + (f"\n             {t['note']}" if t["note"] else ""))
    return lines


def proxies(results: dict) -> list[str]:
    paths = results["paths"]
    lines = [f"The seven paths: {results['generator']}; direct path: {results['direct_processes']} emulator "
             f"process(es) on one port; {results['rounds']} interleaved round(s), medians over rounds"
             + (" (--quick)" if results["quick"] else "")]
    c1_label = f"1 client, {results['generator_name']}"
    c1_label += " (ms)" if len(c1_label) <= 15 else ""  # "(ms)" as long as the column is wide enough
    head = (f"{'path':27} | {c1_label:^20} | {'1 client, httpx (ms)':^20} | "
            f"{'20 clients':^22} | {'100 clients':^22} | {'streaming (ms)':^22}")
    sub = (f"{'':27} | {'p50':>6} {'p95':>6} {'p99':>6} | {'p50':>6} {'p95':>6} {'p99':>6} | "
           f"{'req/s':>6} {'p50':>7} {'p99':>7} | {'req/s':>6} {'p50':>7} {'p99':>7} | "
           f"{'1st ev':>6} {'extra chunk':>15}")
    lines += ["", head, sub, "-" * len(sub)]
    for name in PATHS:
        p = paths[name]
        c1, h1, c20, c100, st = p["c1_gen"], p["c1_httpx"], p["c20"], p["c100"], p["stream"]
        extra = st.get("extra_chunk_delay_vs_direct") or st.get("extra_chunk_delay_vs_litellm")
        extra_s = f"{extra['max_ms']:+.2f} vs {'direct' if 'extra_chunk_delay_vs_direct' in st else 'LiteLLM'}" \
            if extra else "(reference)"
        lines.append(
            f"{LABELS[name]:27} | {fmt(c1['p50_ms']):>6} {fmt(c1['p95_ms']):>6} {fmt(c1['p99_ms']):>6} | "
            f"{fmt(h1['p50_ms']):>6} {fmt(h1['p95_ms']):>6} {fmt(h1['p99_ms']):>6} | "
            f"{fmt(c20['rps'], 0):>6} {fmt(c20['p50_ms'], 1):>7} {fmt(c20['p99_ms'], 1):>7} | "
            f"{fmt(c100['rps'], 0):>6} {fmt(c100['p50_ms'], 1):>7} {fmt(c100['p99_ms'], 1):>7} | "
            f"{fmt(st['first_event_p50_ms']):>6} {extra_s:>15}")
    errors = [f"{name} {key}: {sum(r.get('errors', 0) for r in runs['rounds'])}" for name in PATHS
              for key, runs in paths[name].items() if key != "stream" and any(r.get("errors") for r in runs["rounds"])]
    lines.append("errors (status >= 400 or socket errors): " + (", ".join(errors) if errors else "none"))
    rss, la = results["rss_mb"], results["commands"]
    lines += ["", f"memory proxy RSS: {rss['proxy_after_start']:.1f} MB after start, {rss['proxy_before']:.1f} MB "
                  f"before and {rss['proxy_after']:.1f} MB after {rss['requests']} more requests "
                  f"({rss['rps_during']:.0f} req/s, {rss['errors_during']} errors); full chain's proxy "
                  f"{rss['chain_proxy']:.1f} MB",
              f"launcher ({la['python']}): --help {med(la['help_s']):.2f} s, status {med(la['status_s']):.2f} s "
              f"(medians of 5), up --detach {la['up_detach_s']:.1f} s with LiteLLM's own start "
              f"{fmt(la.get('litellm_own_start_s'), 1)} s, up --detach --litellm-url "
              f"{la['up_detach_litellm_url_s']:.1f} s, up --detach --backend sdk {la['up_detach_sdk_s']:.1f} s",
              "", "SDK mode vs binary mode (informative, no target; SDK / binary within this run, "
                  "ordinary model 6/4 and Supermemory-backed 7/5 where two):"]
    for row in results["sdk_vs_binary"]:
        values = " and ".join(f"{v:.2f}x" for v in row["sdk_over_binary"])
        lines.append(f"  {row['compare'] + ':':30} {values:15} ({row['better']} is better for SDK)"
                     + (f"  {row['note']}" if row["note"] else ""))
    return lines


def _shapes(mode: dict, restarted: str) -> list[str]:
    lines = [f"  {'shape':<20} {'first ms':>9} {'median ms':>10} {'ratio':>6} {restarted + ' ms':>21} {'ratio':>6}"]
    for name, s in mode["shapes"].items():
        lines.append(f"  {name:<20} {s['first_ms']:9.1f} {s['median_ms']:10.1f} {s['ratio']:6.2f} "
                     f"{s['first_after_restart_ms']:21.1f} {s['ratio_after_restart']:6.2f}")
    return lines


def startup(part: dict) -> list[str]:
    lines = ["First requests and restarts (issue 16), binary mode",
             f"  up --detach: {part['up_detach_s']:.1f} s; {part['warm_up'] or 'no warm-up logged'}",
             *_shapes(part, "after restart")]
    r = part["restart"]
    lines.append(f"  restart_litellm.sh --kill under a trickle (one request every {TRICKLE_EVERY:g} s): "
                 f"{r['succeeded']} of {r['requests']} succeeded, {r['in_litellm_when_killed']} were inside "
                 f"LiteLLM when it was killed (503, never sent twice), {r['failed']} failed otherwise; "
                 f"longest wait {r['longest_wait_s']:.1f} s; LiteLLM back after {r['restart_s']:.1f} s")
    lines += [f"    failed: {f}" for f in r["failures"]]
    sdk = part.get("sdk")
    if sdk:
        lines += ["", f"SDK mode (the same shapes, medians of the next {STEADY}; no trickle: nothing holds requests "
                      "while its one process restarts)",
                  f"  up --detach --backend sdk: {sdk['up_detach_s']:.1f} s; {sdk['warm_up'] or 'no warm-up logged'}",
                  *_shapes(sdk, "after its restart"),
                  f"  the SDK process killed (SIGKILL): healthy again after {sdk['restart']['restart_s']:.1f} s "
                  "(the supervisor's back-off included)"]
    return lines


def launcher(result: dict) -> list[str]:
    ref = result["reference"]
    lines = [f"start_proxies.py against {ref['commit'][:7]} ({ref['subject'][:70]}): {result['runs']} interleaved "
             f"pairs, {result['python']} for both, each against its own running memory proxy"]
    for name in ("help", "status"):
        s = result[name]
        lines.append(f"  {('--help' if name == 'help' else 'status'):<7} this checkout {s['this_s']:.3f} s, reference "
                     f"{s['reference_s']:.3f} s: {s['ratio']:.2f}x (median of pair ratios); CPU {s['this_cpu_s']:.3f} "
                     f"vs {s['reference_cpu_s']:.3f} s; exit codes {s['exit_codes']}")
    return lines


def _versus(c: dict, a: str, b: str) -> str:
    return (f"{c[a + '_rps']:,.0f} vs {c[b + '_rps']:,.0f} req/s ({c['rps_ratio']:.3f}), p50 {c[a + '_p50_ms']:.2f} "
            f"vs {c[b + '_p50_ms']:.2f} ms ({c['p50_ratio']:.3f})")


def _control(c: dict, b: str) -> str:
    return (f"  {'':14}control: a second '{b}' vs '{b}' (the run's noise) {_versus(c, 'control', b)}; "
            f"rps per round: {', '.join(f'{x:.2f}' for x in c['rps_per_round'])}")


def tracing(result: dict) -> list[str]:
    ref = result["reference"]
    lines = [f"The memory proxy alone, tracing off and on ({result['generator']}, {result['rounds']} rounds, medians)",
             f"  reference: {ref['commit'][:7]} ({ref['subject'][:70]})"]
    for c in (1, 20):
        figures = result[f"c{c}"]
        lines.append(f"  {c:>2} client(s): tracing off vs reference "
                     f"{_versus(figures['off_vs_reference'], 'off', 'reference')}")
        lines.append(f"  {'':14}tracing on vs off (its cost, no target) {_versus(figures['on_vs_off'], 'on', 'off')}")
        lines.append(_control(figures["control"], "reference"))
    e = result["exported"]
    lines.append(f"  the OTLP sink received {e['exports']} exports ({e['bytes'] / 1e6:.1f} MB) from the tracing-on copy"
                 + ("" if e["exports"] else ": NOTHING, so the 'on' figures are not tracing's"))
    return lines


def usage(result: dict) -> list[str]:
    lines = [f"The memory proxy alone, usage record on vs off ({result['generator']}, {result['rounds']} rounds, "
             "medians)"]
    for c in (1, 20):
        lines.append(f"  {c:>2} client(s): {_versus(result[f'c{c}'], 'on', 'off')}")
        lines.append(_control(result[f"c{c}"]["control"], "off"))
    written = result["usage_on"]
    lines.append(f"  records written by the proxy with the record on: {written.get('written')}, dropped "
                 f"{written.get('dropped')}")
    return lines


def stats(result: dict) -> list[str]:
    width = max(len(r["command"]) for r in result["stats"])
    lines = [f"stats over {result['records']:,} records ({result['store_mb']} MB store, filled in "
             f"{result['fill_s']:.0f} s); wall time, the CPU time beside it shows what a busy machine added"]
    lines += [f"  {r['command']:<{width}}  median {r['median_s']:.3f} s  max {r['max_s']:.3f} s  "
              f"(CPU {r['cpu_median_s']:.3f} s)" for r in result["stats"]]
    return lines


SECTIONS = {"proxies": proxies, "startup": startup, "launcher": launcher, "tracing": tracing, "usage": usage,
            "stats": stats}


def render(results: dict) -> str:
    lines = [f"LiteLLM Memory Proxy benchmark: {machine_line(results['machine'])}; parts: "
             f"{', '.join(results['parts'])}" + (" (--quick)" if results["quick"] else "")]
    for part in results["parts"]:
        lines.append("")
        if part in results["failed"]:
            lines.append(f"part {part}: FAILED: {results['failed'][part]}")
            continue
        lines += SECTIONS[part](results if part == "proxies" else results[part])
        rows = [t for t in results["targets"] if t["part"] == part]
        lines += targets(rows, "targets:") if part == "stats" else targets(rows)
    missed = [t["target"] for t in results["targets"] if not t["met"]]
    lines += ["", f"targets: {len(results['targets']) - len(missed)} of {len(results['targets'])} met"
              + (f"; not met: {'; '.join(missed)}" if missed else "")]
    return "\n".join(lines)
