"""Load and validate ``config/config.yaml``: LiteLLM's own sections plus ours.

Every problem is reported as ``file:line: key.path: what is wrong`` and all problems are
collected before raising, so a user fixes a broken file in one pass. LiteLLM's sections
are kept as written (with their ``os.environ/NAME`` references) for the generated LiteLLM
config; our sections are validated strictly and resolved into frozen dataclasses.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memory_proxy.config.hosts import is_loopback

ENV_PREFIX = "os.environ/"
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
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
DEFAULT_SUPERMEMORY_URL = "https://api.supermemory.ai"


@dataclass(frozen=True)
class HeaderPattern:
    header: str
    pattern: str
    user_id: str
    regex: re.Pattern[str] = field(compare=False, repr=False)


@dataclass(frozen=True)
class UserIdMappings:
    custom_header: str = "x-memory-user-id"
    header_patterns: tuple[HeaderPattern, ...] = ()
    default_user_id: str = "default-dev"


@dataclass(frozen=True)
class SupermemorySettings:
    base_url: str = DEFAULT_SUPERMEMORY_URL
    api_key: str | None = None
    cloudflare_retry_delay: float = 0.5


@dataclass(frozen=True)
class Timeouts:
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
class ModelInfo:
    model_name: str
    supermemory_backed: bool
    missing_env: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
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


@dataclass(frozen=True)
class Problem:
    line: int | None
    key: str
    message: str


class ConfigError(Exception):
    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.path}: {len(self.problems)} problem(s) in the config:"]
        for p in self.problems:
            where = f"{self.path}:{p.line}" if p.line else str(self.path)
            lines.append(f"  {where}: {p.key}: {p.message}")
        return "\n".join(lines)


# --- YAML with line numbers ---------------------------------------------------------


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct(node: yaml.Node, path: tuple, lines: dict[tuple, int], problems: list[Problem],
               loader: yaml.SafeLoader) -> Any:
    """Build plain Python values from a composed YAML node, noting each key path's line."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        merged: list[tuple[dict, dict[tuple, int]]] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # ``<<: *anchor`` (or a list of them): keys written here win
                for source in (value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]):
                    source_lines: dict[tuple, int] = {}
                    value = _construct(source, path, source_lines, problems, loader)
                    if isinstance(value, dict):
                        merged.append((value, source_lines))
                    else:
                        problems.append(Problem(key_node.start_mark.line + 1, _dotted(path) + ".<<",
                                                "a merge key (<<) must name a mapping"))
                continue
            key = _construct(key_node, path + ("<key>",), {}, problems, loader)
            try:
                hash(key)
            except TypeError:
                problems.append(Problem(key_node.start_mark.line + 1, _dotted(path) or "<top level>",
                                        f"a key must be a plain value, not a {type(key).__name__}"))
                continue
            if key in result:
                problems.append(Problem(key_node.start_mark.line + 1, _dotted(path + (key,)), "duplicate key"))
            result[key] = _construct(value_node, path + (key,), lines, problems, loader)
        for value, source_lines in merged:
            for key, item in value.items():
                if key not in result:
                    result[key] = item
                    for where, line in source_lines.items():
                        if where[:len(path) + 1] == path + (key,):
                            lines.setdefault(where, line)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, path + (i,), lines, problems, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


# --- environment references -----------------------------------------------------------


