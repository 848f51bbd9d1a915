"""The config as the rest of the proxy uses it, and how it is loaded from ``config/config.yaml``.

``load_config`` / ``parse_config`` read the file (``yaml_lines.py``), check LiteLLM's sections
(``litellm_checks.py``) and ours against the field table (``fields.py``, ``checks.py``), and
return frozen dataclasses whose defaults are the table's. Every problem is reported as
``file:line: key.path: what is wrong`` and all problems are collected before raising, so a user
fixes a broken file in one pass. LiteLLM's sections are kept as written (with their
``os.environ/NAME`` references) for the generated LiteLLM config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_proxy.config.checks import Checker
from memory_proxy.config.env import ENV_PREFIX, env_reference, resolve_env
from memory_proxy.config.fields import CLIENT_ID_PATTERN, FIELDS, OUR_SECTIONS, SUPERMEMORY_KEY_REFERENCE, default, keys
from memory_proxy.config.hosts import is_loopback
from memory_proxy.config.litellm_checks import (
    ModelInfo,
    check_fallbacks,
    check_litellm_settings,
    check_models,
    supermemory_base,
    supermemory_key_missing,
)
from memory_proxy.config.problems import ConfigError, Problem
from memory_proxy.config.secrets import URL_PASSWORD_RE, literal_secrets
from memory_proxy.config.yaml_lines import read_yaml

__all__ = [  # what other packages import from here
    "CLIENT_ID_RE", "ENV_PREFIX", "Config", "ConfigError", "HeaderPattern", "ModelInfo", "OtelConfig", "Problem",
    "ProxySettings", "SupermemorySettings", "Timeouts", "UsageSettings", "UserIdMappings", "env_reference",
    "is_loopback", "load_config", "parse_config", "resolve_env",
]

CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)


@dataclass(frozen=True)
class HeaderPattern:
    """An entry of ``user_id_mappings.header_patterns``, its pattern compiled."""

    header: str
    pattern: str
    user_id: str
    regex: re.Pattern[str] = field(compare=False, repr=False)


@dataclass(frozen=True)
class UserIdMappings:
    """``user_id_mappings``: which memory a request gets (server/routing.py)."""

    custom_header: str = default("user_id_mappings.custom_header")
    header_patterns: tuple[HeaderPattern, ...] = ()
    default_user_id: str = default("user_id_mappings.default_user_id")


@dataclass(frozen=True)
class SupermemorySettings:
    """``memory_proxy.supermemory``: where Supermemory is, and its key."""

    base_url: str = default("memory_proxy.supermemory.base_url")
    api_key: str | None = None  # the key itself: read from the table's default reference unless written
    cloudflare_retry_delay: float = default("memory_proxy.supermemory.cloudflare_retry_delay")


@dataclass(frozen=True)
class Timeouts:
    """``memory_proxy.timeouts``, in seconds."""

    connect: float = default("memory_proxy.timeouts.connect")
    read: float = default("memory_proxy.timeouts.read")
    total: float = default("memory_proxy.timeouts.total")  # the longest one answer may take, streams included


@dataclass(frozen=True)
class UsageSettings:
    """The usage record (docs/usage.md): on by default, SQLite in the state folder."""

    enabled: bool = default("memory_proxy.usage.enabled")
    retention_days: int = default("memory_proxy.usage.retention_days")
    max_mb: int = default("memory_proxy.usage.max_mb")  # SQLite's file pruned, oldest first, past it (not PostgreSQL)
    queue_size: int = default("memory_proxy.usage.queue_size")  # more records waiting are dropped and counted
    database_url: str | None = default("memory_proxy.usage.database_url")  # postgresql://... instead of SQLite


@dataclass(frozen=True)
class OtelConfig:
    """``memory_proxy.otel``; the standard OTEL_* variables apply too (memory_proxy/server/tracing.py)."""

    enabled: bool = default("memory_proxy.otel.enabled")
    endpoint: str | None = default("memory_proxy.otel.endpoint")
    service_name: str | None = default("memory_proxy.otel.service_name")
    capture_message_content: bool = default("memory_proxy.otel.capture_message_content")


@dataclass(frozen=True)
class ProxySettings:
    """``memory_proxy``: ports, front door, limits and its sections."""

    host: str = default("memory_proxy.host")
    port: int = default("memory_proxy.port")
    litellm_port: int = default("memory_proxy.litellm_port")
    api_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback ones (DNS rebinding)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the proxy
    optional_routes: tuple[str, ...] = ()  # of fields.OPTIONAL_ROUTE_GROUPS
    max_body_bytes: int = default("memory_proxy.max_body_bytes")
    max_header_bytes: int = default("memory_proxy.max_header_bytes")
    requests_per_minute: int | None = default("memory_proxy.requests_per_minute")
    timeouts: Timeouts = Timeouts()
    supermemory: SupermemorySettings = SupermemorySettings()
    # While LiteLLM's port refuses connections (starting, restarting), a request waits up to
    # startup_wait seconds for it, at most startup_queue of them at once (0: answer 503 at once).
    startup_wait: float = default("memory_proxy.startup_wait")
    startup_queue: int = default("memory_proxy.startup_queue")
    usage: UsageSettings = UsageSettings()
    log_format: str = default("memory_proxy.log_format")  # the memory proxy's log lines (docs/observability.md)
    otel: OtelConfig = OtelConfig()


@dataclass(frozen=True)
class Config:
    """The whole config: LiteLLM's sections as written (``raw``), ours checked and typed."""

    path: Path
    raw: dict[str, Any]
    user_id_mappings: UserIdMappings
    proxy: ProxySettings
    models: tuple[ModelInfo, ...]
    warnings: tuple[str, ...] = ()

    @property
    def supermemory_groups(self) -> list[str]:
        """Model groups whose deployments all go through Supermemory."""
        return sorted({m.model_name for m in self.models if m.supermemory_backed})

    def missing_keys(self) -> dict[str, list[str]]:
        """Model group -> environment variables it lacks (such models are left out of LiteLLM)."""
        out: dict[str, list[str]] = {}
        for model in self.models:
            if model.missing_env:
                names = out.setdefault(model.model_name, [])
                names.extend(n for n in model.missing_env if n not in names)
        return out


