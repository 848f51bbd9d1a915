"""The supervisor loop: start the children, wait until they are ready, restart one that dies
(with back-off) or hangs, stop them all when told to.

One supervisor runs per state folder: the foreground ``up`` command itself, or a background
process started by ``up --detach`` (``detached.py``). It records every pid it owns in
``processes.json`` (``record.py``), with each process's creation time so a recycled pid is
never signalled. Standard library plus psutil only at import time (the launcher's rule)."""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from memory_proxy.config.hosts import url_host
from memory_proxy.launcher.litellm_binary import find_litellm, litellm_missing
from memory_proxy.launcher.logfiles import rotate, tail
from memory_proxy.launcher.ports import port_problem
from memory_proxy.launcher.probe import http_status
from memory_proxy.launcher.record import (
    RECORD_VERSION,
    STOP_GRACE,
    create_time,
    exited,
    signal_group,
    stop_groups,
    write_record,
)
from memory_proxy.names import (
    EGRESS_SECRET_ENV,
    LITELLM,
    LITELLM_ALIVE_PATH,
    LITELLM_READY_PATH,
    MASTER_KEY_ENV,
    MEMORY_PROXY,
    MEMORY_PROXY_SDK,
    SUPERVISOR,
)
from memory_proxy.state import StateDir, atomic_write

if TYPE_CHECKING:
    from memory_proxy.config.model import Config  # the config module (and yaml) only where a config is read



ROOT = Path(__file__).resolve().parents[2]
# First on the PYTHONPATH of the processes that run LiteLLM's code: its sitecustomize moves their
# garbage collection out of allocations on CPython 3.11, where one inside ContextVar.set() can crash.
CHILD_SITE = ROOT / "memory_proxy" / "child_site"

STARTUP_TIMEOUT = 180.0  # LiteLLM needs 8-13 s on an idle 2-core machine, far more under load
MEMORY_STARTUP_TIMEOUT = 60.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STABLE_AFTER = 60.0  # a child that ran this long before dying restarts with the first back-off again
HANG_LIMIT = 90.0  # a child answering nothing for this long is killed (and then restarted)
PROBE_EVERY = 5.0
STARTUP_POLL = 0.05  # between health probes while starting: `up` returns this soon after LiteLLM is ready
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


CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT})


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code)
        except ValueError:
            return f"signal {-code}"
        crashed = ", a crash: its log has the Python stack where it died" if name in CRASH_SIGNALS else ""
        return f"signal {name.name}{crashed}"
    return f"exit code {code}"


def _quiet_paths(environ: Mapping[str, str]) -> str:
    """LiteLLM's access log without the probes: the supervisor asks ``LITELLM_ALIVE_PATH``
    every few seconds and the memory proxy's ``/health`` (every ``status``, every scrape)
    ``LITELLM_READY_PATH``; their lines would bury the requests. Paths the user quiets stay."""
    theirs = environ.get("LITELLM_DISABLE_ACCESS_LOG_PATHS", "")
    paths = dict.fromkeys(p.strip() for p in theirs.split(",") if p.strip())
    return ",".join({**paths, LITELLM_ALIVE_PATH: None, LITELLM_READY_PATH: None})