def env_reference(value: Any) -> str | None:
    """The variable name of an ``os.environ/NAME`` value, else None."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX):]
    return None


def resolve_env(value: Any, environ: Mapping[str, str]) -> Any:
    """Resolve ``os.environ/NAME`` anywhere in a structure; unset names become None."""
    name = env_reference(value)
    if name is not None:
        return environ.get(name) or None
    if isinstance(value, dict):
        return {k: resolve_env(v, environ) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, environ) for v in value]
    return value


def _missing_env(value: Any, environ: Mapping[str, str]) -> list[str]:
    name = env_reference(value)
    if name is not None:
        return [] if environ.get(name) else [name]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _missing_env(v, environ)]
    if isinstance(value, list):
        return [n for v in value for n in _missing_env(v, environ)]
    return []


# --- validation -------------------------------------------------------------------------


class _Checker:
    """Collects problems with their line numbers while reading our sections."""

    def __init__(self, lines: dict[tuple, int], environ: Mapping[str, str]) -> None:
        self.lines = lines
        self.environ = environ
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def fail(self, path: tuple, message: str) -> None:
        line = None
        for cut in range(len(path), -1, -1):
            line = self.lines.get(path[:cut])
            if line:
                break
        self.problems.append(Problem(line, _dotted(path), message))

    def mapping(self, value: Any, path: tuple, allowed: tuple[str, ...]) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(path + (key,), f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def resolved(self, value: Any, path: tuple, *, required: bool) -> Any:
        name = env_reference(value)
        if name is None:
            return value
        if self.environ.get(name):
            return self.environ[name]
        if required:
            self.fail(path, f"environment variable {name} is not set")
        return None

    def number(self, section: dict, key: str, path: tuple, default: float, *, integer: bool,
               low: float, high: float) -> Any:
        value = self.resolved(section.get(key, default), path + (key,), required=True)
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                pass
        ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok_type or not (low <= value <= high):
            kind = "an integer" if integer else "a number"
            self.fail(path + (key,), f"must be {kind} between {low:g} and {high:g}, got {value!r}")
            return default
        return value

    def names(self, section: dict, key: str, path: tuple, pattern: re.Pattern[str] | None, what: str, *,
              allowed: tuple[str, ...] = ()) -> list[str]:
        """A list of plain names (host names, origins, route groups), lower-cased."""
        raw = section.get(key) or []
        if not isinstance(raw, list):
            self.fail(path + (key,), f"must be a list, each {what}")
            return []
        found: list[str] = []
        for i, item in enumerate(raw):
            value = item.lower().rstrip("/") if isinstance(item, str) else item
            ok = isinstance(value, str) and (pattern.match(value) if pattern else value in allowed)
            if not ok:
                self.fail(path + (key, i), f"{item!r} is not {what}")
            elif value not in found:
                found.append(value)
        return found

    def client_id(self, value: Any, path: tuple) -> str:
        if not isinstance(value, str) or not CLIENT_ID_RE.match(value):
            self.fail(path, f"{value!r} is not a valid id (letters, digits and . _ : - only, 1-128 characters)")
            return "invalid"
        return value

    def header_name(self, value: Any, path: tuple) -> str:
        if not isinstance(value, str) or not HEADER_NAME_RE.match(value):
            self.fail(path, f"{value!r} is not a valid HTTP header name")
            return "invalid"
        return value.lower()


def _user_id_mappings(c: _Checker, raw: Any) -> UserIdMappings:
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


def _proxy_settings(c: _Checker, raw: Any, needs_supermemory_key: bool) -> ProxySettings:
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
            c.warnings.append(f"{_dotted(path + ('api_keys', i))}: literal secret in the config; "
                              "prefer an os.environ/NAME reference")
        keys.append(value)
    if not is_loopback(host) and not keys:
        c.fail(path + ("host",), f"binding to {host} needs memory_proxy.api_keys (front-door keys); "
                                 "without them the proxy only listens on loopback")

    allowed_hosts = tuple(c.names(section, "allowed_hosts", path, HOST_NAME_RE,
                                  "a host name such as devbox.lan or *.corp.example (no port, no scheme)"))
    cors_origins = tuple(c.names(section, "cors_origins", path, ORIGIN_RE,
                                 "an origin such as http://localhost:3000 (scheme, host, optional port; no path)"))
    optional_routes = tuple(c.names(section, "optional_routes", path, None, "one of " + ", ".join(OPTIONAL_ROUTE_GROUPS),
                                    allowed=OPTIONAL_ROUTE_GROUPS))

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
    raw_key = ssection.get("api_key", ENV_PREFIX + "SUPERMEMORY_API_KEY")
    # Unset, it disables the Supermemory-backed models (see _models) like any missing provider key.
    api_key = c.resolved(raw_key, spath + ("api_key",), required=False)
    if api_key is not None and env_reference(raw_key) is None:
        c.warnings.append(f"{_dotted(spath + ('api_key',))}: literal secret in the config; "
                          "prefer os.environ/SUPERMEMORY_API_KEY")
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


def _usage_settings(c: _Checker, raw: Any, path: tuple) -> UsageSettings:
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
        c.warnings.append(f"{_dotted(path + ('database_url',))}: literal password in the config; "
                          "prefer an os.environ/NAME reference")
    return UsageSettings(enabled, retention, max_mb, queue_size, url)


def _otel_config(c: _Checker, raw: Any, path: tuple) -> OtelConfig:
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


def _supermemory_section(raw: dict) -> dict:
    section = raw.get("memory_proxy") if isinstance(raw.get("memory_proxy"), dict) else {}
    return section.get("supermemory") if isinstance(section.get("supermemory"), dict) else {}


def _supermemory_base(raw: dict, environ: Mapping[str, str]) -> str:
    value = resolve_env(_supermemory_section(raw).get("base_url", DEFAULT_SUPERMEMORY_URL), environ)
    return str(value or DEFAULT_SUPERMEMORY_URL).rstrip("/")


def _supermemory_key_missing(raw: dict, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The variable named by supermemory.api_key when it is unset (it then disables the backed models)."""
    name = env_reference(_supermemory_section(raw).get("api_key", ENV_PREFIX + "SUPERMEMORY_API_KEY"))
    return (name,) if name and not environ.get(name) else ()


