"""Start, watch and stop the two processes: the real ``litellm`` binary and the memory proxy.

Standard library plus psutil (and the config loader, and httptools for the probes) only:
``start_proxies.py status`` and ``--help`` import this module and must answer in well under a
second, so nothing here pulls in LiteLLM, Starlette or httpx at import time. Health probes
speak HTTP over a socket (httptools reads the answers).

One supervisor runs per state folder: the foreground ``up`` command itself, or a background
process started by ``up --detach``. It records every pid it owns in ``processes.json``
(with each process's creation time, so a recycled pid is never signalled), restarts a child
that dies with back-off, and stops both children when it is told to stop.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psutil

from .state import MASTER_KEY_ENV, StateDir, atomic_write

if TYPE_CHECKING:
    from .config import Config  # the config module (and yaml) only where a config is read

ROOT = Path(__file__).resolve().parent.parent
EGRESS_SECRET_ENV = "MEMORY_PROXY_EGRESS_SECRET"  # same name as litellm_config.EGRESS_SECRET_ENV

LITELLM, MEMORY, SUPERVISOR = "litellm", "memory_proxy", "supervisor"
SDK = "memory_proxy_sdk"  # the SDK-backed memory proxy beside the binary one (mode "both")
LOG_NAMES = {LITELLM: "litellm", MEMORY: "memory", SUPERVISOR: "supervisor", SDK: "memory_sdk"}
LABELS = {LITELLM: "LiteLLM", MEMORY: "the memory proxy", SDK: "the SDK-backed memory proxy"}  # in messages
BACKENDS = ("binary", "sdk", "both")  # `up --mode`
RECORD_VERSION = 1

STARTUP_TIMEOUT = 180.0  # LiteLLM needs 8-13 s on an idle 2-core machine, far more under load
MEMORY_STARTUP_TIMEOUT = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_AFTER = 60.0  # a child that ran this long before dying restarts with the first back-off again
HANG_LIMIT = 90.0  # a child answering nothing for this long is killed (and then restarted)
PROBE_EVERY = 5.0
STARTUP_POLL = 0.05  # between health probes while starting: `up` returns this soon after LiteLLM is ready
STOP_GRACE = 10.0
LOG_ROTATE_BYTES = 20 * 1024 * 1024


class LaunchError(Exception):
    """Startup failed; ``message`` says why, ``log_tail`` shows the failing process's last output."""

    def __init__(self, message: str, log_tail: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail
        self.exit_code = exit_code  # 2: the config is wrong


class Interrupted(Exception):
    """Told to stop while still starting."""


# --- small helpers -----------------------------------------------------------------------


LITELLM_BINARY_ENV = "MEMORY_PROXY_LITELLM"


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


def connect_host(host: str) -> str:
    """Where a local client reaches a server bound to ``host``."""
    if host in ("", "0.0.0.0", "localhost"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host


def url_host(host: str) -> str:
    host = connect_host(host)
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def bind_error(port: int, host: str = "127.0.0.1") -> OSError | None:
    """Why a server could not bind ``host:port`` (uvicorn binds with SO_REUSEADDR too), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as exc:
        return exc
    return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when a server could not bind ``host:port``."""
    return bind_error(port, host) is not None


def describe_process(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        cmd = " ".join(proc.cmdline()) or proc.name()
    except (psutil.Error, OSError):
        return f"pid {pid}"
    if len(cmd) > 100:
        cmd = cmd[:97] + "..."
    return f"pid {pid} ({cmd})"


def port_holder(port: int) -> str | None:
    """Which process listens on ``port``, as ``pid N (command)``; None if it cannot be told."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                return describe_process(conn.pid)
            return "a process of another user (try: sudo ss -ltnp 'sport = :%d')" % port
    return None


def port_problem(port: int, host: str, what: str) -> str | None:
    error = bind_error(port, "127.0.0.1" if host in ("", "localhost") else host)
    if error is None:
        return None
    if error.errno != errno.EADDRINUSE:  # e.g. an address this machine does not have
        return f"cannot listen on {host}:{port} ({what}): {error.strerror or error}"
    holder = port_holder(port)
    by = f"taken by {holder}" if holder else "taken by another process"
    return f"port {port} ({what}) is {by}; stop it or choose another port in the config"


def http_get(url: str, timeout: float = 2.0) -> tuple[int | None, bytes]:
    """(status, body) of a plain GET, or (None, b"") when nothing answered in time.
    No proxies from the environment, no redirects, no LiteLLM imports.

    Plain http (every probe of a process started here) is spoken over a socket and read by
    httptools, the parser ``transport.py`` uses: importing ``http.client`` (email parsing,
    ssl) cost ``status`` about 25 ms. https, for a LiteLLM given with ``--litellm-url``, goes
    through ``http.client``."""
    import httptools  # only where something runs to be asked; `status` of nothing skips it

    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        return _https_get(parts.hostname, parts.port, path, timeout)
    request = (f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: */*\r\n"
               "Connection: close\r\n\r\n").encode("latin-1")
    deadline = time.monotonic() + timeout
    answer = _ProbeAnswer()
    parser = httptools.HttpResponseParser(answer)
    received = 0
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as sock:
            sock.sendall(request)
            while not answer.complete and received < _PROBE_LIMIT:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                piece = sock.recv(65536)
                if not piece:
                    break
                received += len(piece)
                parser.feed_data(piece)
    except (OSError, TypeError, httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None, b""  # refused, timed out, reset; no HTTP answer
    if not (answer.complete or answer.ends_with_close()):
        return None, b""  # cut short
    return parser.get_status_code(), b"".join(answer.body)[:65536]


_PROBE_LIMIT = 1024 * 1024  # a probe's answer is a few hundred bytes; past this it is not one


class _ProbeAnswer:
    """httptools' callbacks for one probe's answer."""

    def __init__(self) -> None:
        self.names: set[bytes] = set()
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.names.add(name.lower())

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def ends_with_close(self) -> bool:
        """An answer with neither length nor chunking ends when the server closes. httptools
        has no call for the close; ``transport.py``'s ``connection_lost`` decides the same way."""
        return self.headers_done and not self.names & {b"content-length", b"transfer-encoding"}


def _https_get(host: str | None, port: int | None, path: str, timeout: float) -> tuple[int | None, bytes]:
    import http.client  # (and ssl): only for an https LiteLLM

    conn = http.client.HTTPSConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(65536)
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        conn.close()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    return http_get(url, timeout)[0]


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def follow(paths: Mapping[str, Path], stop: threading.Event, *, from_end: bool = True,
           poll: float = 0.2) -> Iterator[tuple[str, str]]:
    """Yield ``(name, line)`` as lines are appended to any of ``paths`` until ``stop`` is set.
    Copes with files that appear later, are truncated or are rotated."""
    handles: dict[str, Any] = {}
    inodes: dict[str, int] = {}
    partial: dict[str, str] = {name: "" for name in paths}
    first = True
    try:
        while not stop.is_set():
            got = False
            for name, path in paths.items():
                try:
                    st = path.stat()
                except OSError:
                    continue
                f = handles.get(name)
                if f is None or inodes.get(name) != st.st_ino or st.st_size < f.tell():
                    if f is not None:
                        f.close()
                    if partial[name]:  # the old file's unfinished last line
                        yield name, partial[name]
                        partial[name] = ""
                    f = handles[name] = open(path, "rb")
                    inodes[name] = st.st_ino
                    if first and from_end:
                        f.seek(0, os.SEEK_END)
                chunk = f.read(256 * 1024)
                if not chunk:
                    continue
                got = True
                text = partial[name] + chunk.decode("utf-8", "replace")
                *complete, partial[name] = text.split("\n")
                for line in complete:
                    yield name, line.rstrip("\r")
            first = False
            if not got:
                stop.wait(poll)
    finally:
        for f in handles.values():
            f.close()


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def missing_keys(config: Config) -> dict[str, list[str]]:
    """Model group -> environment variables it lacks (such models are left out of LiteLLM)."""
    out: dict[str, list[str]] = {}
    for model in config.models:
        if model.missing_env:
            names = out.setdefault(model.model_name, [])
            names.extend(n for n in model.missing_env if n not in names)
    return out


# --- process records ---------------------------------------------------------------------


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


# --- the supervisor ----------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    alive_url: str  # any HTTP answer means the process is alive
    ready_url: str  # 200 means it serves requests
    proc: subprocess.Popen | None = None
    create_time: float | None = None
    started_at: float = 0.0  # wall clock
    started_mono: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None  # monotonic
    last_answer: float = 0.0
    last_probe: float = 0.0
    awaiting_ready: bool = False


@dataclass
class Supervisor:
    """Runs the startup sequence, then watches both children until told to stop."""

    config_path: Path
    state: StateDir
    mode: str = "foreground"  # or "detached"
    litellm_url: str | None = None  # set: use that LiteLLM, start only the memory proxy
    startup_timeout: float = STARTUP_TIMEOUT
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    on_event: Callable[[str], None] | None = None
    on_phase: Callable[[str], None] | None = None
    python: str = field(default_factory=lambda: sys.executable)
    backend: str = "binary"  # binary | sdk | both (`up --mode`)
    sdk_port: int | None = None  # mode both: the SDK-backed proxy's port (default memory_proxy.port + 2)

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.children: dict[str, Child] = {}
        self.config: Config | None = None
        self.phase = "starting"
        self.record_state = "starting"
        self.error: dict | None = None
        self.started_at = time.time()
        self.events: list[str] = []
        self.master_key = ""  # LiteLLM's, for the warm-up requests

    # -- reporting --

    def event(self, message: str) -> None:
        """Something an operator should know: logged to supervisor.log (and shown in the foreground)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {message}"
        self.events = (self.events + [line])[-20:]
        path = self.state.log_file(LOG_NAMES[SUPERVISOR])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:
            pass
        if self.on_event:
            self.on_event(message)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.save_record()
        if self.on_phase:
            self.on_phase(phase)

    def save_record(self) -> None:
        config = self.config
        processes: dict[str, dict] = {
            SUPERVISOR: {"pid": os.getpid(), "create_time": _create_time(os.getpid()), "port": None,
                         "log": str(self.state.log_file(LOG_NAMES[SUPERVISOR]))},
        }
        for name, child in self.children.items():
            running = child.proc is not None and child.proc.poll() is None
            processes[name] = {
                "pid": child.proc.pid if running else None,
                "create_time": child.create_time if running else None,
                "port": child.port,
                "url": f"http://{url_host('127.0.0.1')}:{child.port}",
                "restarts": child.restarts,
                "started_at": child.started_at if running else None,
                "log": str(self.state.log_file(LOG_NAMES[name])),
                "restarting": child.restart_at is not None,
                "starting": running and child.awaiting_ready,
            }
        record = {
            "version": RECORD_VERSION,
            "state": self.record_state,
            "phase": self.phase,
            "error": self.error,
            "mode": self.mode,
            "backend": self.backend,
            "config": str(self.config_path),
            "state_dir": str(self.state.root),
            "started_at": self.started_at,
            "external_litellm": self.litellm_url,
            "litellm_url": self.litellm_url or (f"http://127.0.0.1:{config.proxy.litellm_port}" if config else None),
            "memory_proxy_url": (f"http://{url_host(config.proxy.host)}:{config.proxy.port}" if config else None),
            "models_missing_keys": missing_keys(config) if config else {},
            "events": self.events,
            "processes": processes,
        }
        write_record(self.state, record)

    # -- startup --

    def preflight(self) -> Config:
        """Config, ports and binary: everything that can be refused before anything starts."""
        from .config import ConfigError, load_config

        try:
            config = load_config(self.config_path, self.environ)
        except ConfigError as exc:
            raise LaunchError(exc.render(), exit_code=2) from None
        problems = []
        proxy = config.proxy
        problem = port_problem(proxy.port, proxy.host, "memory proxy, memory_proxy.port")
        if problem:
            problems.append(problem)
        if self.backend == "both":
            problem = port_problem(self.sdk_port_for(config), proxy.host, "SDK-backed memory proxy, --sdk-port")
            if problem:
                problems.append(problem)
        if self.backend == "sdk":
            pass  # LiteLLM runs inside the memory proxy: no binary, no LiteLLM port
        elif not self.litellm_url:
            problem = port_problem(proxy.litellm_port, "127.0.0.1", "LiteLLM, memory_proxy.litellm_port")
            if problem:
                problems.append(problem)
            if find_litellm() is None:
                problems.append(litellm_missing())
        elif not self.environ.get(MASTER_KEY_ENV):
            problems.append(f"--litellm-url needs {MASTER_KEY_ENV} set to your key for that LiteLLM server "
                            "(the memory proxy sends it in place of each client's key)")
        if problems:
            raise LaunchError("; ".join(problems) if len(problems) == 1 else
                              "\n".join(f"- {p}" for p in problems))
        return config

    def sdk_port_for(self, config: Config) -> int:
        return self.sdk_port or config.proxy.port + 2

    def _sdk_child(self, name: str, port: int, base_env: dict[str, str], master_key: str) -> Child:
        env = dict(base_env, LITELLM_LOCAL_MODEL_COST_MAP="True")
        env[MASTER_KEY_ENV] = master_key
        env[EGRESS_SECRET_ENV] = secrets.token_urlsafe(32)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base_env.get("PYTHONPATH")]))
        argv = [self.python, "-m", "memory_proxy.sdk_mode", "--config", str(self.config_path),
                "--state-dir", str(self.state.root), "--port", str(port)]
        base = f"http://{url_host(self.config.proxy.host)}:{port}"
        return Child(name, argv, env, ROOT, port, base + "/health", base + "/health")

    def _start_sdk(self, name: str, port: int, base_env: dict[str, str], master_key: str) -> None:
        child = self.children[name] = self._sdk_child(name, port, base_env, master_key)
        self.event(f"starting the SDK-backed memory proxy (LiteLLM's Router in-process) on "
                   f"{self.config.proxy.host}:{port}")
        self._spawn(child)
        self.set_phase(f"waiting for the SDK-backed memory proxy: GET {child.ready_url}")
        self._wait_until(child, child.ready_url, time.monotonic() + self.startup_timeout,
                         "the SDK-backed memory proxy")
        self.event(f"SDK-backed memory proxy is ready on {child.ready_url[:-len('/health')]} "
                   f"(pid {child.proc.pid}, {time.monotonic() - child.started_mono:.1f} s)")

    def start(self) -> None:
        """Bring both processes up and healthy, or raise LaunchError with nothing left running.

        LiteLLM and the memory proxy start at the same moment: the memory proxy needs nothing
        from LiteLLM to start (until LiteLLM is ready it holds requests for up to
        ``memory_proxy.startup_wait``, then answers 503 with ``Retry-After``, and its ``/health`` says
        ``degraded``), so ``up`` is done about when LiteLLM is ready instead
        of a memory-proxy start (1-2 s) later. While waiting for one, the other is watched
        too: whichever exits first is named, with the last lines of its own log."""
        self.state.ensure()
        self.set_phase("checking the config, ports and binary")
        self.config = config = self.preflight()
        proxy = config.proxy
        master_key = self.master_key = self.state.master_key(self.environ)
        egress_secret = secrets.token_urlsafe(32)
        base_env = dict(self.environ)
        no_proxy = ",".join(filter(None, [base_env.get("NO_PROXY") or base_env.get("no_proxy"),
                                          "127.0.0.1,localhost,::1"]))
        base_env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, PYTHONUNBUFFERED="1")

        if self.backend == "sdk":
            self._start_sdk(MEMORY, proxy.port, base_env, master_key)
            self.record_state = "running"
            self.set_phase("running")
            return
        litellm: Child | None = None
        if not self.litellm_url:
            from . import litellm_config  # yaml only; imported here to keep `status` lean

            from . import tracing

            generated = litellm_config.build_litellm_config(
                config, litellm_config.egress_base(proxy.port, connect_host(proxy.host)), self.environ)
            otel_env = tracing.litellm_setup(generated, config, self.environ)  # {} unless tracing is on
            atomic_write(self.state.litellm_config, litellm_config.render(generated), mode=0o600)
            binary = find_litellm()
            assert binary is not None  # preflight checked
            base = f"http://127.0.0.1:{proxy.litellm_port}"
            # LiteLLM answers every origin with "access-control-allow-origin: *" unless told
            # otherwise: only its own pages (its admin UI) may read its answers.
            env = dict(base_env, LITELLM_LOCAL_MODEL_COST_MAP="True",
                       LITELLM_CORS_ORIGINS=f"{base},http://localhost:{proxy.litellm_port}")
            env.update(otel_env)
            env[MASTER_KEY_ENV] = master_key
            env[EGRESS_SECRET_ENV] = egress_secret
            if proxy.usage.enabled:
                env.update(litellm_config.usage_callback_env(proxy.port, connect_host(proxy.host), egress_secret))
            # The generated config lives in the state dir: custom callbacks (``litellm_settings``
            # ``module.instance`` entries) are found beside the user's config, as SDK mode finds them.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(self.config_path).resolve().parent),
                                                              base_env.get("PYTHONPATH")]))
            litellm = self.children[LITELLM] = Child(
                LITELLM,
                [str(binary), "--config", str(self.state.litellm_config), "--host", "127.0.0.1",
                 "--port", str(proxy.litellm_port)],
                env, self.state.root, proxy.litellm_port, base + "/health/liveliness", base + "/health/readiness")
            self.event(f"starting LiteLLM ({binary}) on 127.0.0.1:{proxy.litellm_port}")
            self._spawn(litellm)
            litellm_url = base
        else:
            litellm_url = self.litellm_url.rstrip("/")
            status = http_status(litellm_url + "/health/readiness", timeout=5)
            if status != 200:
                self.event(f"warning: the LiteLLM at {litellm_url} is not ready (GET /health/readiness: "
                           f"{status or 'no answer'}); the memory proxy holds requests until it is "
                           "(memory_proxy.startup_wait), then answers 503")

        env = dict(base_env)
        env[MASTER_KEY_ENV] = master_key
        env[EGRESS_SECRET_ENV] = egress_secret
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), base_env.get("PYTHONPATH")]))
        argv = [self.python, "-m", "memory_proxy", "--config", str(self.config_path),
                "--state-dir", str(self.state.root), "--litellm-url", litellm_url]
        mp_base = f"http://{url_host(proxy.host)}:{proxy.port}"
        memory = self.children[MEMORY] = Child(MEMORY, argv, env, ROOT, proxy.port, mp_base + "/health",
                                               mp_base + "/health")
        self.event(f"starting the memory proxy on {proxy.host}:{proxy.port}")
        self._spawn(memory)
        if litellm is not None:
            deadline = litellm.started_mono + self.startup_timeout
            self.set_phase(f"waiting for LiteLLM: GET {litellm.alive_url}")
            self._wait_until(litellm, litellm.alive_url, deadline, "LiteLLM", watch=(memory,))
            self.set_phase(f"waiting for LiteLLM: GET {litellm.ready_url}")
            self._wait_until(litellm, litellm.ready_url, deadline, "LiteLLM", watch=(memory,))
            self.event(f"LiteLLM is ready (pid {litellm.proc.pid}, "
                       f"{time.monotonic() - litellm.started_mono:.1f} s)")
            self.set_phase("warming LiteLLM up (no provider is called)")
            self.warm_up(litellm)
        self.set_phase(f"waiting for the memory proxy: GET {mp_base}/health")
        accept = (200, 503) if self.litellm_url else (200,)
        watch = (litellm,) if litellm is not None else ()
        self._wait_until(memory, mp_base + "/health", time.monotonic() + MEMORY_STARTUP_TIMEOUT, "the memory proxy",
                         accept, watch=watch)
        self.event(f"memory proxy is ready on {mp_base} (pid {memory.proc.pid})")
        if self.backend == "both":
            self._start_sdk(SDK, self.sdk_port_for(config), base_env, master_key)
        self.record_state = "running"
        self.set_phase("running")

    def warm_up(self, litellm: Child) -> None:
        """One mock answer per API shape and provider family (``warmup.py``), logged; a failed
        warm-up is reported and costs only the first real request's speed."""
        from . import warmup

        started = time.monotonic()
        groups = [warmup.PREFIX + name for name in warmup.families(self.config)]
        outcomes = warmup.run(f"http://127.0.0.1:{litellm.port}", self.master_key, groups)
        self.event(warmup.summary(outcomes, time.monotonic() - started))

    def _spawn(self, child: Child) -> None:
        log_path = self.state.log_file(LOG_NAMES[child.name])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if log_path.stat().st_size > LOG_ROTATE_BYTES:
                os.replace(log_path, log_path.with_suffix(".log.1"))
        except FileNotFoundError:
            pass
        with open(log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start_proxies: starting {child.name}: "
                      f"{' '.join(child.argv)}\n".encode())
            log.flush()
            # Own session: a Ctrl+C in the terminal reaches the supervisor only, which stops the
            # children in order; and the whole group can be killed if a child forked helpers.
            child.proc = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=child.env, cwd=child.cwd,
                                          start_new_session=True, close_fds=True)
        child.create_time = _create_time(child.proc.pid)
        child.started_at = time.time()
        child.started_mono = child.last_answer = time.monotonic()
        child.restart_at = None
        self.save_record()

    def _wait_until(self, child: Child, url: str, deadline: float, what: str,
                    accept: tuple[int, ...] = (200,), watch: tuple[Child, ...] = ()) -> None:
        """Poll ``url`` until it answers one of ``accept``; LaunchError when ``child`` or one of
        ``watch`` (the other children starting meanwhile) exits, or at ``deadline``."""
        assert child.proc is not None
        path = urlsplit(url).path
        while True:
            if self.stop_event.is_set():
                raise Interrupted()
            self._raise_if_exited(child, what, path)
            for other in watch:
                self._raise_if_exited(other, LABELS[other.name], urlsplit(other.ready_url).path)
            if http_status(url, timeout=2.0) in accept:
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"{what} did not answer {path} with {accept[0]} in time; last lines of "
                                  f"{self.state.log_file(LOG_NAMES[child.name])}:",
                                  tail(self.state.log_file(LOG_NAMES[child.name]), 25))
            self.stop_event.wait(STARTUP_POLL)

    def _raise_if_exited(self, child: Child, what: str, path: str) -> None:
        code = child.proc.poll() if child.proc is not None else None
        if code is not None:
            log = self.state.log_file(LOG_NAMES[child.name])
            raise LaunchError(f"{what} exited during startup ({describe_exit(code)}) before answering "
                              f"{path}; last lines of {log}:", tail(log, 25))

    # -- watching --

    def monitor(self, tick: float = 0.5) -> None:
        """Until told to stop: restart a child that died (with back-off), kill one that hangs."""
        while not self.stop_event.wait(tick):
            for child in self.children.values():
                self._watch(child)

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        label = LABELS[child.name]
        if child.proc is not None:
            code = child.proc.poll()
            if code is None:
                if child.awaiting_ready and http_status(child.ready_url, timeout=1.0) == 200:
                    self.event(f"{label} is ready again (pid {child.proc.pid}, "
                               f"{now - child.started_mono:.1f} s after the restart)")
                    if child.name == LITELLM:
                        self.warm_up(child)  # before status says healthy again
                    child.awaiting_ready = False
                    child.last_answer = time.monotonic()
                    self.save_record()
                elif now - child.last_probe >= PROBE_EVERY:
                    child.last_probe = now
                    if http_status(child.alive_url, timeout=3.0) is not None:
                        child.last_answer = now
                    elif now - child.last_answer > (self.startup_timeout if child.awaiting_ready else HANG_LIMIT):
                        self.event(f"{label} (pid {child.proc.pid}) has not answered for "
                                   f"{now - child.last_answer:.0f} s; killing it so it is restarted")
                        self._stop([child], grace=5.0)
                return
            ran = time.time() - child.started_at
            if ran >= STABLE_AFTER:
                child.backoff = BACKOFF_FIRST
            delay = child.backoff
            child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            self.event(f"{label} (pid {child.proc.pid}) exited ({describe_exit(code)}) after {ran:.0f} s; "
                       f"restarting in {delay:g} s"
                       + ("; meanwhile the memory proxy holds new requests for it (memory_proxy.startup_wait)"
                          if child.name == LITELLM else ""))
            child.proc = None
            child.restart_at = now + delay
            self.save_record()
        elif child.restart_at is not None and now >= child.restart_at:
            child.restarts += 1
            child.awaiting_ready = True
            try:
                self._spawn(child)
            except OSError as exc:
                delay = child.backoff
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
                child.restart_at = now + delay
                self.event(f"could not restart {label}: {exc}; trying again in {delay:g} s")
                return
            self.event(f"{label} restarted (pid {child.proc.pid}, restart #{child.restarts})")

    # -- stopping --

    def _stop(self, children: list[Child], grace: float = STOP_GRACE) -> None:
        procs = [c.proc for c in children if c.proc is not None and c.proc.poll() is None]
        for proc in procs:
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        for proc in procs:  # helpers a child forked into its group
            _signal_group(proc.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        self.stop_event.set()
        live = [c for name in (MEMORY, SDK, LITELLM) if (c := self.children.get(name)) is not None
                and c.proc is not None and c.proc.poll() is None]
        if live:
            self.event("stopping: SIGTERM to " + ", ".join(f"{c.name} (pid {c.proc.pid})" for c in live))
        self.record_state = "stopping"
        try:
            self.save_record()
        except OSError:
            pass
        # The memory proxy first: it then refuses new requests while LiteLLM finishes its own.
        front = [self.children[n] for n in (MEMORY, SDK) if n in self.children]
        if front:
            self._stop(front)
        self._stop([c for n, c in self.children.items() if n not in (MEMORY, SDK)])
        for child in self.children.values():
            child.restart_at = None

    def fail(self, exc: LaunchError) -> None:
        self.record_state = "failed"
        self.error = {"message": exc.message, "log_tail": exc.log_tail}
        self.event(f"startup failed: {exc.message}")
        self.shutdown()
        self.record_state = "failed"
        self.save_record()

    def install_signal_handlers(self, *, hangup_stops: bool) -> None:
        def handler(signum, frame):  # noqa: ARG001
            self.stop_event.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, handler if hangup_stops else signal.SIG_IGN)


def _signal_group(pid: int, sig: int) -> None:
    """Signal a child's process group (each child leads its own session), else the child."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def run_detached(config_path: Path, state: StateDir, litellm_url: str | None,
                 startup_timeout: float, backend: str = "binary", sdk_port: int | None = None) -> int:
    """The body of the hidden ``_supervise`` command that ``up --detach`` starts in the background."""
    sup = Supervisor(config_path, state, mode="detached", litellm_url=litellm_url, startup_timeout=startup_timeout,
                     backend=backend, sdk_port=sdk_port)
    sup.install_signal_handlers(hangup_stops=False)
    try:
        sup.start()
    except LaunchError as exc:
        sup.fail(exc)
        return 1
    except Interrupted:
        sup.shutdown()
        remove_record(state)
        return 130
    except BaseException as exc:
        sup.fail(LaunchError(f"the supervisor crashed: {type(exc).__name__}: {exc}"))
        raise
    try:
        sup.monitor()
    finally:
        sup.shutdown()
        remove_record(state)
        sup.event("stopped")
    return 0


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
        if name in (MEMORY, SDK):
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
    record = read_record(state)
    result: dict[str, Any] = {"healthy": False, "state_dir": str(state.root), "config": str(config_path),
                              "running": False, "state": None, "processes": {}, "models_missing_keys": {},
                              "problems": []}
    if record and record.get("state") in ("running", "starting", "stopping") and live_process(
            record.get("processes", {}).get(SUPERVISOR)):
        result["running"] = True
        result["state"] = record.get("state")
        result["phase"] = record.get("phase")
        result["mode"] = record.get("mode")
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
            rows[LITELLM] = (None, external.rstrip("/") + "/health/readiness", None)
        else:
            entry = procs.get(LITELLM) or {}
            port = entry.get("port")
            rows[LITELLM] = (entry, f"http://127.0.0.1:{port}/health/readiness" if port else None, port)
        entry = procs.get(MEMORY) or {}
        port = entry.get("port")
        rows[MEMORY] = (entry, f"{record.get('memory_proxy_url')}/health" if port else None, port)
        if SDK in procs:
            entry = procs.get(SDK) or {}
            rows[SDK] = (entry, (entry.get("url") + "/health") if entry.get("url") else None, entry.get("port"))
        result["processes"] = _probe_all(rows)
        if external and LITELLM in result["processes"]:
            result["processes"][LITELLM]["external_url"] = external
        result["healthy"] = all(p["healthy"] for p in result["processes"].values())
        for name in (LITELLM, MEMORY, SDK):
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
        else:
            result["problems"].append("not running (start it with: python3 start_proxies.py up)")
        from .config import ConfigError, load_config

        config: Config | None = None
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            result["problems"].append(exc.render())
        if config is not None:
            result["models_missing_keys"] = missing_keys(config)
            for name, port, host in ((MEMORY, config.proxy.port, config.proxy.host),
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


def stop_recorded(state: StateDir, grace: float = 20.0) -> DownReport:
    """Stop what the record names: the supervisor first (it stops its children in order), then
    any recorded child still alive, by pid and group; SIGKILL after ``grace``; ports checked."""
    report = DownReport()
    record = read_record(state)
    if record is None:
        report.nothing = True
        return report
    entries = record.get("processes", {})
    procs: dict[str, psutil.Process] = {}
    for name in (SUPERVISOR, MEMORY, SDK, LITELLM):
        proc = live_process(entries.get(name))
        if proc is not None:
            procs[name] = proc
    descendants: list[psutil.Process] = []
    for proc in procs.values():
        try:
            descendants.extend(proc.children(recursive=True))
        except psutil.Error:
            pass
    if not procs:
        report.nothing = True

    def wait(targets: list[psutil.Process], seconds: float) -> list[psutil.Process]:
        _, alive = psutil.wait_procs(targets, timeout=seconds)
        return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    sup = procs.pop(SUPERVISOR, None)
    if sup is not None:
        try:
            sup.send_signal(signal.SIGTERM)
            report.stopped.append(f"supervisor (pid {sup.pid})")
        except psutil.Error:
            pass
        if wait([sup], grace):
            report.killed.append(f"supervisor (pid {sup.pid})")
            try:
                sup.kill()
            except psutil.Error:
                pass
    children = [p for p in procs.values() if p.is_running()]
    for name, proc in procs.items():
        if proc in children:
            _signal_group(proc.pid, signal.SIGTERM)
            report.stopped.append(f"{name} (pid {proc.pid})")
        else:
            report.stopped.append(f"{name} (pid {proc.pid}, stopped by the supervisor)")
    for proc in wait(children, STOP_GRACE):
        _signal_group(proc.pid, signal.SIGKILL)
        report.killed.append(f"pid {proc.pid}")
    for proc in descendants:
        try:
            if proc.is_running():
                proc.kill()
                report.killed.append(f"pid {proc.pid} (child of a recorded process)")
        except psutil.Error:
            pass
    ports = [(entries.get(n) or {}).get("port") for n in (MEMORY, SDK, LITELLM)]
    deadline = time.monotonic() + 5.0
    for port in filter(None, ports):
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if port_in_use(port):
            report.ports_busy.append(f"port {port} is still taken by {port_holder(port) or 'another process'}")
    remove_record(state)
    return report
