#!/usr/bin/env python3
"""Run the whole test suite: ``python3 scripts/run_tests.py [--fast] [pytest args]``.

Creates the virtual environment on first run, exactly like ``start_proxies.py``. ``--fast``:
only the tests that run no LiteLLM (``-m "not litellm"``, see tests/conftest.py), three test
files at a time; the whole suite runs in one process, in the order tests/conftest.py gives.
``--lint``: ``ruff check .`` with the rules in pyproject.toml instead of the tests (``.ci/run`` runs it first).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory_proxy.launcher import bootstrap  # noqa: E402

python = bootstrap.ensure_venv()
os.chdir(ROOT)
args = sys.argv[1:]
if args == ["--lint"]:
    os.execv(str(python), [str(python), "-m", "ruff", "check", "."])
if "--fast" in args:  # in 3 processes, whole files each (pytest-xdist): these tests mostly wait
    args = ["-m", "not litellm", "-n", "3", "--dist", "loadfile", *(a for a in args if a != "--fast")]
os.execv(str(python), [str(python), "-m", "pytest", *args])
