"""The config as the rest of the proxy uses it, and how it is loaded from ``config/config.yaml``.

``load_config`` / ``parse_config`` read the file (``yaml_lines.py``), check LiteLLM's sections
(``litellm_checks.py``) and ours (``checks.py``), and return frozen dataclasses. Every problem is
reported as ``file:line: key.path: what is wrong`` and all problems are collected before raising,
so a user fixes a broken file in one pass. LiteLLM's sections are kept as written (with their
``os.environ/NAME`` references) for the generated LiteLLM config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory_proxy.config.checks import CLIENT_ID_RE, Checker
from memory_proxy.config.env import ENV_PREFIX, env_reference, resolve_env
from memory_proxy.config.hosts import is_loopback
from memory_proxy.config.litellm_checks import (
    DEFAULT_SUPERMEMORY_URL,
    SUPERMEMORY_KEY_REFERENCE,
    ModelInfo,
    check_litellm_settings,
    check_models,
    supermemory_base,
    supermemory_key_missing,
)
from memory_proxy.config.problems import ConfigError, Problem, dotted
from memory_proxy.config.secrets import URL_PASSWORD_RE, literal_secrets, literal_warning
from memory_proxy.config.yaml_lines import read_yaml

__all__ = [  # what other packages import from here
    "CLIENT_ID_RE", "DEFAULT_SUPERMEMORY_URL", "ENV_PREFIX", "Config", "ConfigError", "HeaderPattern", "ModelInfo",
    "OtelConfig", "Problem", "ProxySettings", "SupermemorySettings", "Timeouts", "UsageSettings", "UserIdMappings",
    "env_reference", "is_loopback", "load_config", "parse_config", "resolve_env",
]

OUR_SECTIONS = ("user_id_mappings", "memory_proxy")
MAPPING_KEYS = ("custom_header", "header_patterns", "default_user_id")
PROXY_KEYS = ("host", "port", "litellm_port", "api_keys", "allowed_hosts", "cors_origins", "optional_routes",
              "max_body_bytes", "max_header_bytes", "requests_per_minute", "timeouts", "supermemory",
              "startup_wait", "startup_queue", "usage", "log_format", "otel")
LOG_FORMATS = ("text", "json")
OTEL_KEYS = ("enabled", "endpoint", "service_name", "capture_message_content")
# Route groups an AI client may need beyond chat, completions, embeddings, models, messages and
# responses; off unless listed in memory_proxy.optional_routes (see front_door.py).
OPTIONAL_ROUTE_GROUPS = ("audio", "images", "moderations", "rerank")
HOST_NAME_RE = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
ORIGIN_RE = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$")
SUPERMEMORY_KEYS = ("base_url", "api_key", "cloudflare_retry_delay")
USAGE_KEYS = ("enabled", "retention_days", "max_mb", "queue_size", "database_url")


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

    custom_header: str = "x-memory-user-id"
    header_patterns: tuple[HeaderPattern, ...] = ()
    default_user_id: str = "default-dev"


@dataclass(frozen=True)
class SupermemorySettings:
    """``memory_proxy.supermemory``: where Supermemory is, and its key."""

    base_url: str = DEFAULT_SUPERMEMORY_URL
    api_key: str | None = None
    cloudflare_retry_delay: float = 0.5


@dataclass(frozen=True)
class Timeouts:
    """``memory_proxy.timeouts``, in seconds."""

    connect: float = 2.0
    read: float = 600.0
    total: float = 3600.0  # the longest one answer may take, streams included (a never-ending stream is cut)


@dataclass(frozen=True)
class UsageSettings:
    """The usage record (docs/usage.md): on by default, SQLite in the state folder."""

    enabled: bool = True
    retention_days: int = 90
    max_mb: int = 1024  # the SQLite file is pruned, oldest first, past this size
    queue_size: int = 10_000  # records waiting for the writer; more are dropped and counted
    database_url: str | None = None  # postgresql://... instead of SQLite


@dataclass(frozen=True)
class OtelConfig:
    """``memory_proxy.otel``; the standard OTEL_* variables apply too (memory_proxy/server/tracing.py)."""

    enabled: bool = True  # false: no traces even with OTEL_EXPORTER_OTLP_ENDPOINT set
    endpoint: str | None = None  # OTLP/HTTP collector (base URL or .../v1/traces)
    service_name: str | None = None
    capture_message_content: bool = False  # LiteLLM's spans: prompt and answer text


@dataclass(frozen=True)
class ProxySettings:
    """``memory_proxy``: ports, front door, limits and its sections."""

    host: str = "127.0.0.1"
    port: int = 8764
    litellm_port: int = 8765
    api_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # Host names served besides loopback ones (DNS rebinding)
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the proxy
    optional_routes: tuple[str, ...] = ()  # of OPTIONAL_ROUTE_GROUPS
    max_body_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    requests_per_minute: int | None = None
    timeouts: Timeouts = Timeouts()
    supermemory: SupermemorySettings = SupermemorySettings()
    # While LiteLLM's port refuses connections (starting, restarting), a request waits up to
    # startup_wait seconds for it, at most startup_queue of them at once (0: answer 503 at once).
    startup_wait: float = 30.0
    startup_queue: int = 256
    usage: UsageSettings = UsageSettings()
    log_format: str = "text"  # of LOG_FORMATS: the memory proxy's log lines (docs/observability.md)
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


# --- our sections -------------------------------------------------------------------------


def _user_id_mappings(c: Checker, raw: Any) -> UserIdMappings:
    path = ("user_id_mappings",)
    section = c.mapping(raw, path, MAPPING_KEYS)
    custom = c.header_name(section.get("custom_header", UserIdMappings.custom_header), path + ("custom_header",))
    default = c.client_id(section.get("default_user_id", UserIdMappings.default_user_id), path + ("default_user_id",))
    patterns: list[HeaderPattern] = []
    seen: dict[tuple[str, str], int] = {}
    raw_patterns = section.get("header_patterns") or []
    if not isinstance(raw_patterns, list):
        c.fail(path + ("header_patterns",), "must be a list of {header, pattern, user_id}")
        raw_patterns = []
    for i, item in enumerate(raw_patterns):
        ipath = path + ("header_patterns", i)
        if not isinstance(item, dict):
            c.fail(ipath, "must be a mapping with header, pattern and user_id")
            continue
        c.mapping(item, ipath, ("header", "pattern", "user_id"))
        for key in ("header", "pattern", "user_id"):
            if key not in item:
                c.fail(ipath + (key,), "is required")
        if any(key not in item for key in ("header", "pattern", "user_id")):
            continue
        header = c.header_name(item["header"], ipath + ("header",))
        user_id = c.client_id(item["user_id"], ipath + ("user_id",))
        pattern = item["pattern"]
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
    if custom in {p.header for p in patterns}:
        c.fail(path + ("custom_header",), f"{custom!r} is also used by a header pattern")
    return UserIdMappings(custom, tuple(patterns), default)


def _proxy_settings(c: Checker, raw: Any, needs_supermemory_key: bool) -> ProxySettings:
    path = ("memory_proxy",)
    section = c.mapping(raw, path, PROXY_KEYS)
    host = c.resolved(section.get("host", ProxySettings.host), path + ("host",), required=True)
    if not isinstance(host, str) or not host:
        c.fail(path + ("host",), f"must be a host name or address, got {host!r}")
        host = ProxySettings.host
    port = c.number(section, "port", path, ProxySettings.port, integer=True, low=1, high=65535)
    litellm_port = c.number(section, "litellm_port", path, ProxySettings.litellm_port, integer=True,
                            low=1, high=65535)
    if port == litellm_port:
        c.fail(path + ("litellm_port",), f"must differ from memory_proxy.port ({port})")
    max_body = c.number(section, "max_body_bytes", path, ProxySettings.max_body_bytes, integer=True,
                        low=1024, high=2**40)
    max_header = c.number(section, "max_header_bytes", path, ProxySettings.max_header_bytes, integer=True,
                          low=1024, high=2**24)
    startup_wait = c.number(section, "startup_wait", path, ProxySettings.startup_wait, integer=False,
                            low=0, high=3600)
    startup_queue = c.number(section, "startup_queue", path, ProxySettings.startup_queue, integer=True,
                             low=0, high=100_000)
    rpm = None
    if section.get("requests_per_minute") is not None:
        rpm = c.number(section, "requests_per_minute", path, 60, integer=True, low=1, high=10**7)

    keys: list[str] = []
    raw_keys = section.get("api_keys") or []
    if not isinstance(raw_keys, list):
        c.fail(path + ("api_keys",), "must be a list of keys (os.environ/NAME references recommended)")
        raw_keys = []
    for i, key in enumerate(raw_keys):
        value = c.resolved(key, path + ("api_keys", i), required=True)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) < 16:
            c.fail(path + ("api_keys", i), "must be a string of at least 16 characters")
            continue
        if env_reference(key) is None:
            c.warnings.append(literal_warning(dotted(path + ("api_keys", i))))
        keys.append(value)
    if not is_loopback(host) and not keys:
        c.fail(path + ("host",), f"binding to {host} needs memory_proxy.api_keys (front-door keys); "
                                 "without them the proxy only listens on loopback")

    allowed_hosts = tuple(c.names(section, "allowed_hosts", path, HOST_NAME_RE,
                                  "a host name such as devbox.lan or *.corp.example (no port, no scheme)"))
    cors_origins = tuple(c.names(section, "cors_origins", path, ORIGIN_RE,
                                 "an origin such as http://localhost:3000 (scheme, host, optional port; no path)"))
    optional_routes = tuple(c.names(section, "optional_routes", path, None,
                                    "one of " + ", ".join(OPTIONAL_ROUTE_GROUPS), allowed=OPTIONAL_ROUTE_GROUPS))

    tpath = path + ("timeouts",)
    tsection = c.mapping(section.get("timeouts"), tpath, ("connect", "read", "total"))
    timeouts = Timeouts(
        connect=c.number(tsection, "connect", tpath, Timeouts.connect, integer=False, low=0.01, high=600),
        read=c.number(tsection, "read", tpath, Timeouts.read, integer=False, low=0.01, high=86400),
        total=c.number(tsection, "total", tpath, Timeouts.total, integer=False, low=1, high=7 * 86400),
    )

    spath = path + ("supermemory",)
    ssection = c.mapping(section.get("supermemory"), spath, SUPERMEMORY_KEYS)
    base_url = c.resolved(ssection.get("base_url", DEFAULT_SUPERMEMORY_URL), spath + ("base_url",), required=True)
    if not isinstance(base_url, str) or not re.match(r"^https?://[^/\s]+", base_url or ""):
        c.fail(spath + ("base_url",), f"must be an http(s) URL, got {base_url!r}")
        base_url = DEFAULT_SUPERMEMORY_URL
    raw_key = ssection.get("api_key", SUPERMEMORY_KEY_REFERENCE)
    # Unset, it disables the Supermemory-backed models (litellm_checks.py) like any missing provider key.
    api_key = c.resolved(raw_key, spath + ("api_key",), required=False)
    if api_key is not None and env_reference(raw_key) is None:
        c.warnings.append(literal_warning(dotted(spath + ("api_key",)), prefer=SUPERMEMORY_KEY_REFERENCE))
    if needs_supermemory_key and api_key is None and env_reference(raw_key) is None:
        c.fail(spath + ("api_key",), "is required because a model is Supermemory-backed")
    retry = c.number(ssection, "cloudflare_retry_delay", spath, SupermemorySettings.cloudflare_retry_delay,
                     integer=False, low=0, high=60)
    supermemory = SupermemorySettings(base_url.rstrip("/"), api_key, retry)
    log_format = section.get("log_format", ProxySettings.log_format)
    if log_format not in LOG_FORMATS:
        c.fail(path + ("log_format",), f"must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
        log_format = ProxySettings.log_format
    return ProxySettings(host, port, litellm_port, tuple(keys), allowed_hosts, cors_origins, optional_routes,
                         max_body, max_header, rpm, timeouts, supermemory,
                         startup_wait=startup_wait, startup_queue=startup_queue,
                         usage=_usage_settings(c, section.get("usage"), path + ("usage",)), log_format=log_format,
                         otel=_otel_config(c, section.get("otel"), path + ("otel",)))


def _usage_settings(c: Checker, raw: Any, path: tuple) -> UsageSettings:
    section = c.mapping(raw, path, USAGE_KEYS)
    enabled = c.resolved(section.get("enabled", True), path + ("enabled",), required=True)
    if not isinstance(enabled, bool):
        c.fail(path + ("enabled",), f"must be true or false, got {enabled!r}")
        enabled = True
    retention = c.number(section, "retention_days", path, UsageSettings.retention_days, integer=True,
                         low=1, high=100 * 366)
    max_mb = c.number(section, "max_mb", path, UsageSettings.max_mb, integer=True, low=1, high=10**7)
    queue_size = c.number(section, "queue_size", path, UsageSettings.queue_size, integer=True, low=10, high=10**7)
    url = c.resolved(section.get("database_url"), path + ("database_url",), required=True)
    if url is not None and (not isinstance(url, str) or not re.match(r"^postgres(ql)?://", url)):
        c.fail(path + ("database_url",), "must be a postgresql://... URL (or leave it out for SQLite in the "
                                         "state folder)")
        url = None
    if url is not None and env_reference(section.get("database_url")) is None and URL_PASSWORD_RE.search(url):
        c.warnings.append(literal_warning(dotted(path + ("database_url",)), what="password"))
    return UsageSettings(enabled, retention, max_mb, queue_size, url)


def _otel_config(c: Checker, raw: Any, path: tuple) -> OtelConfig:
    section = c.mapping(raw, path, OTEL_KEYS)
    flags = {}
    for key in ("enabled", "capture_message_content"):
        value = section.get(key, getattr(OtelConfig, key))
        if not isinstance(value, bool):
            c.fail(path + (key,), f"must be true or false, got {value!r}")
            value = getattr(OtelConfig, key)
        flags[key] = value
    endpoint = c.resolved(section.get("endpoint"), path + ("endpoint",), required=False)
    if endpoint is not None and (not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint)):
        c.fail(path + ("endpoint",), f"must be an http(s) URL of an OTLP/HTTP collector, got {endpoint!r}")
        endpoint = None
    service = section.get("service_name")
    if service is not None and (not isinstance(service, str) or not service.strip()):
        c.fail(path + ("service_name",), f"must be a non-empty string, got {service!r}")
        service = None
    return OtelConfig(flags["enabled"], endpoint, service, flags["capture_message_content"])


# --- loading ----------------------------------------------------------------------------------


def _warn_literal_secrets(c: Checker, raw: dict, lines: dict[tuple, int]) -> None:
    """Literal secrets in LiteLLM's sections (ours are warned about where they are read)."""
    litellm_sections = {k: v for k, v in raw.items() if k not in OUR_SECTIONS}
    for where in literal_secrets(litellm_sections):
        line = next((lines[where[:cut]] for cut in range(len(where), 0, -1) if where[:cut] in lines), None)
        c.warnings.append(literal_warning(f"{dotted(where)}{f' (line {line})' if line else ''}"))


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
    mappings = _user_id_mappings(c, raw.get("user_id_mappings"))
    proxy = _proxy_settings(c, raw.get("memory_proxy"), any(m.supermemory_backed for m in models))
    _warn_literal_secrets(c, raw, lines)
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
