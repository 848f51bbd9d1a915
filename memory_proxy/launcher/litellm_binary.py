"""Finding the real ``litellm`` executable."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from memory_proxy.names import LITELLM_BINARY_ENV


def find_litellm() -> Path | None:
    """``$MEMORY_PROXY_LITELLM`` if set, else the ``litellm`` executable beside the running
    interpreter (so a venv need not be activated), else the first one on ``PATH``."""
    override = os.environ.get(LITELLM_BINARY_ENV)
    if override:
        path = Path(override).expanduser()
        return path if path.is_file() and os.access(path, os.X_OK) else None
    beside = Path(sys.executable).parent / "litellm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("litellm")
    return Path(found) if found else None


def litellm_missing() -> str:
    if os.environ.get(LITELLM_BINARY_ENV):
        return f"{LITELLM_BINARY_ENV}={os.environ[LITELLM_BINARY_ENV]} is not an executable file"
    return (f"the litellm executable was found neither beside {sys.executable} nor on PATH; "
            "`python3 start_proxies.py up` installs it into .venv")