def is_supermemory_backed(api_base: Any, supermemory_base: str) -> bool:
    """Only the router's form, ``<base_url>/v3/<provider URL>``, is Supermemory's: an ordinary
    model that merely lives under the same host and path must never get the memory headers."""
    return isinstance(api_base, str) and api_base.startswith(supermemory_base + "/v3/")


def _models(c: _Checker, raw: Any, supermemory_base: str, supermemory_missing: tuple[str, ...]) -> list[ModelInfo]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        c.fail(("model_list",), "must be a list of models")
        return []
    models: list[ModelInfo] = []
    for i, item in enumerate(raw):
        path = ("model_list", i)
        if not isinstance(item, dict) or not isinstance(item.get("litellm_params"), dict):
            c.fail(path, "must be a mapping with model_name and litellm_params")
            continue
        name = item.get("model_name")
        if not isinstance(name, str) or not name:
            c.fail(path + ("model_name",), "is required")
            continue
        params = item["litellm_params"]
        if not params.get("model"):
            c.fail(path + ("litellm_params", "model"), "is required")
        api_base = resolve_env(params.get("api_base"), c.environ)
        backed = is_supermemory_backed(api_base, supermemory_base)
        missing = tuple(_missing_env({k: v for k, v in params.items() if k != "api_base"}, c.environ))
        if env_reference(params.get("api_base")) and api_base is None:
            missing += (env_reference(params["api_base"]),)
        if backed:
            missing += supermemory_missing
        models.append(ModelInfo(name, backed, missing))
    kinds: dict[str, set[bool]] = {}
    for m in models:
        kinds.setdefault(m.model_name, set()).add(m.supermemory_backed)
    for name, seen in kinds.items():
        if len(seen) > 1:
            index = next(i for i, item in enumerate(raw) if isinstance(item, dict) and item.get("model_name") == name)
            c.fail(("model_list", index, "model_name"),
                   f"model group {name!r} mixes Supermemory-backed and ordinary deployments; memory headers "
                   "are forwarded per group, so give them different model_name values")
    for m in models:
        if m.missing_env:
            c.warnings.append(f"model {m.model_name!r} is disabled: environment variable(s) "
                              f"{', '.join(m.missing_env)} not set")
    return models


def _litellm_sections(c: _Checker, raw: dict, models: list[ModelInfo]) -> None:
    general = raw.get("general_settings")
    if general is not None and not isinstance(general, dict):
        c.fail(("general_settings",), "must be a mapping")
        return
    general = general or {}
    if general.get("forward_client_headers_to_llm_api"):
        c.fail(("general_settings", "forward_client_headers_to_llm_api"),
               "would forward the memory headers to every model; the memory proxy turns forwarding on for "
               "the Supermemory-backed model groups itself (remove this key)")
    if "master_key" in general:
        c.warnings.append("general_settings.master_key is ignored: the LiteLLM master key comes from "
                          "LITELLM_MASTER_KEY or is generated once into the state folder")
    litellm_settings = raw.get("litellm_settings")
    if litellm_settings is not None and not isinstance(litellm_settings, dict):
        c.fail(("litellm_settings",), "must be a mapping")
        return
    group_settings = (litellm_settings or {}).get("model_group_settings") or {}
    listed = group_settings.get("forward_client_headers_to_llm_api") if isinstance(group_settings, dict) else None
    backed = {m.model_name for m in models if m.supermemory_backed}
    for i, group in enumerate(listed or []):
        if group not in backed:
            c.fail(("litellm_settings", "model_group_settings", "forward_client_headers_to_llm_api", i),
                   f"{group!r} is not Supermemory-backed: forwarding client headers to it would hand it the "
                   "memory headers (the memory proxy lists the Supermemory-backed groups itself)")


