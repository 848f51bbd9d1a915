"""`up`, `down`, `status` and `logs`: starting, stopping and watching the processes.

Nothing here imports LiteLLM, Starlette or httpx; rich only for `up`'s progress display on a
terminal (output goes through ``term``, which writes what rich would without its import time).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from memory_proxy.launcher.context import LAUNCHER, Context
from memory_proxy.launcher.hints import client_hints, print_hints, proxy_base
from memory_proxy.launcher.logfiles import follow, tail
from memory_proxy.launcher.record import (
    RecordUnreadable,
    exited,
    live_processes,
    load_record,
    read_record,
    remove_record,
    still_running,
    stop_groups,
)
from memory_proxy.launcher.status import collect_status, stop_recorded
from memory_proxy.launcher.term import duration, err, fail, out, print_json, warn
from memory_proxy.names import BACKENDS, LITELLM, LOG_ALIASES, MEMORY_PROXY, MEMORY_PROXY_SDK, SUPERVISOR
from memory_proxy.state import StateDir, StateDirError, atomic_write

if TYPE_CHECKING:
    from memory_proxy.config.model import Config
    from memory_proxy.launcher.supervisor import Supervisor

BACKEND_FILE = "mode"  # the state folder remembers the last `up --backend` here (the file keeps its name)

PREFIX_STYLE = {LITELLM: "cyan", MEMORY_PROXY: "magenta", SUPERVISOR: "yellow", MEMORY_PROXY_SDK: "blue"}


def remembered_backend(state: StateDir) -> str | None:
    """The backend of the last successful ``up`` (``binary``, ``sdk`` or ``both``), if any."""
    try:
        backend = (state.root / BACKEND_FILE).read_text().strip()
    except OSError:
        return None
    return backend if backend in BACKENDS else None


def remember_backend(state: StateDir, backend: str) -> None:
    atomic_write(state.root / BACKEND_FILE, backend + "\n", mode=0o600)


# --- up ----------------------------------------------------------------------------------


class _NoProgress:
    """Stands for rich's transient progress display where stderr is no terminal: rich shows
    nothing there but one empty line when the display ends, and so does this."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        err.write("\n")

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def update(self, task: int, description: str | None = None) -> None:
        pass


def _progress():
    if not err.is_terminal():
        return _NoProgress()  # and no rich import: `up --detach` from a script returns sooner
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # only `up` needs it

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=err.rich(), transient=True)


def _already_running(ctx: Context, as_json: bool) -> int:
    status = collect_status(ctx.state, ctx.config)
    sup = status["processes"].get(SUPERVISOR, {})
    how = "detached" if status.get("detached") else "foreground"
    message = (f"already running from {ctx.state.root} (supervisor pid {sup.get('pid')}, {how}); "
               f"run `{ctx.command} down` first to restart with a changed config")
    if as_json:
        print_json({"ok": status["healthy"], "already_running": True, "message": message, "status": status})
    else:
        warn(message)
    return 0 if status["healthy"] else 1


def up(ctx: Context, *, detach: bool, litellm_url: str | None, timeout: float, as_json: bool,
       backend: str | None = None, sdk_port: int | None = None) -> int:
    def refuse(message: str, code: int) -> int:
        print_json({"ok": False, "error": message}) if as_json else fail(message)
        return code

    try:
        state = ctx.state.ensure()
        record = load_record(state)
    except StateDirError as exc:
        return refuse(f"{exc}; choose another with --state-dir", 2)
    except RecordUnreadable as exc:
        return refuse(f"{exc}; run `{ctx.command} down` (it checks the ports and sets the record aside)", 1)
    live = live_processes(record)
    if SUPERVISOR in live:
        return _already_running(ctx, as_json)
    if live:  # the supervisor was killed; its children hold the ports and only the record can stop them
        return refuse(f"the supervisor of {state.root} is gone but {still_running(live)}; "
                      f"run `{ctx.command} down` first", 1)
    remove_record(state)  # stale: nothing of it runs any more
    backend = backend or remembered_backend(state) or "binary"
    if backend == "sdk" and litellm_url:
        return refuse("--litellm-url needs --backend binary or both (with sdk LiteLLM runs inside the memory proxy)",
                      2)
    from memory_proxy.launcher.supervisor import LaunchError, Supervisor  # `up` only: not `status`

    sup = Supervisor(ctx.config, state, detached=detach,
                        litellm_url=litellm_url, startup_timeout=timeout, backend=backend, sdk_port=sdk_port)
    try:
        config = sup.preflight()
    except LaunchError as exc:
        if as_json:
            print_json({"ok": False, "error": exc.message})
        else:
            fail(exc.message)
        return exc.exit_code
    if not as_json:
        for warning in config.warnings:
            warn(warning)
    if detach:
        return _up_detached(ctx, config, litellm_url, timeout, as_json, backend, sdk_port)
    return _up_foreground(sup, config, ctx.command)