def _python_path(environ: Mapping[str, str], *first: Path | str) -> str:
    """A child's ``PYTHONPATH``: ``first``, then the one the launcher was given."""
    return os.pathsep.join(filter(None, [*map(str, first), environ.get("PYTHONPATH")]))


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
    detached: bool = False  # True: the background process of `up --detach`; False: the foreground `up`
    litellm_url: str | None = None  # set: use that LiteLLM, start only the memory proxy
    startup_timeout: float = STARTUP_TIMEOUT
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    on_event: Callable[[str], None] | None = None
    on_phase: Callable[[str], None] | None = None
    python: str = field(default_factory=lambda: sys.executable)
    backend: str = "binary"  # binary | sdk | both (`up --backend`)
    sdk_port: int | None = None  # backend both: the SDK-backed proxy's port (default memory_proxy.port + 2)
    log_rotate_bytes: int = LOG_ROTATE_BYTES  # each log, checked every tick while the processes write it

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
        self.record_stale = False  # the last write of processes.json failed (disk full): retried every tick

    # -- reporting --

    def event(self, message: str) -> None:
        """Something an operator should know: logged to supervisor.log (and shown in the foreground)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {message}"
        self.events = (self.events + [line])[-20:]
        path = self.state.process_log(SUPERVISOR)
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
            SUPERVISOR: {"pid": os.getpid(), "create_time": create_time(os.getpid()), "port": None,
                         "log": str(self.state.process_log(SUPERVISOR))},
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
                "log": str(self.state.process_log(name)),
                "restarting": child.restart_at is not None,
                "starting": running and child.awaiting_ready,
            }
        record = {
            "version": RECORD_VERSION,
            "state": self.record_state,
            "phase": self.phase,
            "error": self.error,
            "detached": self.detached,
            "backend": self.backend,
            "config": str(self.config_path),
            "state_dir": str(self.state.root),
            "started_at": self.started_at,
            "external_litellm": self.litellm_url,
            "litellm_url": self.litellm_url or (f"http://127.0.0.1:{config.proxy.litellm_port}" if config else None),
            "memory_proxy_url": (f"http://{url_host(config.proxy.host)}:{config.proxy.port}" if config else None),
            "models_missing_keys": config.missing_keys() if config else {},
            "events": self.events,
            "processes": processes,
        }
        if self.record_state != "running":  # starting: `up` must hear of it; stopping and failing: said there
            write_record(self.state, record)
            return
        # Running: a record that cannot be written (disk full) must not stop the processes it
        # names; the monitor writes it again every tick until it can.
        try:
            write_record(self.state, record)
        except OSError as exc:
            if not self.record_stale:
                self.event(f"cannot write {self.state.processes} ({exc.strerror or exc}); the processes keep "
                           "running and it is written again as soon as it can be")
            self.record_stale = True
            return
        if self.record_stale:
            self.record_stale = False
            self.event(f"{self.state.processes} is written again")

    # -- startup --

    def preflight(self) -> Config:
        """Config, ports and binary: everything that can be refused before anything starts."""
        from memory_proxy.config.model import ConfigError, load_config

        try:
            config = load_config(self.config_path, self.environ)
        except ConfigError as exc:
            raise LaunchError(exc.render(), exit_code=2) from None
        problem = self.usage_problem(config)
        if problem:
            raise LaunchError(problem, exit_code=2)
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
        if problems:
            raise LaunchError("; ".join(problems) if len(problems) == 1 else
                              "\n".join(f"- {p}" for p in problems))
        return config

    def usage_problem(self, config: Config) -> str | None:
        """What is wrong with the options of this run (exit 2), before anything is bound or started."""
        if not (math.isfinite(self.startup_timeout) and self.startup_timeout > 0):
            return f"--timeout must be a positive number of seconds, not {self.startup_timeout:g}"
        if self.sdk_port is not None and not 1 <= self.sdk_port <= 65535:
            return f"--sdk-port {self.sdk_port} is not a port (1-65535)"
        if self.backend == "both":
            sdk_port = self.sdk_port_for(config)
            others = {config.proxy.port: "memory_proxy.port"}
            if not self.litellm_url:
                others[config.proxy.litellm_port] = "memory_proxy.litellm_port"
            what = "--sdk-port" if self.sdk_port is not None else "the SDK-backed proxy's port (memory_proxy.port + 2)"
            if sdk_port in others:
                return f"{what} {sdk_port} is {others[sdk_port]} too; choose another with --sdk-port"
            if sdk_port > 65535:
                return f"{what} {sdk_port} is not a port (1-65535); choose one with --sdk-port"
        if self.litellm_url and self.backend != "sdk" and not self.environ.get(MASTER_KEY_ENV):
            return (f"--litellm-url needs {MASTER_KEY_ENV} set to your key for that LiteLLM server "
                    "(the memory proxy sends it in place of each client's key)")
        return None

    def sdk_port_for(self, config: Config) -> int:
        return config.proxy.port + 2 if self.sdk_port is None else self.sdk_port

    def _sdk_child(self, name: str, port: int, base_env: dict[str, str], master_key: str) -> Child:
        env = dict(base_env, LITELLM_LOCAL_MODEL_COST_MAP="True")
        env[MASTER_KEY_ENV] = master_key
        env[EGRESS_SECRET_ENV] = secrets.token_urlsafe(32)
        env["PYTHONPATH"] = _python_path(base_env, CHILD_SITE, ROOT)
        argv = [self.python, "-m", "memory_proxy.sdk", "--config", str(self.config_path),
                "--state-dir", str(self.state.root), "--port", str(port)]
        base = f"http://{url_host(self.config.proxy.host)}:{port}"
        return Child(name, argv, env, ROOT, port, base + "/health", base + "/health")

    def _start_sdk(self, name: str, port: int, base_env: dict[str, str], master_key: str) -> None:
        child = self.children[name] = self._sdk_child(name, port, base_env, master_key)
        self.event(f"starting the SDK-backed memory proxy (LiteLLM's Router in-process) on "
                   f"{self.config.proxy.host}:{port}")
        self._spawn(child)
        self.set_phase(f"waiting for the SDK-backed memory proxy: GET {child.ready_url}")
        self._wait_until(child, child.ready_url, time.monotonic() + self.startup_timeout)
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
        # A crash in native code (LiteLLM's extensions, SQLite, uvloop) then leaves every thread's
        # Python stack in the child's log, where nothing would say where it died.
        base_env.setdefault("PYTHONFAULTHANDLER", "1")

        if self.backend == "sdk":
            self._start_sdk(MEMORY_PROXY, proxy.port, base_env, master_key)
            self.record_state = "running"
            self.set_phase("running")
            return
        litellm: Child | None = None
        if not self.litellm_url:
            from memory_proxy.config import litellm as litellm_config  # yaml only; imported here to keep `status` lean
            from memory_proxy.server import tracing

            generated = litellm_config.build_litellm_config(
                config, litellm_config.egress_base(proxy.port, url_host(proxy.host)), self.environ)
            otel_env = tracing.litellm_setup(generated, config, self.environ)  # {} unless tracing is on
            atomic_write(self.state.litellm_config, litellm_config.render(generated, config.path), mode=0o600)
            binary = find_litellm()
            assert binary is not None  # preflight checked
            base = f"http://127.0.0.1:{proxy.litellm_port}"
            # LiteLLM answers every origin with "access-control-allow-origin: *" unless told
            # otherwise: only its own pages (its admin UI) may read its answers.
            env = dict(base_env, LITELLM_LOCAL_MODEL_COST_MAP="True",
                       LITELLM_CORS_ORIGINS=f"{base},http://localhost:{proxy.litellm_port}",
                       LITELLM_DISABLE_ACCESS_LOG_PATHS=_quiet_paths(base_env))
            env.update(otel_env)
            env[MASTER_KEY_ENV] = master_key
            env[EGRESS_SECRET_ENV] = egress_secret
            if proxy.usage.enabled:
                env.update(litellm_config.usage_callback_env(proxy.port, url_host(proxy.host)))
            # The generated config lives in the state dir: custom callbacks (``litellm_settings``
            # ``module.instance`` entries) are found beside the user's config, as SDK mode finds them.
            env["PYTHONPATH"] = _python_path(base_env, CHILD_SITE, Path(self.config_path).resolve().parent)
            litellm = self.children[LITELLM] = Child(
                LITELLM,
                [str(binary), "--config", str(self.state.litellm_config), "--host", "127.0.0.1",
                 "--port", str(proxy.litellm_port)],
                env, self.state.root, proxy.litellm_port, base + LITELLM_ALIVE_PATH, base + LITELLM_READY_PATH)
            self.event(f"starting LiteLLM ({binary}) on 127.0.0.1:{proxy.litellm_port}")
            self._spawn(litellm)
            litellm_url = base
        else:
            litellm_url = self.litellm_url.rstrip("/")
            status = http_status(litellm_url + LITELLM_READY_PATH, timeout=5)
            if status != 200:
                self.event(f"warning: the LiteLLM at {litellm_url} is not ready (GET {LITELLM_READY_PATH}: "
                           f"{status or 'no answer'}); the memory proxy holds requests until it is "
                           "(memory_proxy.startup_wait), then answers 503")

        env = dict(base_env)
        env[MASTER_KEY_ENV] = master_key
        env[EGRESS_SECRET_ENV] = egress_secret
        env["PYTHONPATH"] = _python_path(base_env, ROOT)
        argv = [self.python, "-m", "memory_proxy", "--config", str(self.config_path),
                "--state-dir", str(self.state.root), "--litellm-url", litellm_url]
        mp_base = f"http://{url_host(proxy.host)}:{proxy.port}"
        memory = self.children[MEMORY_PROXY] = Child(MEMORY_PROXY, argv, env, ROOT, proxy.port, mp_base + "/health",
                                               mp_base + "/health")
        self.event(f"starting the memory proxy on {proxy.host}:{proxy.port}")
        self._spawn(memory)
        if litellm is not None:
            deadline = litellm.started_mono + self.startup_timeout
            self.set_phase(f"waiting for LiteLLM: GET {litellm.alive_url}")
            self._wait_until(litellm, litellm.alive_url, deadline, watch=(memory,))
            self.set_phase(f"waiting for LiteLLM: GET {litellm.ready_url}")
            self._wait_until(litellm, litellm.ready_url, deadline, watch=(memory,))
            self.event(f"LiteLLM is ready (pid {litellm.proc.pid}, "
                       f"{time.monotonic() - litellm.started_mono:.1f} s)")
        self.set_phase(f"waiting for the memory proxy: GET {mp_base}/health")
        accept = (200, 503) if self.litellm_url else (200,)
        watch = (litellm,) if litellm is not None else ()
        self._wait_until(memory, mp_base + "/health", time.monotonic() + MEMORY_STARTUP_TIMEOUT,
                         accept, watch=watch)
        if litellm is not None:  # after the memory proxy listens: it gives the canned provider answers
            self.set_phase("warming LiteLLM up (no provider is called)")
            self.warm_up(litellm)
        self.event(f"memory proxy is ready on {mp_base} (pid {memory.proc.pid})")
        if self.backend == "both":
            self._start_sdk(MEMORY_PROXY_SDK, self.sdk_port_for(config), base_env, master_key)
        self.record_state = "running"
        self.set_phase("running")

    def warm_up(self, litellm: Child) -> None:
        """One mock answer per API shape and provider family (``config/warmup.py``), logged; a
        failed warm-up is reported and costs only the first real request's speed."""
        from memory_proxy.config import warmup
        from memory_proxy.launcher.warmup import run

        started = time.monotonic()
        groups = [warmup.PREFIX + name for name in warmup.families(self.config)]
        outcomes = run(f"http://127.0.0.1:{litellm.port}", self.master_key, groups)
        self.event(warmup.summary(outcomes, time.monotonic() - started))

    def _spawn(self, child: Child) -> None:
        log_path = self.state.process_log(child.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        rotate(log_path, self.log_rotate_bytes)
        with open(log_path, "ab", buffering=0) as log:
            try:  # the start's mark; a full disk must not keep the process from starting
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start_proxies: starting {child.name}: "
                          f"{' '.join(child.argv)}\n".encode())
            except OSError:
                pass
            # Own session: a Ctrl+C in the terminal reaches the supervisor only, which stops the
            # children in order; and the whole group can be killed if a child forked helpers.
            child.proc = subprocess.Popen(child.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=child.env, cwd=child.cwd,
                                          start_new_session=True, close_fds=True)
        child.create_time = create_time(child.proc.pid)
        child.started_at = time.time()
        child.started_mono = child.last_answer = time.monotonic()
        child.restart_at = None
        self.save_record()

    def _wait_until(self, child: Child, url: str, deadline: float,
                    accept: tuple[int, ...] = (200,), watch: tuple[Child, ...] = ()) -> None:
        """Poll ``url`` until it answers one of ``accept``; LaunchError when ``child`` or one of
        ``watch`` (the other children starting meanwhile) exits, or at ``deadline``."""
        assert child.proc is not None
        path = urlsplit(url).path
        while True:
            if self.stop_event.is_set():
                raise Interrupted()
            self._raise_if_exited(child, path)
            for other in watch:
                self._raise_if_exited(other, urlsplit(other.ready_url).path)
            if http_status(url, timeout=2.0) in accept:
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"{child.name} did not answer {path} with {accept[0]} in time; last lines of "
                                  f"{self.state.process_log(child.name)}:",
                                  tail(self.state.process_log(child.name), 25))
            self.stop_event.wait(STARTUP_POLL)

    def _raise_if_exited(self, child: Child, path: str) -> None:
        code = child.proc.poll() if child.proc is not None else None
        if code is not None:
            log = self.state.process_log(child.name)
            raise LaunchError(f"{child.name} exited during startup ({describe_exit(code)}) before answering "
                              f"{path}; last lines of {log}:", tail(log, 25))

    # -- watching --

    def monitor(self, tick: float = 0.5) -> None:
        """Until told to stop: restart a child that died (with back-off), kill one that hangs."""
        while not self.stop_event.wait(tick):
            self.tick()

    def tick(self) -> None:
        """One round of the monitor: each child watched, a record that could not be written retried,
        the logs rotated."""
        for child in self.children.values():
            self._watch(child)
        if self.record_stale:
            self.save_record()
        for name in (SUPERVISOR, *self.children):  # a proxy left running for weeks writes a line per request
            rotate(self.state.process_log(name), self.log_rotate_bytes)

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        label = child.name
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
            ran = now - child.started_mono  # monotonic: a clock set back or forward changes nothing
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
        for proc in stop_groups(procs, exited, grace):
            proc.wait()
        for proc in procs:  # helpers a child forked into its group
            signal_group(proc.pid, signal.SIGKILL)

    def shutdown(self) -> None:
        self.stop_event.set()
        live = [c for name in (MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM) if (c := self.children.get(name)) is not None
                and c.proc is not None and c.proc.poll() is None]
        if live:
            self.event("stopping: SIGTERM to " + ", ".join(f"{c.name} (pid {c.proc.pid})" for c in live))
        self.record_state = "stopping"
        try:
            self.save_record()
        except OSError:
            pass
        # The memory proxy first: it then refuses new requests while LiteLLM finishes its own.
        front = [self.children[n] for n in (MEMORY_PROXY, MEMORY_PROXY_SDK) if n in self.children]
        if front:
            self._stop(front)
        self._stop([c for n, c in self.children.items() if n not in (MEMORY_PROXY, MEMORY_PROXY_SDK)])
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
        def handler(signum, frame):
            self.stop_event.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGHUP, handler if hangup_stops else signal.SIG_IGN)

