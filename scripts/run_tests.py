#!/usr/bin/env python3
"""Run the whole test suite: ``python3 scripts/run_tests.py [pytest args]``.

Creates the virtual environment on first run, exactly like ``start_proxies.py``.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory_proxy import bootstrap  # noqa: E402

python = bootstrap.ensure_venv()
os.chdir(ROOT)
os.execv(str(python), [str(python), "-m", "pytest", *sys.argv[1:]])