def _up_detached(ctx: Context, config: Config, litellm_url: str | None, timeout: float, as_json: bool,
                 backend: str = "binary", sdk_port: int | None = None) -> int:
    from memory_proxy.launcher.supervisor import MEMORY_STARTUP_TIMEOUT, ROOT, describe_exit

    state = ctx.state
    argv = [sys.executable, str(LAUNCHER), "--config", str(ctx.config), "--state-dir", str(state.root),
            "_supervise", "--timeout", str(timeout), "--backend", backend]
    if sdk_port is not None:
        argv += ["--sdk-port", str(sdk_port)]
    if litellm_url:
        argv += ["--litellm-url", litellm_url]
    log_path = state.process_log(SUPERVISOR)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True, close_fds=True,
                                env={"PYTHONFAULTHANDLER": "1", **os.environ})  # a crash leaves its stack here too
    deadline = time.monotonic() + timeout + MEMORY_STARTUP_TIMEOUT + 30
    failure: tuple[str, str | None] | None = None
    record: dict | None = None
    try:
        with _progress() as progress:
            task = progress.add_task("starting the supervisor", total=None)
            while True:
                record = read_record(state)
                ours = record is not None and record.get("processes", {}).get(SUPERVISOR, {}).get("pid") == proc.pid
                if ours:
                    progress.update(task, description=record.get("phase") or "starting")
                    if record.get("state") == "running":
                        break
                    if record.get("state") == "failed":
                        error = record.get("error") or {}
                        failure = (error.get("message") or "startup failed", error.get("log_tail"))
                        break
                code = proc.poll()
                if code is not None:
                    failure = (f"the supervisor exited ({describe_exit(code)}) during startup; last lines of "
                               f"{log_path}:", tail(log_path, 25))
                    break
                if time.monotonic() > deadline:
                    failure = (f"not healthy in time (--timeout {timeout:g}); giving up; last lines of "
                               f"{state.process_log(LITELLM)}:", tail(state.process_log(LITELLM), 25))
                    break
                time.sleep(0.05)  # the record changes as the supervisor goes; `up` returns as soon as it says running
    except KeyboardInterrupt:
        _stop_starting(state, proc)
        fail("interrupted; nothing is left running")
        return 130
    if failure is not None:
        _stop_starting(state, proc)
        if as_json:
            print_json({"ok": False, "error": failure[0], "log_tail": failure[1]})
        else:
            fail(*failure)
        return 1
    remember_backend(state, backend)
    if as_json:
        print_json({"ok": True, "backend": backend, "memory_proxy_url": proxy_base(config),
                     "sdk_url": record.get("processes", {}).get(MEMORY_PROXY_SDK, {}).get("url"),
                     "litellm_url": record.get("litellm_url"),
                     "pids": {n: e.get("pid") for n, e in record.get("processes", {}).items()},
                     "state_dir": str(state.root), "clients": client_hints(config),
                     "models_missing_keys": record.get("models_missing_keys", {})})
    else:
        print_hints(config, record, ctx.command)
    return 0


