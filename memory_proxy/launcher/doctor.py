"""``start_proxies.py doctor``: one run that checks the whole chain and says what to do.

Each finding is ok / warn / fail with the fix; exit 0 when nothing fails. It reads the same
state ``status`` reads (``supervisor.collect_status``), makes one cheap authenticated Memory
API call (no model call) and never prints a secret: keys are named by their variables only.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from memory_proxy.config.hosts import url_host
from memory_proxy.config.secrets import without_config_secrets
from memory_proxy.launcher.context import Context
from memory_proxy.launcher.litellm_binary import find_litellm, litellm_missing
from memory_proxy.launcher.status import collect_status
from memory_proxy.launcher.term import duration, out, print_json
from memory_proxy.names import LITELLM, MEMORY_PROXY, MEMORY_PROXY_SDK, SUPERVISOR
from memory_proxy.state import StateDir

if TYPE_CHECKING:
    from memory_proxy.config.model import Config

LEVELS = ("ok", "warn", "fail")
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}
CLOCK_WARN_S, CLOCK_FAIL_S = 60, 3600
JAR_OLD_S = 24 * 3600
LOG_SCAN_BYTES = 4 * 2**20  # the end of the memory proxy's log that is searched for refusals (fallback)
RECENT_S = 3600
WINDOW_DAYS = 7  # how far back the usage store is asked
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
CLOUDFLARE_LINE = "Cloudflare refusal (1200)"
MEMORY_ERROR_LINE = "Supermemory could not add memory"


@dataclass
class Finding:
    area: str
    level: str  # ok | warn | fail
    message: str
    fix: str | None = None


def run(ctx: Context, as_json: bool) -> int:
    findings = collect(ctx)
    failed = any(f.level == "fail" for f in findings)
    counts = {level: sum(f.level == level for f in findings) for level in LEVELS}
    if as_json:
        print_json({"ok": not failed, "counts": counts, "config": str(ctx.config), "state_dir": str(ctx.state.root),
                     "checks": [asdict(f) for f in findings]})
        return 1 if failed else 0
    out.line(("LiteLLM Memory Proxy doctor", "bold"), f"  (config {ctx.config}, state {ctx.state.root})")
    width = max(len(f.area) for f in findings) + 2
    for f in findings:
        out.line("  ", (f"{f.level:<5}", STYLE[f.level]), " ", f.area.ljust(width), f.message)
        if f.fix:
            out.line(" " * (10 + width), ("fix: " + f.fix, "dim"))
    out.line(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return 1 if failed else 0


def collect(ctx: Context) -> list[Finding]:
    from memory_proxy.config.model import ConfigError, load_config

    findings: list[Finding] = []
    config: Config | None = None
    try:
        config = load_config(ctx.config)
    except ConfigError as exc:
        findings.append(Finding("config", "fail", exc.render(), "fix each line named above, then run `check`"))
    if config is not None:
        findings.append(Finding("config", "ok", f"{ctx.config} is valid"))
        findings += config_findings(config)
    problem = ctx.state.problem()
    if problem:
        findings.append(Finding("state", "fail", problem, "point --state-dir (or MEMORY_PROXY_STATE_DIR) at a folder"))
    findings += process_findings(ctx)
    findings += cookie_jar_findings(ctx.state)  # as found, before doctor's own call may refresh it
    if config is not None:
        findings += supermemory_findings(config, ctx.state)
        findings += front_door_findings(config)
    findings += usage_log_findings(config, ctx.state)
    return findings


# --- config and keys ----------------------------------------------------------------------


def config_findings(config: Config) -> list[Finding]:
    findings = []
    for warning in config.warnings:
        if " is disabled: " not in warning:  # disabled models get their own lines below
            findings.append(Finding("config", "warn", warning, "use os.environ/NAME references for secrets"))
    missing = config.missing_keys()
    for model, names in missing.items():
        findings.append(Finding("models", "warn", f"model {model!r} is disabled: {', '.join(names)} not set "
                                                  "(left out of LiteLLM)",
                                f"export {names[0]}=… before `up`, or remove the model from model_list"))
    enabled = sorted({m.model_name for m in config.models} - set(missing))
    present = sorted(n for n in _key_variables(config) if os.environ.get(n))
    findings.append(Finding("keys", "ok" if enabled else "fail",
                            f"{len(enabled)} model group(s) enabled; keys present: {', '.join(present) or '(none)'}",
                            None if enabled else "set the provider keys the models name (see the lines above)"))
    if find_litellm() is None:
        findings.append(Finding("litellm", "fail", litellm_missing(), "python3 start_proxies.py check "
                                                                         "(reinstalls the venv's dependencies)"))
    return findings


def _key_variables(config: Config) -> set[str]:
    """Every environment variable the model list and the memory proxy read (names only)."""
    from memory_proxy.config.model import env_reference

    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif (name := env_reference(value)) is not None:
            names.add(name)
    walk(config.raw.get("model_list"))
    walk(((config.raw.get("memory_proxy") or {}).get("supermemory") or {}).get("api_key"))
    return names


# --- processes and ports ------------------------------------------------------------------


LABEL = {MEMORY_PROXY: "memory proxy", LITELLM: "LiteLLM", SUPERVISOR: "supervisor", MEMORY_PROXY_SDK: "SDK proxy"}


def process_findings(ctx: Context) -> list[Finding]:
    status = collect_status(ctx.state, ctx.config)
    command = ctx.command
    findings = []
    if not status["running"]:
        failed = status.get("state") == "failed"
        findings.append(Finding("processes", "fail" if failed else "warn",
                                "the last start failed" if failed else "not running",
                                f"{command} up --detach" + (f"; then {command} logs" if failed else "")))
        for name in (MEMORY_PROXY, LITELLM):
            info = status["processes"].get(name) or {}
            if info.get("port") is None:
                continue
            if info.get("port_held_by"):
                findings.append(Finding("ports", "fail", f"port {info['port']} ({LABEL[name]}) is held by "
                                                         f"{info['port_held_by']}",
                                        "stop that process, or pick another memory_proxy."
                                        + ("port" if name == MEMORY_PROXY else "litellm_port")))
            else:
                findings.append(Finding("ports", "ok", f"port {info['port']} ({LABEL[name]}) is free"))
        return findings
    litellm = status["processes"].get(LITELLM)
    litellm_down = litellm is not None and not litellm.get("healthy")
    for name in (SUPERVISOR, MEMORY_PROXY, MEMORY_PROXY_SDK, LITELLM):
        info = status["processes"].get(name)
        if info is None:
            continue
        where = (f"pid {info.get('pid')}" if info.get("pid") else info.get("external_url") or "no pid") + \
                (f", port {info['port']}" if info.get("port") else "")
        if not info.get("healthy"):
            if name in (MEMORY_PROXY, MEMORY_PROXY_SDK) and info.get("running") and litellm_down:
                # Its /health asks LiteLLM (2 s), so a LiteLLM that does not answer makes it slow too.
                findings.append(Finding(LABEL[name], "warn", f"running ({where}); its /health was slow because "
                                                             "it waits for LiteLLM, which is not answering",
                                        "see LiteLLM's line"))
                continue
            why = ("restarting" if info.get("restarting") else "starting" if info.get("starting") else
                   "not answering" if info.get("running") else "not running")
            findings.append(Finding(LABEL[name], "fail", f"{why} ({where})", f"{command} logs {name}"))
            continue
        restarts = info.get("restarts") or 0
        line = f"up {duration(info.get('uptime_s'))} ({where})"
        if restarts:
            findings.append(Finding(LABEL[name], "warn", f"{line}; restarted {restarts} time(s)",
                                    f"why it died: {command} logs supervisor"))
        else:
            findings.append(Finding(LABEL[name], "ok", line))
        # (a LiteLLM that is down has its own line)
        if name in (MEMORY_PROXY, MEMORY_PROXY_SDK) and info.get("litellm_ready") is False and not litellm_down:
            findings.append(Finding("LiteLLM", "fail", f"the {LABEL[name]} answers but LiteLLM is not ready "
                                                       "(/health/readiness)", f"{command} logs litellm"))
    return findings


# --- Supermemory and the clock ------------------------------------------------------------


def supermemory_findings(config: Config, state: StateDir) -> list[Finding]:
    from memory_proxy.config.secrets import mask_text
    from memory_proxy.supermemory.memory_api import MemoryApiError, key_variable, session

    base = mask_text(config.proxy.supermemory.base_url)  # as shown: a password in it is masked
    needed = bool(config.supermemory_groups)
    if not config.proxy.supermemory.api_key:
        return [Finding("supermemory", "fail" if needed else "warn",
                        f"no Supermemory key: {key_variable(config)} is not set"
                        + (" (the Supermemory-backed models are disabled)" if needed else ""),
                        f"export {key_variable(config)}=… (your key from Supermemory's console)")]
    try:
        with session(config, state, timeout=10) as api:
            api.call(api.client.namespaces.list, limit=1)  # cheap, authenticated, no model call
            findings = [Finding("supermemory", "ok", f"{base} reachable, key accepted "
                                                     f"({api.elapsed_ms:.0f} ms)")]
            findings.append(clock_finding(api.server_date))
            return findings
    except MemoryApiError as exc:
        fixes = {"unauthorised": f"check {key_variable(config)}: a valid key for this Supermemory account",
                 "rate_limited": "wait and run doctor again; fewer requests per minute",
                 "cloudflare": "wait a minute; keep the cookie jar (deleting it makes refusals likelier)"}
        level = "warn" if exc.kind in ("rate_limited", "cloudflare") else "fail"
        return [Finding("supermemory", level, exc.message, fixes.get(exc.kind, exc.fix)),
                clock_finding(None)]


def clock_finding(server_date: str | None, now: float | None = None) -> Finding:
    now = time.time() if now is None else now
    if dt.datetime.fromtimestamp(now, dt.UTC).year < 2024:
        return Finding("clock", "fail", f"the system clock says {time.ctime(now)}", "set the system clock (NTP)")
    try:
        server = email.utils.parsedate_to_datetime(server_date).timestamp() if server_date else None
    except (TypeError, ValueError):
        server = None
    if server is None:
        return Finding("clock", "ok", "no server time to compare with (the local clock looks plausible)")
    skew = now - server
    text = f"local clock {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} Supermemory's"
    if abs(skew) > CLOCK_FAIL_S:
        return Finding("clock", "fail", text, "set the system clock (NTP): TLS and Cloudflare's cookies depend on it")
    if abs(skew) > CLOCK_WARN_S:
        return Finding("clock", "warn", text, "set the system clock (NTP)")
    return Finding("clock", "ok", f"in step with Supermemory's (within {max(1, round(abs(skew)))} s)")


# --- the cookie jar -----------------------------------------------------------------------


def cookie_jar_findings(state: StateDir, now: float | None = None) -> list[Finding]:
    now = time.time() if now is None else now
    path = state.cookie_jar
    try:
        info = path.stat()
        raw = path.read_text()
    except FileNotFoundError:
        return [Finding("cookie jar", "ok", "none yet (written at Supermemory's first answer)")]
    except OSError as exc:
        return [Finding("cookie jar", "warn", f"{path} cannot be read: {exc.strerror}",
                        f"fix its owner and permissions (chmod 600 {path})")]
    findings = []
    try:
        cookies = json.loads(raw)["cookies"]
        if not isinstance(cookies, list) or not all(isinstance(c, dict) for c in cookies):
            raise TypeError("cookies is not a list of objects")
    except (ValueError, KeyError, TypeError):
        return [Finding("cookie jar", "warn", f"{path} is torn or not a cookie jar: the proxy ignores it and "
                                              "starts without Cloudflare's cookies",
                        f"rm {path} (the next Supermemory answer writes a new one)")]
    saved = now - info.st_mtime
    if info.st_mode & 0o077:
        findings.append(Finding("cookie jar", "warn", f"{path} is readable by others (mode "
                                                      f"{info.st_mode & 0o777:o})", f"chmod 600 {path}"))
    level = "warn" if saved > JAR_OLD_S else "ok"
    findings.append(Finding("cookie jar", level, f"{len(cookies)} cookie(s), saved {duration(saved)} ago",
                            "nothing to do if the proxy is idle; the next Supermemory answer refreshes it"
                            if level == "warn" else None))
    for name in ("cf_clearance", "__cf_bm"):
        found = [c for c in cookies if c.get("name") == name]
        if not found:
            findings.append(Finding("cookie jar", "ok", f"no {name} (Cloudflare has not set one)"))
            continue
        expires = max((c.get("expires") or 0) for c in found) or None
        if expires is None:
            findings.append(Finding("cookie jar", "ok", f"{name} present (session cookie), saved "
                                                        f"{duration(saved)} ago"))
        elif expires < now:
            findings.append(Finding("cookie jar", "warn", f"{name} expired {duration(now - expires)} ago",
                                    "nothing to do: the next request gets a fresh one (a first 1200 refusal may "
                                    "come with it, retried once)"))
        else:
            findings.append(Finding("cookie jar", "ok", f"{name} valid for {duration(expires - now)} more"))
    return findings


# --- what the memory proxy saw ------------------------------------------------------------

CLOUDFLARE = ("Cloudflare refusals (503, error code: 1200)",
              "Supermemory's edge is rate-limiting: fewer requests, keep the cookie jar, and check the clock")
MEMORY_ERRORS = ("answers with x-supermemory-error (memory not added)",
                 "check the key's plan and limits with Supermemory")
LOG_MEMORY_FIX = "see the memory proxy's log for Supermemory's message; check the key's plan and limits"


def usage_log_findings(config: Config | None, state: StateDir, now: float | None = None) -> list[Finding]:
    """Recent Cloudflare 1200 refusals and ``x-supermemory-error`` answers, with their counts,
    last time and clients, from the usage store (SQLite in the state folder or PostgreSQL).
    The memory proxy's log is read instead only when the usage record is off, or when the
    config does not load and there is no SQLite store to read."""
    from memory_proxy.usage.store import database_file

    now = time.time() if now is None else now
    settings = config.proxy.usage if config is not None else None
    path = database_file(state.root)
    if settings is not None and not settings.enabled:
        return [Finding("usage log", "ok", "usage recording is off (memory_proxy.usage.enabled: false): the "
                                           "counts come from the memory proxy's log")] + memory_log_findings(state, now)
    url = settings.database_url if settings is not None else None
    if url is None and not path.exists():
        if settings is None:
            return [Finding("usage log", "ok", "usage log not available (the config does not load): the counts "
                                               "come from the memory proxy's log")] + memory_log_findings(state, now)
        return [Finding("usage log", "ok", f"usage log not available (no usage store in {state.root} yet: "
                                           "nothing recorded)")]
    where = "PostgreSQL (memory_proxy.usage.database_url)" if url else str(path)
    try:
        incidents = _read_incidents(url, state, now)
    except Exception as exc:  # the store's own errors (sqlite3, psycopg): one line, never a traceback
        detail = without_config_secrets(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                        config)
        return [Finding("usage log", "warn", f"the usage store {where} cannot be read ({detail})",
                        "check memory_proxy.usage.database_url and that the server runs" if url else
                        f"check {path} (owner, permissions, disk)")]
    findings = [Finding("usage log", "ok", f"read {where} (the last {WINDOW_DAYS} days)")]
    for (what, fix), found in ((CLOUDFLARE, incidents["cloudflare"]), (MEMORY_ERRORS, incidents["memory_errors"])):
        if not found["count"]:
            findings.append(Finding("egress", "ok", f"no {what} in the last {WINDOW_DAYS} days"))
            continue
        last = found["last_ms"] / 1000 if found["last_ms"] is not None else None
        recent = last is not None and now - last < RECENT_S
        text = f"{found['count']} {what} in the last {WINDOW_DAYS} days"
        if found.get("twice"):
            text += f" ({found['twice']} of them refused twice: the egress answered 503)"
        if last is not None:
            text += f", last {duration(max(0.0, now - last))} ago"
        text += "; by client: " + ", ".join(f"{cid or '-'} {n}" for cid, n in list(found["clients"].items())[:5])
        if found.get("last_message"):
            text += f"; Supermemory said: {without_config_secrets(found['last_message'][:160], config)}"
        findings.append(Finding("egress", "warn" if recent else "ok", text, fix if recent else None))
    return findings


def _read_incidents(url: str | None, state: StateDir, now: float) -> dict[str, dict]:
    from memory_proxy.usage import report
    from memory_proxy.usage.record import CLOUDFLARE_REFUSED
    from memory_proxy.usage.store import open_store

    store = open_store(url, state.root, readonly=True)
    try:
        since_ms = int((now - WINDOW_DAYS * 86400) * 1000)
        return report.memory_incidents(store, since_ms, CLOUDFLARE_REFUSED)
    finally:
        store.close()


def memory_log_findings(state: StateDir, now: float | None = None) -> list[Finding]:
    """Cloudflare refusals and x-supermemory-error answers the egress logged: the memory
    proxy's log, for when there is no usage record to read (``usage_log_findings``)."""
    now = time.time() if now is None else now
    path = state.process_log(MEMORY_PROXY)
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_SCAN_BYTES))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [Finding("egress log", "warn", f"{path} cannot be read: {exc.strerror}")]
    findings = []
    for marker, (what, fix) in ((CLOUDFLARE_LINE, CLOUDFLARE), (MEMORY_ERROR_LINE, (MEMORY_ERRORS[0], LOG_MEMORY_FIX))):
        hits = [line for line in lines if marker in line]
        if not hits:
            findings.append(Finding("egress", "ok", f"no {what} in the memory proxy's log"))
            continue
        last = _log_time(hits[-1])
        recent = last is not None and now - last < RECENT_S
        when = f", last {duration(now - last)} ago" if last is not None else ""
        findings.append(Finding("egress", "warn" if recent else "ok", f"{len(hits)} {what}{when}",
                                fix if recent else None))
    return findings


