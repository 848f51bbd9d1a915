"""What the launcher's commands do and print: styled output for people, ``--json`` for scripts.

``start_proxies.py`` only parses the command line and calls these. Nothing here imports
LiteLLM, Starlette or httpx; rich only for ``up``'s progress display on a terminal (output
goes through ``term``, which writes what rich would without its import time).
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memory_proxy.config.hosts import connect_host, url_host
from memory_proxy.launcher.detached import run_detached
from memory_proxy.launcher.litellm_binary import find_litellm, litellm_missing
from memory_proxy.launcher.logfiles import follow, tail
from memory_proxy.launcher.record import read_record, remove_record, running_supervisor
from memory_proxy.launcher.status import collect_status, stop_recorded
from memory_proxy.launcher.supervisor import (
    MEMORY_STARTUP_TIMEOUT,
    ROOT,
    Interrupted,
    LaunchError,
    Supervisor,
    describe_exit,
    missing_keys,
)
from memory_proxy.launcher.term import err, out
from memory_proxy.names import BACKENDS, LITELLM, LOG_ALIASES, MEMORY_PROXY, MEMORY_PROXY_SDK, SUPERVISOR
from memory_proxy.state import StateDir, atomic_write, default_state_dir

if TYPE_CHECKING:
    from memory_proxy.config.model import Config  # the config module (and yaml) only for commands that read the config

ROOT = ROOT
LAUNCHER = ROOT / "start_proxies.py"
BACKEND_FILE = "mode"  # the state folder remembers the last `up --backend` here (the file keeps its name)

PREFIX_STYLE = {LITELLM: "cyan", MEMORY_PROXY: "magenta", SUPERVISOR: "yellow", MEMORY_PROXY_SDK: "blue"}

# Typical clients, the headers they send, and how to point each at the proxy ({base} = proxy URL).
CLIENTS: list[tuple[str, dict[str, str], str]] = [
    ("PyCharm AI Assistant", {"user-agent": "OpenAIClientImpl/Java unknown"},
     "OpenAI-compatible service, URL {base}/v1"),
    ("Claude Code", {"user-agent": "claude-cli/2.0.14 (external, cli)"}, "ANTHROPIC_BASE_URL={base}"),
    ("OpenAI Python SDK", {"user-agent": "OpenAI/Python 1.0.0"}, 'OpenAI(base_url="{base}/v1")'),
    ("Anthropic Python SDK", {"user-agent": "Anthropic/Python 0.40.0"}, 'Anthropic(base_url="{base}")'),
    ("curl", {"user-agent": "curl/8.5.0"}, "curl {base}/v1/chat/completions"),
]


@dataclass(frozen=True)
class Context:
    config: Path
    state: StateDir

    @property
    def command(self) -> str:
        """How to call the launcher again for this same installation."""
        launcher = LAUNCHER.name if Path.cwd() == ROOT else str(LAUNCHER)
        parts = ["python3", launcher]
        if self.config != ROOT / "config" / "config.yaml":
            parts += ["--config", str(self.config)]
        if self.state.root != default_state_dir().expanduser().resolve():
            parts += ["--state-dir", str(self.state.root)]
        return " ".join(shlex.quote(p) for p in parts)


def _print_json(data: Any) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _fail(message: str, log_tail: str | None = None) -> None:
    err.line(("✘ ", "bold red"), message)
    if log_tail:
        for line in log_tail.splitlines():
            err.line(("    " + line, "dim"))


def _warn(message: str) -> None:
    err.line(("! ", "bold yellow"), message)


# --- client hints ----------------------------------------------------------------------


def proxy_base(config: Config) -> str:
    return f"http://{url_host(config.proxy.host)}:{config.proxy.port}"


def client_hints(config: Config) -> list[dict[str, str]]:
    """How to point each typical client at the proxy and which memory id it will get."""
    from memory_proxy.server.routing import resolve

    base = proxy_base(config)
    hints = []
    for client, headers, setting in CLIENTS:
        resolution = resolve(config.user_id_mappings, headers, "/v1/chat/completions")
        hints.append({"client": client, "setting": setting.format(base=base), "user_id": resolution.user_id,
                      "reason": resolution.detail})
    return hints


def remembered_backend(state: StateDir) -> str | None:
    """The backend of the last successful ``up`` (``binary``, ``sdk`` or ``both``), if any."""
    try:
        backend = (state.root / BACKEND_FILE).read_text().strip()
    except OSError:
        return None
    return backend if backend in BACKENDS else None


def remember_backend(state: StateDir, backend: str) -> None:
    atomic_write(state.root / BACKEND_FILE, backend + "\n", mode=0o600)


def backend_line(record: dict | None) -> str:
    record = record or {}
    backend = record.get("backend") or "binary"
    procs = record.get("processes", {})
    if backend == "sdk":
        return "backend sdk: LiteLLM's Router runs inside the memory proxy (no litellm process)"
    if backend == "both":
        sdk = procs.get(MEMORY_PROXY_SDK, {})
        return (f"backend both: binary-backed on {record.get('memory_proxy_url')}, "
                f"SDK-backed on {sdk.get('url')} (pid {sdk.get('pid')})")
    return "backend binary: the litellm binary behind the memory proxy"


def print_hints(config: Config, record: dict | None, command: str = "python3 start_proxies.py") -> None:
    base = proxy_base(config)
    procs = (record or {}).get("processes", {})
    pids = ", ".join(f"{name} {procs[name]['pid']}" for name in (MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM, SUPERVISOR)
                     if procs.get(name, {}).get("pid"))
    litellm = (record or {}).get("litellm_url") or f"http://127.0.0.1:{config.proxy.litellm_port}"
    if (record or {}).get("backend") == "sdk":
        litellm = "in-process (SDK mode)"
    out.line(("✔ ", "bold green"), (f"LiteLLM Memory Proxy is up on {base}", "bold"),
             f"  (LiteLLM at {litellm}; pids: {pids})")
    out.line(backend_line(record))
    out.line()
    out.line("Point each client at the memory proxy:")
    rows = [(h["client"], h["setting"], h["user_id"]) for h in client_hints(config)]
    rows.append(("Any one project", f"header {config.user_id_mappings.custom_header}: <id>, or base URL "
                                    f"{base}/scope/<id>/v1", "<id>"))
    width = max(len(r[0]) for r in rows) + 2
    setting_width = max(len(r[1]) for r in rows) + 2
    for client, setting, user_id in rows:
        out.line(("  " + client.ljust(width), "bold"), setting.ljust(setting_width), "memory id: ", (user_id, "cyan"))
    key_note = ("one of memory_proxy.api_keys" if config.proxy.api_keys
                else "any value (the proxy sends LiteLLM's own key)")
    out.line(f"API key in the client: {key_note}")
    backed = config.supermemory_groups
    missing = missing_keys(config)
    ordinary = sorted({m.model_name for m in config.models if not m.supermemory_backed} - set(missing))
    out.line(f"Models with memory: {', '.join(g for g in backed if g not in missing) or '(none)'}; "
             f"without memory: {', '.join(ordinary) or '(none)'}"
             + (f"; disabled (missing keys): {', '.join(missing)}" if missing else ""))
    if config.proxy.usage.enabled:
        out.line(f"Usage: {base}/ui/ (dashboard) or {command} stats")
    out.line(f"Logs: {command} logs -f\nStatus: {command} status\nStop: {command} down")


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
    message = (f"already running from {ctx.state.root} (supervisor pid {sup.get('pid')}, {'detached' if status.get('detached') else 'foreground'}); "
               f"run `{ctx.command} down` first to restart with a changed config")
    if as_json:
        _print_json({"ok": status["healthy"], "already_running": True, "message": message, "status": status})
    else:
        _warn(message)
    return 0 if status["healthy"] else 1


def up(ctx: Context, *, detach: bool, litellm_url: str | None, timeout: float, as_json: bool,
       backend: str | None = None, sdk_port: int | None = None) -> int:
    state = ctx.state.ensure()
    if running_supervisor(state) is not None:
        return _already_running(ctx, as_json)
    remove_record(state)  # stale: nothing of it runs any more
    backend = backend or remembered_backend(state) or "binary"
    if backend == "sdk" and litellm_url:
        message = "--litellm-url needs --backend binary or both (with sdk LiteLLM runs inside the memory proxy)"
        _print_json({"ok": False, "error": message}) if as_json else _fail(message)
        return 2
    sup = Supervisor(ctx.config, state, detached=detach,
                        litellm_url=litellm_url, startup_timeout=timeout, backend=backend, sdk_port=sdk_port)
    try:
        config = sup.preflight()
    except LaunchError as exc:
        if as_json:
            _print_json({"ok": False, "error": exc.message})
        else:
            _fail(exc.message)
        return exc.exit_code
    if not as_json:
        for warning in config.warnings:
            _warn(warning)
    if detach:
        return _up_detached(ctx, config, litellm_url, timeout, as_json, backend, sdk_port)
    return _up_foreground(sup, config, ctx.command)


def _up_detached(ctx: Context, config: Config, litellm_url: str | None, timeout: float, as_json: bool,
                 backend: str = "binary", sdk_port: int | None = None) -> int:
    state = ctx.state
    argv = [sys.executable, str(LAUNCHER), "--config", str(ctx.config), "--state-dir", str(state.root),
            "_supervise", "--timeout", str(timeout), "--backend", backend]
    if sdk_port:
        argv += ["--sdk-port", str(sdk_port)]
    if litellm_url:
        argv += ["--litellm-url", litellm_url]
    log_path = state.process_log(SUPERVISOR)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, start_new_session=True, close_fds=True)
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
        _fail("interrupted; nothing is left running")
        return 130
    if failure is not None:
        _stop_starting(state, proc)
        if as_json:
            _print_json({"ok": False, "error": failure[0], "log_tail": failure[1]})
        else:
            _fail(*failure)
        return 1
    remember_backend(state, backend)
    if as_json:
        _print_json({"ok": True, "backend": backend, "memory_proxy_url": proxy_base(config),
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
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stop_recorded(state, grace=5.0)


def _up_foreground(sup: Supervisor, config: Config, command: str) -> int:
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
        _fail(exc.message, exc.log_tail)
        return exc.exit_code
    except Interrupted:
        sup.shutdown()
        remove_record(state)
        _fail("interrupted; nothing is left running")
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
    return run_detached(ctx.config, ctx.state, litellm_url, timeout, backend, sdk_port)


# --- status / down / logs ----------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def status(ctx: Context, as_json: bool) -> int:
    result = collect_status(ctx.state, ctx.config)
    if as_json:
        _print_json(result)
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
        rows.append([name, pid, port, health, _duration(p.get("uptime_s")), rss,
                     str(p.get("restarts", "-")) if name != SUPERVISOR else "-"])
    out.table(("process", "pid", "port", "health", "uptime", "memory", "restarts"), rows)
    for name in (MEMORY_PROXY, MEMORY_PROXY_SDK):
        usage = (result["processes"].get(name) or {}).get("usage") or {}
        if usage.get("enabled") and (not usage.get("store_ok") and usage.get("last_error") or usage.get("dropped")):
            _warn(f"{name}: the usage store is {'failing' if not usage.get('store_ok') else 'ok'} "
                  f"({usage.get('last_error') or 'no error now'}); {usage.get('queued', 0)} records queued, "
                  f"{usage.get('dropped', 0)} dropped")
    for model, variables in (result.get("models_missing_keys") or {}).items():
        _warn(f"model {model!r} lacks its key: {', '.join(variables)} not set (left out of LiteLLM)")
    for problem in result["problems"]:
        _warn(problem)
    return 0 if result["healthy"] else 1


def down(ctx: Context, as_json: bool) -> int:
    report = stop_recorded(ctx.state)
    ok = not report.ports_busy
    if as_json:
        _print_json({"ok": ok, "nothing_running": report.nothing, "stopped": report.stopped,
                     "killed": report.killed, "ports_busy": report.ports_busy})
        return 0 if ok else 1
    if report.nothing and not report.stopped:
        out.line(f"Nothing was running from {ctx.state.root}.")
    else:
        out.line(("✔ ", "bold green"), "stopped " + ", ".join(report.stopped))
        if report.killed:
            _warn("had to SIGKILL: " + ", ".join(report.killed))
    for busy in report.ports_busy:
        _fail(busy)
    return 0 if ok else 1


def logs(ctx: Context, which: str, follow: bool, lines: int) -> int:
    which = LOG_ALIASES.get(which, which)
    names = [SUPERVISOR, LITELLM, MEMORY_PROXY] if which == "all" else [which]
    if which == "all" and ctx.state.process_log(MEMORY_PROXY_SDK).exists():
        names.append(MEMORY_PROXY_SDK)
    multiple = len(names) > 1
    for name in names:
        path = ctx.state.process_log(name)
        if not path.exists():
            if not multiple:
                _warn(f"no {name} log yet ({path})")
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


# --- check / route / schema --------------------------------------------------------------


def check(ctx: Context, as_json: bool) -> int:
    from memory_proxy.config.model import ConfigError, load_config

    try:
        config = load_config(ctx.config)
    except ConfigError as exc:
        if as_json:
            _print_json({"ok": False, "problems": [f"{p.key}: {p.message}" for p in exc.problems],
                         "message": exc.render()})
        else:
            _fail(exc.render())
        return 2
    from memory_proxy.config import litellm as litellm_config

    generated = litellm_config.build_litellm_config(
        config, litellm_config.egress_base(config.proxy.port, connect_host(config.proxy.host)))
    masked = litellm_config.mask_secrets(generated)
    binary = find_litellm()
    problems = [] if binary else [litellm_missing()]
    missing = missing_keys(config)
    if as_json:
        _print_json({"ok": not problems, "problems": problems, "warnings": list(config.warnings),
                     "litellm": str(binary) if binary else None, "models_missing_keys": missing,
                     "supermemory_backed": config.supermemory_groups, "generated_config": masked})
        return 0 if not problems else 1
    out.line(("✔ ", "bold green"), f"{ctx.config} is valid")
    for warning in config.warnings:
        _warn(warning)
    for problem in problems:
        _fail(problem)
    out.line(f"Supermemory-backed model groups: {', '.join(config.supermemory_groups) or '(none)'}")
    out.line(f"litellm executable: {binary or '(not found)'}")
    out.line(("# generated LiteLLM config (secrets masked; written to the state folder by `up`):", "dim"))
    out.line(litellm_config.render(masked).rstrip())
    return 0 if not problems else 1


def client_headers(user_agent: str | None, headers: list[str]) -> dict[str, str]:
    """``--user-agent`` and ``--header NAME:VALUE`` options as a request's headers (lower-case
    names); ValueError names a malformed one."""
    given: dict[str, str] = {}
    for item in headers:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header wants NAME:VALUE, got {item!r}")
        given[name.strip().lower()] = value.strip()
    if user_agent is not None:
        given["user-agent"] = user_agent
    return given


def route(ctx: Context, user_agent: str | None, headers: list[str], path: str, as_json: bool) -> int:
    from memory_proxy.config.model import ConfigError, load_config
    from memory_proxy.server.routing import InvalidClientId, resolve

    try:
        config = load_config(ctx.config)
    except ConfigError as exc:
        _fail(exc.render())
        return 2
    try:
        given = client_headers(user_agent, headers)
    except ValueError as exc:
        _fail(str(exc))
        return 2
    try:
        resolution = resolve(config.user_id_mappings, given, path)
    except InvalidClientId as exc:
        if as_json:
            _print_json({"ok": False, "error": str(exc)})
        else:
            _fail(str(exc))
        return 2
    dropped = sorted(n for n in given if n.startswith(("x-sm-", "x-supermemory-")))
    if as_json:
        _print_json({"ok": True, "user_id": resolution.user_id, "source": resolution.source,
                     "reason": resolution.detail, "path": resolution.path, "dropped_headers": dropped})
        return 0
    out.line("memory id: ", (resolution.user_id, "bold"), f"  ({resolution.detail})")
    if resolution.path != path:
        out.line(f"LiteLLM sees the path: {resolution.path}")
    if dropped:
        out.line(f"dropped (clients cannot pick a memory by them): {', '.join(dropped)}")
    return 0


def schema() -> int:
    from memory_proxy.config.schema import json_schema

    _print_json(json_schema())
    return 0

