"""``python3 scripts/benchmark.py``'s options, and which parts they run."""

from __future__ import annotations

import argparse

from . import alone, launcher, run, targets
from .common import log

PARTS = ("proxies", "startup", "launcher", "tracing", "usage", "stats")
HELP_PARTS = """Parts (each starts what it measures and stops it again; without --part all of them run,
about 25 minutes on 2 cores):
  proxies   the seven paths side by side, RSS, the launcher's own times; `--part proxies` runs startup too
  startup   the first request per API shape after `up` and after a restart, in binary and SDK mode,
            and requests sent during `restart_litellm.sh --kill` (about 4 minutes)
  launcher  `start_proxies.py --help` and `status` against the same commands of --against REV
  tracing   the memory proxy alone with tracing off against --tracing-against REV, and with tracing on
  usage     the memory proxy alone with the usage record on and off
  stats     `start_proxies.py stats` over a large usage store (starts nothing)"""


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 scripts/benchmark.py", description=doc.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=doc.split("\n\n", 1)[1] + "\n" + HELP_PARTS)
    p.add_argument("--quick", action="store_true", help="one round, fewer requests (about a quarter of the time)")
    p.add_argument("--json", metavar="PATH", help="where to write the figures (default: the run's tmp folder)")
    p.add_argument("--part", action="append", choices=(*PARTS, "all"),
                   help="run only this part (repeatable; default: all)")
    p.add_argument("--startup-only", action="store_true", help="the same as --part startup")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds (default 3, --quick 1; parts usage and tracing: 4, --quick 2)")
    p.add_argument("--rss-requests", type=int, default=None,
                   help="requests between the two RSS readings (default 50000, --quick 5000)")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--chunk-delay", type=float, default=0.02, help="seconds between streamed chunks")
    p.add_argument("--chunks", type=int, default=8, help="content chunks per streamed answer")
    p.add_argument("--direct-processes", type=int, default=None,
                   help="emulator processes serving the direct path (default: one per core)")
    p.add_argument("--against", metavar="REV", default=launcher.REFERENCE,
                   help=f"part launcher: the commit to compare with (default {launcher.REFERENCE}, main before the "
                        "layout change)")
    p.add_argument("--launcher-runs", type=int, default=None, metavar="N",
                   help="part launcher: pairs of runs per command (default 15, --quick 5)")
    p.add_argument("--tracing-against", metavar="REV", default=alone.TRACING_REFERENCE,
                   help=f"part tracing: the commit without tracing to compare with (default "
                        f"{alone.TRACING_REFERENCE}, main before issue 18)")
    p.add_argument("--stats-records", type=int, default=None,
                   help="part stats: records in the store (default 1000000, --quick 100000)")
    p.add_argument("--targets-table", action="store_true",
                   help="print the targets table of docs/benchmark.md (Markdown) and exit")
    return p


def parts_of(args: argparse.Namespace) -> list[str]:
    asked = set(args.part or ())
    if args.startup_only:
        asked.add("startup")
    if not asked or "all" in asked:
        return list(PARTS)
    if "proxies" in asked:
        asked.add("startup")  # as it always has
    return [p for p in PARTS if p in asked]


def main(doc: str) -> int:
    args = parser(doc).parse_args()
    if args.targets_table:
        print(targets.markdown())
        return 0
    if args.stats_records is None:
        args.stats_records = 100_000 if args.quick else 1_000_000
    try:
        results = run.run(args, parts_of(args))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 1 if results["failed"] else 0

