#!/usr/bin/env python3
"""Run the whole test suite: ``python3 scripts/run_tests.py [--fast] [pytest args]``.

Creates the virtual environment on first run, exactly like ``start_proxies.py``, and installs
the Debian packages the tests drive for real when they are missing (as root, with apt-get;
otherwise it says what to install): headless Chromium (the pages), the JDK (the Java client)
and PostgreSQL's server binaries (the usage store's throw-away cluster). ``--fast``: only the
tests that run no LiteLLM (``-m "not litellm"``, see tests/conftest.py), three test files at
a time; the whole suite runs in one process, in the order tests/conftest.py gives.
``--lint``: ``ruff check .`` with the rules in pyproject.toml instead of the tests (``.ci/run`` runs it first).
"""

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory_proxy.launcher import bootstrap  # noqa: E402

# Debian package -> is it there? (the tests look for the same commands and paths)
DEBIAN = {
    "chromium": lambda: shutil.which("chromium") is not None,
    "openjdk-17-jdk-headless": lambda: shutil.which("javac") is not None,
    "postgresql": lambda: bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")),
}


def install_missing() -> None:
    missing = [package for package, present in DEBIAN.items() if not present()]
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"[tests] missing: {', '.join(missing)}; their tests fail until you run: sudo {' '.join(command)}",
              file=sys.stderr)
        return
    print(f"[tests] installing Debian's {', '.join(missing)}", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=True)
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)


python = bootstrap.ensure_venv()
os.chdir(ROOT)
args = sys.argv[1:]
if args == ["--lint"]:
    os.execv(str(python), [str(python), "-m", "ruff", "check", "."])
install_missing()
if "--fast" in args:  # in 3 processes, whole files each (pytest-xdist): these tests mostly wait
    args = ["-m", "not litellm", "-n", "3", "--dist", "loadfile", *(a for a in args if a != "--fast")]
os.execv(str(python), [str(python), "-m", "pytest", *args])
