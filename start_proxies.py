#!/usr/bin/env python3
"""LiteLLM Memory Proxy launcher: starts, watches and stops LiteLLM and the memory proxy.

    python3 start_proxies.py up            # first run creates .venv, then streams both logs
    python3 start_proxies.py up --detach   # returns once both are healthy
    python3 start_proxies.py status | down | logs -f | check | route --user-agent UA
    python3 start_proxies.py memory list --user-agent UA | doctor
    python3 start_proxies.py stats [daily|weekly|monthly|session] [--by model] [--json]

Thin on purpose: the command line is memory_proxy/launcher/cli.py, the commands and the process
handling the rest of memory_proxy/launcher/. It never imports LiteLLM, so status and --help
answer at once.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memory_proxy.launcher import bootstrap  # standard library only

bootstrap.reexec_in_venv()

# Only what runs in the venv imports more: the interpreter the user typed just re-executes.
from memory_proxy.launcher.cli import run  # noqa: E402

if __name__ == "__main__":
    run()
