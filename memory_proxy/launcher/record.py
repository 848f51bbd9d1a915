"""The process record (``processes.json``): which pids the launcher owns, whether they live, and
signalling their process groups."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psutil

from memory_proxy.names import SUPERVISOR
from memory_proxy.state import StateDir, atomic_write

if TYPE_CHECKING:
    pass  # the config module (and yaml) only where a config is read



# --- process records ---------------------------------------------------------------------

RECORD_VERSION = 1
STOP_GRACE = 10.0  # seconds a process has between SIGTERM and SIGKILL


def read_record(state: StateDir) -> dict | None:
    try:
        data = json.loads(state.processes.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == RECORD_VERSION else None


def write_record(state: StateDir, record: dict) -> None:
    atomic_write(state.processes, json.dumps(record, indent=1, sort_keys=True) + "\n", mode=0o600)


def remove_record(state: StateDir) -> None:
    try:
        state.processes.unlink()
    except FileNotFoundError:
        pass


def live_process(entry: Mapping[str, Any] | None) -> psutil.Process | None:
    """The recorded process if it still runs and is the same one (pid and creation time)."""
    if not entry or not entry.get("pid"):
        return None
    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry.get("create_time") or 0)) > 0.05:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, ValueError, TypeError):
        return None


def running_supervisor(state: StateDir) -> psutil.Process | None:
    record = read_record(state)
    return live_process((record or {}).get("processes", {}).get(SUPERVISOR)) if record else None


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def signal_group(pid: int, sig: int) -> None:
    """Signal a child's process group (each child leads its own session), else the child."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
