"""``status`` and ``down``: what the record says runs, probed; and stopping it."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from memory_proxy.launcher.ports import port_holder, port_in_use
from memory_proxy.launcher.probe import http_get
from memory_proxy.launcher.record import (
    RecordUnreadable,
    live_process,
    live_processes,
    load_record,
    remove_record,
    still_running,
    stop_groups,
)
from memory_proxy.names import LITELLM, LITELLM_READY_PATH, MEMORY_PROXY, MEMORY_PROXY_SDK, SUPERVISOR
from memory_proxy.state import StateDir

if TYPE_CHECKING:
    from memory_proxy.config.model import Config  # the config module (and yaml) only where a config is read



# --- status and down -------------------------------------------------------------------


def _entry_status(name: str, entry: Mapping[str, Any] | None, probe_url: str | None,
                  port: int | None) -> dict:
    proc = live_process(entry)
    info: dict[str, Any] = {"pid": proc.pid if proc else None, "port": port, "running": proc is not None,
                            "healthy": False, "uptime_s": None, "rss_mb": None}
    if entry and entry.get("restarts") is not None:
        info["restarts"] = entry["restarts"]
    if entry and entry.get("restarting") and proc is None:
        info["restarting"] = True
    if entry and entry.get("starting") and proc is not None:
        info["starting"] = True
    if proc is not None:
        try:
            info["uptime_s"] = round(time.time() - proc.create_time(), 1)
            info["rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
        except psutil.Error:
            pass
    if probe_url is not None:
        code, body = http_get(probe_url, timeout=2.0)
        info["health_url"] = probe_url
        info["health_status"] = code
        if name in (MEMORY_PROXY, MEMORY_PROXY_SDK):
            info["healthy"] = proc is not None and code in (200, 503)
            try:
                health = json.loads(body)
                info["litellm_ready"] = bool(health["litellm"]["ready"])
                info["waiting_for_litellm"] = int(health["memory_proxy"].get("waiting_for_litellm") or 0)
            except (ValueError, KeyError, TypeError, AttributeError):
                info["litellm_ready"] = False
            else:
                usage = (health.get("memory_proxy") or {}).get("usage") if isinstance(health, dict) else None
                if isinstance(usage, dict):
                    info["usage"] = usage  # the usage record's writer: written, queued, dropped, failing
        else:  # a restarted LiteLLM is "starting" until the supervisor has warmed it up too
            info["healthy"] = code == 200 and (proc is not None or entry is None) and not info.get("starting")
    else:
        info["healthy"] = proc is not None
    return info


def _probe_all(rows: Mapping[str, tuple]) -> dict[str, dict]:
    """``_entry_status`` of every row at once: the health probes wait on other processes
    (the memory proxy's ``/health`` asks LiteLLM in turn), so ``status`` waits for the slowest
    one instead of their sum."""
    results: dict[str, dict | BaseException] = {}

    def probe(name: str) -> None:
        try:
            results[name] = _entry_status(name, *rows[name])
        except BaseException as exc:  # raised again below, in the caller's thread
            results[name] = exc

    threads = [threading.Thread(target=probe, args=(name,), daemon=True) for name in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for outcome in results.values():
        if isinstance(outcome, BaseException):
            raise outcome
    return {name: results[name] for name in rows}


def collect_status(state: StateDir, config_path: Path) -> dict:
    """Everything ``status`` shows, as plain data; ``healthy`` only when every part is."""
    result: dict[str, Any] = {"healthy": False, "state_dir": str(state.root), "config": str(config_path),
                              "running": False, "state": None, "processes": {}, "models_missing_keys": {},
                              "problems": []}
    try:
        record = load_record(state)
    except RecordUnreadable as exc:
        record = None
        result["problems"].append(f"{exc}; `down` checks the ports and sets it aside")
    live = live_processes(record)
    orphans = {name: proc for name, proc in live.items() if name != SUPERVISOR} if SUPERVISOR not in live else {}
    if record and (orphans or (record.get("state") in ("running", "starting", "stopping") and SUPERVISOR in live)):
        result["running"] = True
        result["state"] = "orphaned" if orphans else record.get("state")
        if orphans:  # the supervisor was killed (SIGKILL): nothing restarts or stops its children now
            result["problems"].append(f"the supervisor is gone but {still_running(orphans)}; stop "
                                      f"{'it' if len(orphans) == 1 else 'them'} with: python3 start_proxies.py down")
        result["phase"] = record.get("phase")
        result["detached"] = record.get("detached")
        result["backend"] = record.get("backend") or "binary"
        result["config"] = record.get("config")
        result["models_missing_keys"] = record.get("models_missing_keys") or {}
        result["memory_proxy_url"] = record.get("memory_proxy_url")
        result["litellm_url"] = record.get("litellm_url")
        procs = record.get("processes", {})
        rows: dict[str, tuple] = {SUPERVISOR: (procs.get(SUPERVISOR), None, None)}  # name -> entry, probe, port
        external = record.get("external_litellm")
        if result["backend"] == "sdk":
            pass  # LiteLLM runs inside the memory proxy: no litellm row
        elif external:
            rows[LITELLM] = (None, external.rstrip("/") + LITELLM_READY_PATH, None)
        else:
            entry = procs.get(LITELLM) or {}
            port = entry.get("port")
            rows[LITELLM] = (entry, f"http://127.0.0.1:{port}{LITELLM_READY_PATH}" if port else None, port)
        entry = procs.get(MEMORY_PROXY) or {}
        port = entry.get("port")
        rows[MEMORY_PROXY] = (entry, f"{record.get('memory_proxy_url')}/health" if port else None, port)
        if MEMORY_PROXY_SDK in procs:
            entry = procs.get(MEMORY_PROXY_SDK) or {}
            health = entry.get("url") + "/health" if entry.get("url") else None
            rows[MEMORY_PROXY_SDK] = (entry, health, entry.get("port"))
        result["processes"] = _probe_all(rows)
        if external and LITELLM in result["processes"]:
            result["processes"][LITELLM]["external_url"] = external
        result["healthy"] = all(p["healthy"] for p in result["processes"].values())
        for name in (LITELLM, MEMORY_PROXY, MEMORY_PROXY_SDK):
            p = result["processes"].get(name)
            if p is None:
                continue
            if not p["healthy"]:
                why = ("restarting" if p.get("restarting") else "starting" if p.get("starting") else
                       "not running" if not p.get("pid") and not p.get("external_url") else "not healthy")
                result["problems"].append(f"{name} is {why}")
    else:
        if record and record.get("state") == "failed" and record.get("error"):
            result["state"] = "failed"
            result["problems"].append("the last start failed: " + record["error"]["message"])
        elif not result["problems"]:  # (an unreadable record cannot tell)
            result["problems"].append("not running (start it with: python3 start_proxies.py up)")
        from memory_proxy.config.model import ConfigError, load_config

        config: Config | None = None
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            result["problems"].append(exc.render())
        if config is not None:
            result["models_missing_keys"] = config.missing_keys()
            for name, port, host in ((MEMORY_PROXY, config.proxy.port, config.proxy.host),
                                     (LITELLM, config.proxy.litellm_port, "127.0.0.1")):
                info = {"pid": None, "port": port, "running": False, "healthy": False, "uptime_s": None,
                        "rss_mb": None}
                if port_in_use(port, host):
                    info["port_held_by"] = port_holder(port) or "another process"
                result["processes"][name] = info
        result["processes"][SUPERVISOR] = {"pid": None, "port": None, "running": False, "healthy": False,
                                           "uptime_s": None, "rss_mb": None}
    return result


@dataclass
class DownReport:
    stopped: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    ports_busy: list[str] = field(default_factory=list)
    nothing: bool = False
    unreadable: str | None = None  # why the record could not be read (it was set aside)


def _gone(proc: psutil.Process, seconds: float) -> bool:
    """Whether a process (not necessarily ours) ended within ``seconds``: a zombie has."""
    try:
        proc.wait(seconds)
        return True
    except psutil.TimeoutExpired:
        try:
            return proc.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True
    except psutil.Error:
        return True


def set_aside(state: StateDir) -> Path:
    """Move an unreadable record out of the way, kept for a look: ``processes.json.unreadable``."""
    aside = state.processes.with_name(state.processes.name + ".unreadable")
    state.processes.replace(aside)
    return aside


def _busy(ports: Iterable[int], wait: float, why: str = "") -> list[str]:
    """Each of ``ports`` still taken after up to ``wait`` seconds, and by what."""
    busy = []
    deadline = time.monotonic() + wait
    for port in dict.fromkeys(filter(None, ports)):
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if port_in_use(port):
            busy.append(f"port {port} is still taken by {port_holder(port) or 'another process'}{why}")
    return busy


def stop_recorded(state: StateDir, grace: float = 20.0, configured_ports: Iterable[int] = ()) -> DownReport:
    """Stop what the record names: the supervisor first (it stops its children in order), then
    any recorded child still alive, by pid and group; SIGKILL after ``grace``; ports checked.
    An unreadable record names nothing to stop: it is set aside and ``configured_ports`` checked;
    so are they when there is no record."""
    report = DownReport()
    try:
        record = load_record(state)
    except RecordUnreadable as exc:
        try:
            aside = set_aside(state)
        except OSError as error:
            report.unreadable = f"{exc} (and could not be moved aside: {error.strerror or error})"
        else:
            report.unreadable = f"{exc}; moved it aside to {aside}"
        report.ports_busy = _busy(configured_ports, 0.0)
        return report
    if record is None:  # nothing to stop; a port taken anyway is not this state folder's
        report.nothing = True
        report.ports_busy = _busy(configured_ports, 0.0, f", which nothing recorded in {state.root} started "
                                  "(another --state-dir, or not this project)")
        return report
    entries = record.get("processes", {})
    live = live_processes(record)
    procs = {name: live[name] for name in (SUPERVISOR, MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM) if name in live}
    descendants: list[psutil.Process] = []
    for proc in procs.values():
        try:
            descendants.extend(proc.children(recursive=True))
        except psutil.Error:
            pass
    if not procs:
        report.nothing = True

    sup = procs.pop(SUPERVISOR, None)
    if sup is not None:
        try:
            sup.send_signal(signal.SIGTERM)
            report.stopped.append(f"supervisor (pid {sup.pid})")
        except psutil.Error:
            pass
        if not _gone(sup, grace):
            report.killed.append(f"supervisor (pid {sup.pid})")
            try:
                sup.kill()
            except psutil.Error:
                pass
    children = [p for p in procs.values() if p.is_running()]
    for name, proc in procs.items():
        report.stopped.append(f"{name} (pid {proc.pid})" if proc in children
                              else f"{name} (pid {proc.pid}, stopped by the supervisor)")
    for proc in stop_groups(children, _gone):
        report.killed.append(f"pid {proc.pid}")
    for proc in descendants:
        try:
            if proc.is_running():
                proc.kill()
                report.killed.append(f"pid {proc.pid} (child of a recorded process)")
        except psutil.Error:
            pass
    report.ports_busy = _busy([(entries.get(n) or {}).get("port") for n in (MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM)],
                              5.0)
    remove_record(state)
    return report