def _depth_ok(node: yaml.Node, limit: int = 100) -> None:
    """Raise RecursionError for a document nested deeper than any config needs (the
    reader below recurses once per level)."""
    stack = [(node, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise RecursionError
        if isinstance(item, yaml.MappingNode):
            stack.extend((n, depth + 1) for pair in item.value for n in pair)
        elif isinstance(item, yaml.SequenceNode):
            stack.extend((n, depth + 1) for n in item.value)


SECRET_WORDS = frozenset({"key", "apikey", "secret", "token", "password", "passwd", "credential", "credentials",
                          "authorization", "cookie"})
URL_PASSWORD_RE = re.compile(r"://[^/@\s:]*:([^/@\s]+)@")


def is_secret_name(name: Any) -> bool:
    """``api_key``, ``aws_secret_access_key``, ``vertex_credentials``, ``Authorization``, ...
    (a word of the name, so ``max_tokens`` is not one)."""
    return any(word in SECRET_WORDS for word in re.split(r"[^a-z0-9]+", str(name).lower()))


def literal_secrets(value: Any, path: tuple = ()) -> list[tuple]:
    """Key paths whose value is a secret written into the config instead of an
    ``os.environ/NAME`` reference: a string under a secret-sounding name, or a URL with a password."""
    found: list[tuple] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = path + (key,)
        if isinstance(item, str):
            if item and env_reference(item) is None and (
                    (not isinstance(key, int) and is_secret_name(key)) or URL_PASSWORD_RE.search(item)):
                found.append(here)
        elif isinstance(item, list) and not isinstance(key, int) and is_secret_name(key):
            found.extend(here + (i,) for i, v in enumerate(item)
                         if isinstance(v, str) and v and env_reference(v) is None)
        else:
            found.extend(literal_secrets(item, here))
    return found


def parse_config(text: str, path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Parse and validate config text; raise ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    lines: dict[tuple, int] = {}
    problems: list[Problem] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _depth_ok(node)
    except RecursionError:
        raise ConfigError(path, [Problem(None, "<yaml>", "nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise ConfigError(path, [Problem(line, "<yaml>", f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    try:
        raw = _construct(node, (), lines, problems, yaml.SafeLoader("")) if node is not None else {}
    except yaml.YAMLError as exc:  # e.g. a tag the safe loader cannot build
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(path, [Problem(mark.line + 1 if mark else None, "<yaml>",
                                         f"not valid here: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(raw, dict):
        raise ConfigError(path, [Problem(1, "<top level>", "the config must be a mapping of sections")])
    c = _Checker(lines, environ)
    c.problems.extend(problems)
    sm_base = _supermemory_base(raw, environ)
    models = _models(c, raw.get("model_list"), sm_base, _supermemory_key_missing(raw, environ))
    _litellm_sections(c, raw, models)
    mappings = _user_id_mappings(c, raw.get("user_id_mappings"))
    proxy = _proxy_settings(c, raw.get("memory_proxy"), any(m.supermemory_backed for m in models))
    litellm_sections = {k: v for k, v in raw.items() if k not in OUR_SECTIONS}
    for where in literal_secrets(litellm_sections):  # ours are warned about where they are read
        line = next((lines[where[:cut]] for cut in range(len(where), 0, -1) if where[:cut] in lines), None)
        c.warnings.append(f"{_dotted(where)}{f' (line {line})' if line else ''}: literal secret in the config; "
                          "prefer an os.environ/NAME reference")
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
