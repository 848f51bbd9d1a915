#!/usr/bin/env python3
"""Benchmark every hop side by side: ``python3 scripts/benchmark.py [--quick] [--part P] [--json PATH]``.

One run, offline, no keys: starts the project's upstream emulator (``python -m tests.emulator``),
the full chain with ``start_proxies.py up --detach`` (real LiteLLM binary), the memory proxy
alone (``up --detach --litellm-url <emulator>``) and SDK mode (``up --detach --backend sdk``),
each in its own tmp state folder on free ports, and measures on the same machine, with the same
request bodies, interleaved round by round so that the machine's noise hits every path alike.
Targets are judged on ratios within the run (absolute times on shared machines are noise); the
table of targets is in scripts/bench/targets.py and docs/benchmark.md. Prints one table per part
and writes the same figures as JSON.

Load generator: ``wrk`` (Debian/Ubuntu: ``sudo apt-get install -y wrk``; macOS: ``brew install
wrk``). Without it the script falls back to several Python load processes and says so; the
"generator headroom" line shows whether the generator could have been the bottleneck.
The code is in scripts/bench/ (one module per concern; see its __init__.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory_proxy.launcher import bootstrap  # noqa: E402  (standard library only)

if not bootstrap.in_project_venv():
    # Remember the interpreter the user typed: `status` and `--help` are timed as they run it.
    os.environ.setdefault("BENCH_USER_PYTHON", os.path.realpath(sys.executable))
bootstrap.reexec_in_venv()

from bench.cli import main  # noqa: E402  (scripts/bench/, in the venv)

if __name__ == "__main__":
    sys.exit(main(__doc__))