# --- our sections -------------------------------------------------------------------------


def _values(c: Checker, section: dict, parent: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The checked values of ``names`` in a section, read in that order (problems come out so)."""
    return {name: c.read(section, FIELDS[f"{parent}.{name}"]) for name in names}


def _user_id_mappings(c: Checker, raw: Any) -> UserIdMappings:
    path = ("user_id_mappings",)
    section = c.section(raw, FIELDS["user_id_mappings"])
    values = _values(c, section, "user_id_mappings", ("custom_header", "default_user_id"))
    custom = values["custom_header"]
    patterns = _header_patterns(c, section.get("header_patterns"), path + ("header_patterns",))
    if custom in {p.header for p in patterns}:
        c.fail(path + ("custom_header",), f"{custom!r} is also used by a header pattern")
    return UserIdMappings(custom, tuple(patterns), values["default_user_id"])


def _header_patterns(c: Checker, raw: Any, path: tuple) -> list[HeaderPattern]:
    entry = "user_id_mappings.header_patterns[]"
    required = keys(entry)  # header, pattern, user_id
    patterns: list[HeaderPattern] = []
    seen: dict[tuple[str, str], int] = {}
    raw_patterns = raw or []
    if not isinstance(raw_patterns, list):
        c.fail(path, "must be a list of {header, pattern, user_id}")
        raw_patterns = []
    for i, item in enumerate(raw_patterns):
        ipath = path + (i,)
        if not isinstance(item, dict):
            c.fail(ipath, "must be a mapping with header, pattern and user_id")
            continue
        c.mapping(item, ipath, required)
        for key in required:
            if key not in item:
                c.fail(ipath + (key,), "is required")
        if any(key not in item for key in required):
            continue
        header = c.check(FIELDS[f"{entry}.header"], item["header"], ipath + ("header",))
        user_id = c.check(FIELDS[f"{entry}.user_id"], item["user_id"], ipath + ("user_id",))
        pattern = item["pattern"]
        if pattern is None or isinstance(pattern, (bool, dict, list)) or not str(pattern):
            c.fail(ipath + ("pattern",), "must be a regular expression (text)")
            continue
        try:
            regex = re.compile(str(pattern), re.IGNORECASE)
        except re.error as exc:
            c.fail(ipath + ("pattern",), f"invalid regular expression {pattern!r}: {exc}")
            continue
        if (header, str(pattern)) in seen:
            c.fail(ipath + ("pattern",), f"duplicate of header_patterns[{seen[(header, str(pattern))]}]")
            continue
        seen[(header, str(pattern))] = i
        patterns.append(HeaderPattern(header, str(pattern), user_id, regex))
    return patterns


def _front_door_keys(c: Checker, raw: Any, path: tuple) -> list[str]:
    shortest = FIELDS["memory_proxy.api_keys"].low
    found: list[str] = []
    raw_keys = raw or []
    if not isinstance(raw_keys, list):
        c.fail(path, "must be a list of keys (os.environ/NAME references recommended)")
        raw_keys = []
    for i, key in enumerate(raw_keys):
        value = c.resolved(key, path + (i,), required=True)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) < shortest:
            c.fail(path + (i,), f"must be a string of at least {shortest:g} characters")
            continue
        if env_reference(key) is None:
            c.warn_literal(path + (i,))
        found.append(value)
    return found


def _proxy_settings(c: Checker, raw: Any, needs_supermemory_key: bool) -> ProxySettings:
    path = ("memory_proxy",)
    section = c.section(raw, FIELDS["memory_proxy"])
    values = _values(c, section, "memory_proxy", ("host", "port", "litellm_port"))
    if values["port"] == values["litellm_port"]:
        c.fail(path + ("litellm_port",), f"must differ from memory_proxy.port ({values['port']})")
    values |= _values(c, section, "memory_proxy", ("max_body_bytes", "max_header_bytes", "startup_wait",
                                                   "startup_queue", "requests_per_minute"))
    front_door = _front_door_keys(c, section.get("api_keys"), path + ("api_keys",))
    if not is_loopback(values["host"]) and not front_door:
        c.fail(path + ("host",), f"binding to {values['host']} needs memory_proxy.api_keys (front-door keys); "
                                 "without them the proxy only listens on loopback")
    values |= _values(c, section, "memory_proxy", ("allowed_hosts", "cors_origins", "optional_routes"))
    timeouts = c.section(section.get("timeouts"), FIELDS["memory_proxy.timeouts"])
    values["timeouts"] = Timeouts(**_values(c, timeouts, "memory_proxy.timeouts", ("connect", "read", "total")))
    values["supermemory"] = _supermemory_settings(c, section.get("supermemory"), needs_supermemory_key)
    values |= _values(c, section, "memory_proxy", ("log_format",))
    values["usage"] = _usage_settings(c, section.get("usage"))
    values["otel"] = _otel_config(c, section.get("otel"))
    return ProxySettings(api_keys=tuple(front_door), **values)


def _supermemory_settings(c: Checker, raw: Any, needs_key: bool) -> SupermemorySettings:
    path = ("memory_proxy", "supermemory")
    section = c.section(raw, FIELDS["memory_proxy.supermemory"])
    base_url = c.read(section, FIELDS["memory_proxy.supermemory.base_url"])
    raw_key = section.get("api_key", SUPERMEMORY_KEY_REFERENCE)
    # Unset, it disables the Supermemory-backed models (litellm_checks.py) like any missing provider key.
    api_key = c.resolved(raw_key, path + ("api_key",), required=False)
    if api_key is not None and (not isinstance(api_key, str) or not api_key):
        got = "an empty one" if api_key == "" else type(api_key).__name__  # not its value: it may be the key
        c.fail(path + ("api_key",), f"must be a string, got {got} (prefer {SUPERMEMORY_KEY_REFERENCE})")
        api_key = None
    elif api_key is not None and env_reference(raw_key) is None:
        c.warn_literal(path + ("api_key",), prefer=SUPERMEMORY_KEY_REFERENCE)
    if needs_key and api_key is None and env_reference(raw_key) is None:
        c.fail(path + ("api_key",), "is required because a model is Supermemory-backed")
    retry = c.read(section, FIELDS["memory_proxy.supermemory.cloudflare_retry_delay"])
    return SupermemorySettings(base_url.rstrip("/"), api_key, retry)


def _usage_settings(c: Checker, raw: Any) -> UsageSettings:
    parent = "memory_proxy.usage"
    section = c.section(raw, FIELDS[parent])
    values = _values(c, section, parent, ("enabled", "retention_days", "max_mb", "queue_size", "database_url"))
    url = values["database_url"]
    if url is not None and env_reference(section.get("database_url")) is None and URL_PASSWORD_RE.search(url):
        c.warn_literal(("memory_proxy", "usage", "database_url"), what="password")
    return UsageSettings(**values)


def _otel_config(c: Checker, raw: Any) -> OtelConfig:
    parent = "memory_proxy.otel"
    section = c.section(raw, FIELDS[parent])
    return OtelConfig(**_values(c, section, parent, ("enabled", "capture_message_content", "endpoint", "service_name")))


# --- loading ----------------------------------------------------------------------------------


def _warn_literal_secrets(c: Checker, raw: dict) -> None:
    """Literal secrets in LiteLLM's sections (ours are warned about where they are read)."""
    for where in literal_secrets({k: v for k, v in raw.items() if k not in OUR_SECTIONS}):
        c.warn_literal(where)


def parse_config(text: str, path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Parse and validate config text; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    raw, lines, problems = read_yaml(text, path)
    if not isinstance(raw, dict):
        raise ConfigError(path, [Problem(1, "<top level>", "the config must be a mapping of sections")])
    c = Checker(lines, environ)
    c.problems.extend(problems)
    models = check_models(c, raw.get("model_list"), supermemory_base(raw, environ),
                          supermemory_key_missing(raw, environ))
    check_litellm_settings(c, raw, models)
    check_fallbacks(c, raw, models)
    mappings = _user_id_mappings(c, raw.get("user_id_mappings"))
    proxy = _proxy_settings(c, raw.get("memory_proxy"), any(m.supermemory_backed for m in models))
    _warn_literal_secrets(c, raw)
    if c.problems:
        raise ConfigError(path, c.problems)
    return Config(path, raw, mappings, proxy, tuple(models), tuple(c.warnings))


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, [Problem(None, "<file>", f"cannot read the config: {exc.strerror}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(path, [Problem(line, "<file>", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at "
                                                         f"offset {exc.start})")]) from None
    return parse_config(text, path, environ)
