"""The benchmark's targets as data: one table, judged the same way for every part.

Each row names what a part measures (``key``), how it is printed (``target``, whose ``{fields}``
the measurement fills in, e.g. the load generator or the API shape), what is set against what
(``compares``), the bound (``op``, ``limit``, ``unit``) and the issue that asked for it. A part
hands ``judge`` its measurements as ``Measured`` values; docs/benchmark.md's targets table is
``markdown()`` of this table (tests/unit/test_benchmark_doc.py checks that it is). Standard library
only, no relative imports: the test loads this file on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TIMES = "\N{MULTIPLICATION SIGN}"  # a ratio's bound in the docs: "at most 1.6" and this sign
CLIENTS = {"clients": "1 and 20"}  # how the docs name the rows measured at each load


@dataclass(frozen=True)
class Bound:
    key: str
    part: str
    target: str
    compares: str
    op: str  # "<=", "<" or ">="
    limit: float
    unit: str  # "x" for a ratio
    issue: int
    doc: dict = field(default_factory=dict)  # what the docs put in target's {fields}

    def met(self, value: float) -> bool:
        if value != value:  # NaN: nothing was measured
            return False
        return {"<=": value <= self.limit, "<": value < self.limit, ">=": value >= self.limit}[self.op]

    def bound(self) -> str:
        word = {"<=": "at most", "<": "under", ">=": "at least"}[self.op]
        unit = {"x": TIMES, "": ""}.get(self.unit, " " + self.unit)
        return f"{word} {self.limit:g}{unit}"


TARGETS: tuple[Bound, ...] = (
    # --- part proxies: the seven paths (issue 4) -------------------------------------------------
    Bound("proxy_c1_httpx", "proxies", "proxy alone, 1 client (httpx client): p50 vs direct",
          "p50, one httpx client: path 2 / path 1", "<=", 1.6, "x", 4),
    Bound("proxy_c1_gen", "proxies", "proxy alone, 1 client ({gen}): p50 vs direct",
          "p50, one client of the load generator: path 2 / path 1", "<=", 1.6, "x", 4, {"gen": "wrk"}),
    Bound("proxy_c20_rps", "proxies", "proxy alone, 20 clients: throughput vs LiteLLM alone",
          "requests/s at 20 clients: path 2 / path 3", ">=", 20, "x", 4),
    Bound("proxy_c20_tail", "proxies", "proxy alone, 20 clients: p99 / p50",
          "path 2 at 20 clients: its p99 / its p50", "<=", 3, "x", 4),
    Bound("stream_first_event", "proxies", "streaming, proxy alone: first event vs direct",
          "time to the first streamed event: path 2 / path 1", "<=", 1.6, "x", 4),
    Bound("stream_chunk_delay", "proxies", "streaming, proxy alone: largest extra delay of a chunk",
          "per chunk position, median over streams: path 2 minus path 1", "<=", 1, "ms", 4),
    Bound("chain_c1", "proxies", "full chain vs LiteLLM alone: 1-client p50 latency ({gen})",
          "p50, one client of the load generator: path 4 / path 3", "<=", 1.1, "x", 4, {"gen": "wrk"}),
    Bound("chain_rps", "proxies", "full chain vs LiteLLM alone: throughput, {clients} clients",
          "requests/s: path 4 / path 3", ">=", 0.95, "x", 4, {"clients": "20 and 100"}),
    Bound("proxy_rss", "proxies", "memory proxy RSS after the run",
          "path 2's process after the RSS requests", "<=", 80, "MB", 4),
    Bound("proxy_rss_growth", "proxies", "memory proxy RSS growth over {requests} requests",
          "path 2's RSS after / before the RSS requests, minus 1", "<=", 10, "%", 4, {"requests": "the RSS"}),
    Bound("status_s", "proxies", "start_proxies.py status",
          "median of 5, the interpreter you typed, against the running full chain", "<=", 0.3, "s", 4),
    Bound("help_s", "proxies", "start_proxies.py --help", "median of 5, the interpreter you typed",
          "<=", 0.3, "s", 4),
    Bound("up_detach", "proxies", "up --detach: healthy after LiteLLM's own start +",
          "up --detach until healthy minus LiteLLM's process creation to its first ready /health/readiness",
          "<=", 1, "s", 4),
    Bound("headroom", "proxies", "generator headroom: direct throughput vs fastest proxied",
          "best requests/s of path 1 / best of paths 2-7, at 20 and 100 clients", ">=", 5, "x", 4),
    # --- part startup: first requests and restarts (issue 16) -----------------------------------
    Bound("first_after_up", "startup", "first {shape} after up vs the median of the next 50",
          "per API shape: the first request / the median of the next 50", "<=", 2, "x", 16,
          {"shape": "request per API shape"}),
    Bound("first_after_restart", "startup", "first {shape} after a LiteLLM restart vs that median",
          "per API shape, after restart_litellm.sh --kill", "<=", 2, "x", 16, {"shape": "request per API shape"}),
    Bound("restart_failed", "startup", "requests failed during restart_litellm.sh --kill",
          "a new request every 0.2 s from before the kill until LiteLLM is back (those inside LiteLLM when "
          "it was killed are counted apart)", "<=", 0, "", 16),
    Bound("sdk_first_after_up", "startup", "SDK mode: first {shape} after up vs the median of the next 50",
          "as above, up --backend sdk", "<=", 2, "x", 16, {"shape": "request per API shape"}),
    Bound("sdk_first_after_restart", "startup", "SDK mode: first {shape} after its process restarted vs that median",
          "per API shape, after the SDK process was killed and the supervisor restarted it", "<=", 2, "x", 16,
          {"shape": "request per API shape"}),
    # --- part launcher: the launcher against an earlier commit (issue 15) -----------------------
    Bound("help_vs_reference", "launcher", "start_proxies.py --help vs {reference}",
          "median over interleaved pairs of this checkout / the reference commit", "<=", 1.05, "x", 15,
          {"reference": "the reference commit"}),
    Bound("status_vs_reference", "launcher", "start_proxies.py status vs {reference}",
          "likewise, each against its own running memory proxy", "<=", 1.05, "x", 15,
          {"reference": "the reference commit"}),
    # --- part tracing: the proxy alone with tracing off and on (issue 18) -----------------------
    Bound("tracing_off_rps", "tracing", "proxy alone, tracing off vs {reference}: throughput, {clients} client(s)",
          "requests/s: this checkout, tracing off / the commit before issue 18", ">=", 0.95, "x", 18,
          {"reference": "before issue 18", **CLIENTS}),
    Bound("tracing_off_p50", "tracing", "proxy alone, tracing off vs {reference}: p50, {clients} client(s)",
          "p50: likewise", "<=", 1.05, "x", 18, {"reference": "before issue 18", **CLIENTS}),
    # --- part usage: the proxy alone with the usage record on and off (issue 17) ----------------
    Bound("usage_on_rps", "usage", "proxy alone, usage record on vs off: throughput, {clients} client(s)",
          "requests/s: usage record on / memory_proxy.usage.enabled: false", ">=", 0.95, "x", 17, CLIENTS),
    Bound("usage_on_p50", "usage", "proxy alone, usage record on vs off: p50, {clients} client(s)",
          "p50: likewise", "<=", 1.05, "x", 17, CLIENTS),
    # --- part stats: `stats` over a large usage store (issue 17) ---------------------------------
    Bound("stats_s", "stats", "start_proxies.py {command} over {records} records",
          "median of 3 wall times, six report commands", "<", 1, "s", 17,
          {"command": "stats …", "records": "1,000,000"}),
)
BY_KEY = {b.key: b for b in TARGETS}
PARTS = tuple(dict.fromkeys(b.part for b in TARGETS))


@dataclass
class Measured:
    key: str
    value: float
    note: str = ""
    fields: dict = field(default_factory=dict)


def judge(measured: list[Measured]) -> list[dict]:
    """Each measurement against its row of the table, in the table's order."""
    order = {b.key: i for i, b in enumerate(TARGETS)}
    rows = []
    for m in sorted(measured, key=lambda m: order[m.key]):
        b = BY_KEY[m.key]
        value = float(m.value) if m.value is not None else float("nan")
        rows.append({"key": b.key, "part": b.part, "issue": b.issue, "target": b.target.format(**m.fields),
                     "value": round(value, 3), "limit": b.limit, "op": b.op, "unit": b.unit,
                     "met": b.met(value), "note": m.note})
    return rows


def markdown() -> str:
    """The targets table of docs/benchmark.md."""
    lines = ["| part | target | what is compared | bound | issue |", "| --- | --- | --- | --- | --- |"]
    for b in TARGETS:
        lines.append(f"| {b.part} | {b.target.format(**b.doc)} | {b.compares} | {b.bound()} | {b.issue} |")
    return "\n".join(lines)