def _stop_starting(state: StateDir, proc: subprocess.Popen) -> None:
    """A failed or interrupted detached start: make sure nothing of it keeps running."""
    if proc.poll() is None:  # it leads its own session: its group is itself
        for killed in stop_groups([proc], exited, grace=30):
            killed.wait()
    stop_recorded(state, grace=5.0)


def _up_foreground(sup: Supervisor, config: Config, command: str) -> int:
    from memory_proxy.launcher.supervisor import Interrupted, LaunchError

    state = sup.state

    def show_event(message: str) -> None:
        err.line(("[supervisor] ", PREFIX_STYLE["supervisor"]), message)

    sup.on_event = show_event
    sup.install_signal_handlers(hangup_stops=True)
    try:
        with _progress() as progress:
            task = progress.add_task("starting", total=None)
            sup.on_phase = lambda phase: progress.update(task, description=phase)
            sup.start()
            sup.on_phase = None
    except LaunchError as exc:
        sup.fail(exc)
        remove_record(state)
        fail(exc.message, exc.log_tail)
        return exc.exit_code
    except Interrupted:
        sup.shutdown()
        remove_record(state)
        fail("interrupted; nothing is left running")
        return 130
    remember_backend(state, sup.backend)
    print_hints(config, read_record(state), command)
    out.line(("Streaming both logs; Ctrl+C stops both.", "dim"))
    shown = {"binary": [LITELLM, MEMORY_PROXY], "sdk": [MEMORY_PROXY]}.get(sup.backend,
                                                                          [LITELLM, MEMORY_PROXY, MEMORY_PROXY_SDK])
    streamer = threading.Thread(target=_stream_logs, args=(state, shown, sup.stop_event, True), daemon=True)
    streamer.start()
    try:
        sup.monitor()
    finally:
        sup.shutdown()
        remove_record(state)
        streamer.join(timeout=1)
        show_event("stopped; nothing is left running")
    return 0


def _stream_logs(state: StateDir, names: list[str], stop: threading.Event, from_end: bool,
                 prefix: bool = True) -> None:
    paths = {name: state.process_log(name) for name in names}
    width = max(len(n) for n in names) + 2
    for name, line in follow(paths, stop, from_end=from_end):
        if prefix:
            out.line((f"[{name}]".ljust(width) + " ", PREFIX_STYLE.get(name, "")), line)
        else:
            out.line(line)


def supervise(ctx: Context, litellm_url: str | None, timeout: float, backend: str = "binary",
              sdk_port: int | None = None) -> int:
    from memory_proxy.launcher.detached import run_detached

    return run_detached(ctx.config, ctx.state, litellm_url, timeout, backend, sdk_port)


# --- status / down / logs ----------------------------------------------------------------


def status(ctx: Context, as_json: bool) -> int:
    result = collect_status(ctx.state, ctx.config)
    if as_json:
        print_json(result)
        return 0 if result["healthy"] else 1
    headline = (("healthy", "bold green") if result["healthy"] else
                ("degraded", "bold yellow") if result["running"] else ("not running", "bold red"))
    out.line("LiteLLM Memory Proxy: ", headline, f"  (state {result['state_dir']})")
    if result["running"]:
        out.line(f"backend: {result.get('backend') or 'binary'}")
    rows = []
    for name in (MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM, SUPERVISOR):
        p = result["processes"].get(name)
        if p is None:
            continue
        if p.get("healthy"):
            health = ("ok", "green")
            if name in (MEMORY_PROXY, MEMORY_PROXY_SDK) and p.get("litellm_ready") is False:
                health = ("ok, LiteLLM not ready", "yellow")
            if p.get("waiting_for_litellm"):
                health = (f"{health[0]}, {p['waiting_for_litellm']} requests waiting for LiteLLM", "yellow")
        elif p.get("restarting"):
            health = ("restarting", "yellow")
        elif p.get("starting"):
            health = ("starting", "yellow")
        elif p.get("port_held_by"):
            health = (f"port held by {p['port_held_by']}", "red")
        elif p.get("running"):
            health = ("not answering", "red")
        else:
            health = ("down", "red")
        pid = str(p.get("pid") or ("external" if p.get("external_url") else "-"))
        port = str(p.get("port") or (p.get("external_url") or "-"))
        rss = f"{p['rss_mb']:.0f} MB" if p.get("rss_mb") is not None else "-"
        rows.append([name, pid, port, health, duration(p.get("uptime_s")), rss,
                     str(p.get("restarts", "-")) if name != SUPERVISOR else "-"])
    out.table(("process", "pid", "port", "health", "uptime", "memory", "restarts"), rows)
    for name in (MEMORY_PROXY, MEMORY_PROXY_SDK):
        usage = (result["processes"].get(name) or {}).get("usage") or {}
        if usage.get("enabled") and ((not usage.get("store_ok") and usage.get("last_error")) or usage.get("dropped")):
            warn(f"{name}: the usage store is {'failing' if not usage.get('store_ok') else 'ok'} "
                  f"({usage.get('last_error') or 'no error now'}); {usage.get('queued', 0)} records queued, "
                  f"{usage.get('dropped', 0)} dropped")
    for model, variables in (result.get("models_missing_keys") or {}).items():
        warn(f"model {model!r} lacks its key: {', '.join(variables)} not set (left out of LiteLLM)")
    for problem in result["problems"]:
        warn(problem)
    return 0 if result["healthy"] else 1