def _log_time(line: str) -> float | None:
    match = LOG_TIME.match(line)
    if not match:
        return None
    return time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))  # the log's local time


# --- the front door -----------------------------------------------------------------------


def front_door_findings(config: Config) -> list[Finding]:
    from memory_proxy.config.model import is_loopback

    proxy = config.proxy
    where = f"{url_host(proxy.host)}:{proxy.port}"
    findings = []
    keys = len(proxy.api_keys)
    if is_loopback(proxy.host):
        findings.append(Finding("front door", "ok", f"bound to {where} (this machine only)"))
    else:
        findings.append(Finding("front door", "warn", f"bound to {where}: reachable from the network, "
                                                      f"{keys} front-door key(s) required",
                                "bind memory_proxy.host to 127.0.0.1 unless other machines must connect"))
    findings.append(Finding("front door", "ok", f"front-door keys: {keys} configured" if keys else
                            "front-door keys: none (any key is accepted; loopback only)"))
    origins = tuple(getattr(proxy, "cors_origins", ()) or ())
    hosts = tuple(getattr(proxy, "allowed_hosts", ()) or ())
    findings.append(Finding("front door", "ok", "allowed browser origins: "
                            + (", ".join(origins) if origins else "none (memory_proxy.cors_origins)")
                            + "; extra allowed hosts: " + (", ".join(hosts) if hosts else "none")))
    return findings
