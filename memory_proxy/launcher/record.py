"""The process record (``processes.json``): which pids the launcher owns, whether they live, and
signalling and stopping their process groups (SIGTERM, a grace, SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from memory_proxy.state import StateDir, atomic_write

# --- process records ---------------------------------------------------------------------

RECORD_VERSION = 1
STOP_GRACE = 10.0  # seconds a process has between SIGTERM and SIGKILL


class RecordUnreadable(Exception):
    """``processes.json`` is there but is no record of this launcher (garbage, torn by hand, another
    shape): what runs cannot be told from it."""


def _well_formed(data: object) -> bool:
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        return False
    processes = data.get("processes", {})
    return isinstance(processes, dict) and all(e is None or isinstance(e, dict) for e in processes.values())


def load_record(state: StateDir) -> dict | None:
    """The record, or None when there is none; raises RecordUnreadable when it cannot be read."""
    path = state.processes
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):  # (no state folder: `up` and `doctor` say so)
        return None
    except OSError as exc:
        raise RecordUnreadable(f"cannot read the process record {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise RecordUnreadable(f"the process record {path} is not JSON (written by hand, or damaged)") from None
    if not _well_formed(data):
        raise RecordUnreadable(f"the process record {path} is not one this launcher writes "
                               f"(version {RECORD_VERSION}, processes by name)")
    return data


def read_record(state: StateDir) -> dict | None:
    """The record, or None when there is none or it is unreadable (see :func:`load_record`)."""
    try:
        return load_record(state)
    except RecordUnreadable:
        return None


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


def live_processes(record: Mapping[str, Any] | None) -> dict[str, psutil.Process]:
    """The recorded processes still running (pid and creation time), by name."""
    entries = (record or {}).get("processes") or {}
    found = {name: live_process(entry) for name, entry in entries.items()}
    return {name: proc for name, proc in found.items() if proc is not None}


def still_running(procs: Mapping[str, psutil.Process]) -> str:
    """"litellm (pid 12) still runs", "memory_proxy (pid 13), litellm (pid 12) still run"."""
    names = ", ".join(f"{name} (pid {proc.pid})" for name, proc in procs.items())
    return f"{names} still {'runs' if len(procs) == 1 else 'run'}"


def create_time(pid: int) -> float | None:
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


def exited(proc, seconds: float) -> bool:
    """Whether a ``subprocess.Popen`` of this process's own ended (and was reaped) within ``seconds``."""
    import subprocess  # here: `status` and `--help` never wait for a child

    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def stop_groups(procs: list, gone: Callable[[Any, float], bool], grace: float = STOP_GRACE) -> list:
    """SIGTERM each process's group, give them ``grace`` seconds in all, then SIGKILL the groups
    of those still running. ``gone(proc, seconds)`` waits up to ``seconds`` for one to end
    (:func:`exited` for a ``Popen`` of our own). Returns the ones killed."""
    for proc in procs:
        signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = [proc for proc in procs if not gone(proc, max(0.0, deadline - time.monotonic()))]
    for proc in killed:
        signal_group(proc.pid, signal.SIGKILL)
    return killed