def _configured_ports(ctx: Context) -> list[int]:
    """The ports the config gives this installation (the SDK proxy's default too, after `up --backend
    both`): what `down` checks when the record cannot say; none when the config cannot be read."""
    from memory_proxy.config.model import ConfigError, load_config

    try:
        proxy = load_config(ctx.config).proxy
    except ConfigError:
        return []
    ports = [proxy.port, proxy.litellm_port]
    return ports + [proxy.port + 2] if remembered_backend(ctx.state) == "both" else ports


def down(ctx: Context, as_json: bool) -> int:
    report = stop_recorded(ctx.state, configured_ports=_configured_ports(ctx))
    ok = not report.ports_busy and report.unreadable is None
    if as_json:
        print_json({"ok": ok, "nothing_running": report.nothing, "stopped": report.stopped,
                     "killed": report.killed, "ports_busy": report.ports_busy, "unreadable": report.unreadable})
        return 0 if ok else 1
    if report.unreadable is not None:
        fail(report.unreadable)
    elif report.nothing and not report.stopped:
        out.line(f"Nothing was running from {ctx.state.root}.")
    else:
        out.line(("✔ ", "bold green"), "stopped " + ", ".join(report.stopped))
        if report.killed:
            warn("had to SIGKILL: " + ", ".join(report.killed))
    for busy in report.ports_busy:
        fail(busy)
    return 0 if ok else 1


def logs(ctx: Context, which: str, follow: bool, lines: int) -> int:
    """The last ``lines`` lines of each log (0: none, e.g. to follow only what comes), then follow."""
    if lines < 0:
        fail(f"-n/--lines must be 0 or more, not {lines}")
        return 2
    problem = ctx.state.problem()
    if problem:
        fail(problem)
        return 2
    which = LOG_ALIASES.get(which, which)
    names = [SUPERVISOR, LITELLM, MEMORY_PROXY] if which == "all" else [which]
    if which == "all" and ctx.state.process_log(MEMORY_PROXY_SDK).exists():
        names.append(MEMORY_PROXY_SDK)
    multiple = len(names) > 1
    if not any(ctx.state.process_log(name).exists() for name in names):
        warn(f"no log yet at {ctx.state.process_log(names[0]) if not multiple else ctx.state.logs}")
    for name in names:
        path = ctx.state.process_log(name)
        if not path.exists():
            continue
        text = tail(path, lines)
        for line in text.splitlines():
            if multiple:
                out.line((f"[{name}]".ljust(19), PREFIX_STYLE.get(name, "")), line)
            else:
                out.line(line)
    if follow:
        stop = threading.Event()
        try:
            _stream_logs(ctx.state, names, stop, True, prefix=multiple)
        except KeyboardInterrupt:
            stop.set()
    return 0
