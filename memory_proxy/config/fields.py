"""The one table of our config keys: ``user_id_mappings`` and ``memory_proxy`` with its sections.

Each entry says a key's type, default, bounds or pattern, whether an ``os.environ/NAME`` reference
is read there, and what it does. Everything else is derived from it: the loader's checks
(``checks.py``, ``model.py``), the dataclass defaults (``model.py``), the JSON Schema
(``schema.py``) and the key tables of docs/configuration.md (``reference.py``). LiteLLM's own
sections are LiteLLM's and are not in it.

Standard library only, and cheap to import: the launcher's ``status`` reads the config.
"""

from __future__ import annotations

from typing import Any


class Type:
    """How the loader reads a value (checks.py); also the word the docs show."""

    INTEGER = "integer"
    SECONDS = "seconds"  # a number, integer or not
    BOOLEAN = "boolean"
    STRING = "string"  # non-empty; the pattern, if any, must match its start
    CHOICE = "choice"  # one of ``choices``
    HEADER = "HTTP header name"  # lower-cased
    CLIENT_ID = "client id"
    REGEX = "regular expression"
    NAMES = "list of names"  # each lower-cased, a trailing / dropped, matched by ``pattern`` or one of ``choices``
    LIST = "list"  # a list read by its own code in model.py (front-door keys, header patterns)
    SECTION = "mapping"  # the keys below it


class Env:
    """Whether an ``os.environ/NAME`` reference is read. NO: the text is the value (and usually wrong)."""

    NO = "no"
    REQUIRED = "required"  # read; unset is an error naming the variable
    OPTIONAL = "optional"  # read; unset is null


CLIENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HOST_NAME_PATTERN = r"^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
ORIGIN_PATTERN = r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$"
HTTP_URL_PATTERN = r"^https?://[^/\s]+"
LOG_FORMATS = ("text", "json")
# Route groups an AI client may need beyond chat, completions, embeddings, models, messages and
# responses; off unless listed in memory_proxy.optional_routes (see server/front_door.py).
OPTIONAL_ROUTE_GROUPS = ("audio", "images", "moderations", "rerank")
DEFAULT_SUPERMEMORY_URL = "https://api.supermemory.ai"
SUPERMEMORY_KEY_REFERENCE = "os.environ/SUPERMEMORY_API_KEY"


class Field:
    """One key of our sections (a plain class: a dataclass would cost the import a millisecond)."""

    __slots__ = ("allowed", "choices", "default", "default_note", "doc", "env", "expect", "high", "key", "low",
                 "message", "name", "null", "parent", "path", "pattern", "type")

    def __init__(self, key: str, type: str, default: Any = None, doc: str = "", *, low: float | None = None,
                 high: float | None = None, pattern: str | None = None, choices: tuple[str, ...] = (),
                 env: str = Env.NO, null: bool | None = None, expect: str = "", message: str = "", allowed: str = "",
                 default_note: str = "") -> None:
        self.key = key  # dotted: memory_proxy.timeouts.connect; an entry of a list: ...header_patterns[].header
        self.path = tuple(key.split("."))
        self.parent, _, self.name = key.rpartition(".")
        self.type = type
        self.default = default  # as if written in the file (a reference stays a reference)
        self.doc = doc  # one line: what it does (docs/configuration.md, the schema's description)
        self.low = low  # numbers: the bounds; a list of strings: the shortest string
        self.high = high
        self.pattern = pattern  # re.match; starts with ^ so a JSON Schema ``pattern`` means the same
        self.choices = choices
        self.env = env
        self.null = default is None if null is None else null  # null is accepted (a section, a list: empty)
        self.expect = expect  # what a good value is, as a problem says it: "must be <expect>, got ..."
        self.message = message  # the whole problem text, where the usual one does not fit
        self.allowed = allowed  # what the docs add to the bounds
        self.default_note = default_note  # what the docs add to the default

    def __repr__(self) -> str:
        return f"Field({self.key!r}, {self.type!r})"


TABLE: tuple[Field, ...] = (
    Field("user_id_mappings", Type.SECTION, doc="which memory a request gets"),
    Field("user_id_mappings.custom_header", Type.HEADER, "x-memory-user-id",
          "an explicit id from the client; always wins; an invalid id there is a 400",
          pattern=HEADER_NAME_PATTERN, expect="a valid HTTP header name",
          allowed="a header token, lower-cased; not a header a pattern uses"),
    Field("user_id_mappings.header_patterns", Type.LIST, (), "tried in order, first match wins",
          null=True, default_note="(the shipped config has six)",
          allowed="each entry needs all three keys; no two with the same header and pattern"),
    Field("user_id_mappings.header_patterns[].header", Type.HEADER, doc="the request header to look at",
          null=False, pattern=HEADER_NAME_PATTERN, expect="a valid HTTP header name",
          allowed="a header token, e.g. `user-agent`"),
    Field("user_id_mappings.header_patterns[].pattern", Type.REGEX, doc="what the header's value must contain",
          null=False, allowed="Python syntax, *searched* (not matched) case-insensitively; `^` anchors it"),
    Field("user_id_mappings.header_patterns[].user_id", Type.CLIENT_ID, doc="the memory id a match gets",
          null=False, pattern=CLIENT_ID_PATTERN,
          expect="a valid id (letters, digits and . _ : - only, 1-128 characters)",
          allowed="letters, digits and `. _ : -`, 1-128 characters"),
    Field("user_id_mappings.default_user_id", Type.CLIENT_ID, "default-dev", "when nothing else matched",
          pattern=CLIENT_ID_PATTERN, expect="a valid id (letters, digits and . _ : - only, 1-128 characters)",
          allowed="letters, digits and `. _ : -`, 1-128 characters"),

    Field("memory_proxy", Type.SECTION, doc="ports, front door, limits, Supermemory"),
    Field("memory_proxy.host", Type.STRING, "127.0.0.1", "where the memory proxy listens",
          env=Env.REQUIRED, expect="a host name or address", allowed="anything but loopback needs `api_keys`"),
    Field("memory_proxy.port", Type.INTEGER, 8764, "the only port a client sees", low=1, high=65535, env=Env.REQUIRED),
    Field("memory_proxy.litellm_port", Type.INTEGER, 8765, "LiteLLM's internal loopback port",
          low=1, high=65535, env=Env.REQUIRED, allowed="(not `port`)"),
    Field("memory_proxy.api_keys", Type.LIST, (),
          "front-door keys: when set, every path but `/health` needs `Authorization: Bearer <key>` or "
          "`x-api-key: <key>` (else 401)",
          low=16, env=Env.REQUIRED, null=True,
          allowed="`os.environ/NAME` recommended (a literal is warned about; an unset reference is an error)"),
    Field("memory_proxy.allowed_hosts", Type.NAMES, (),
          "`Host` names served besides loopback addresses, `localhost` and `*.localhost` ([security](security.md))",
          pattern=HOST_NAME_PATTERN, null=True,
          expect="a host name such as devbox.lan or *.corp.example (no port, no scheme)",
          allowed="`devbox.lan` or `*.corp.example`: no port, no scheme; lower-cased"),
    Field("memory_proxy.cors_origins", Type.NAMES, (),
          "browser origins allowed to call the proxy ([security](security.md))",
          pattern=ORIGIN_PATTERN, null=True,
          expect="an origin such as http://localhost:3000 (scheme, host, optional port; no path)",
          allowed="`scheme://host[:port]`, no path; `*` and `null` cannot be listed; lower-cased"),
    Field("memory_proxy.optional_routes", Type.NAMES, (),
          "route groups relayed besides the model routes ([security](security.md))",
          choices=OPTIONAL_ROUTE_GROUPS, null=True, expect="one of " + ", ".join(OPTIONAL_ROUTE_GROUPS)),
    Field("memory_proxy.max_body_bytes", Type.INTEGER, 32 * 1024 * 1024, "larger request bodies get 413",
          low=1024, high=2**40, env=Env.REQUIRED, default_note="(32 MiB)", allowed="(1 TiB)"),
    Field("memory_proxy.max_header_bytes", Type.INTEGER, 64 * 1024, "larger request heads get 431",
          low=1024, high=2**24, env=Env.REQUIRED, default_note="(64 KiB)", allowed="(16 MiB)"),
    Field("memory_proxy.requests_per_minute", Type.INTEGER, None,
          "a token bucket per client id; over it: 429 with `Retry-After`",
          low=1, high=10**7, env=Env.REQUIRED, default_note="(no limit)"),
    Field("memory_proxy.timeouts", Type.SECTION, doc="how long the memory proxy waits for LiteLLM"),
    Field("memory_proxy.timeouts.connect", Type.SECONDS, 2.0,
          "connecting to LiteLLM (and, from the egress, to Supermemory)", low=0.01, high=600, env=Env.REQUIRED),
    Field("memory_proxy.timeouts.read", Type.SECONDS, 600.0,
          "the gap allowed between two bytes of an answer; past it: 504 (an error event mid-stream)",
          low=0.01, high=86400, env=Env.REQUIRED),
    Field("memory_proxy.timeouts.total", Type.SECONDS, 3600.0,
          "the longest one answer may take, streams included: a never-ending stream is cut with an error event",
          low=1, high=7 * 86400, env=Env.REQUIRED, allowed="(7 days)"),
    Field("memory_proxy.supermemory", Type.SECTION, doc="where Supermemory is, and its key"),
    Field("memory_proxy.supermemory.base_url", Type.STRING, DEFAULT_SUPERMEMORY_URL,
          "a model whose `api_base` starts with `<base_url>/v3/` is *Supermemory-backed*",
          pattern=HTTP_URL_PATTERN, env=Env.REQUIRED, expect="an http(s) URL", allowed="a trailing `/` is dropped"),
    Field("memory_proxy.supermemory.api_key", Type.STRING, SUPERMEMORY_KEY_REFERENCE,
          "sent as `x-supermemory-api-key` by the egress; a reference to an unset variable disables exactly the "
          "Supermemory-backed models; `null` while a model is Supermemory-backed is an error",
          env=Env.OPTIONAL, null=True,
          allowed="a non-empty string; a reference recommended (a literal is warned about)"),
    Field("memory_proxy.supermemory.cloudflare_retry_delay", Type.SECONDS, 0.5,
          "the pause before the one retry of a Cloudflare refusal (`error code: 1200`)",
          low=0, high=60, env=Env.REQUIRED),
    Field("memory_proxy.startup_wait", Type.SECONDS, 30.0,
          "while LiteLLM's port refuses connections (starting, restarting), a request waits this long for it, "
          "then 503 with `Retry-After`; 0: 503 at once "
          "([operations](operations.md#holding-requests-while-litellm-starts-or-restarts))",
          low=0, high=3600, env=Env.REQUIRED),
    Field("memory_proxy.startup_queue", Type.INTEGER, 256,
          "at most this many requests wait for LiteLLM at once; more get 503 at once",
          low=0, high=100_000, env=Env.REQUIRED),
    Field("memory_proxy.usage", Type.SECTION, doc="the request log ([usage](usage.md))"),
    Field("memory_proxy.usage.enabled", Type.BOOLEAN, True,
          "`false`: no record, no LiteLLM callback, no dashboard figures",
          env=Env.REQUIRED),  # read, but the text of a variable is never a boolean: a reference is always refused
    Field("memory_proxy.usage.retention_days", Type.INTEGER, 90, "older records are pruned in the background",
          low=1, high=100 * 366, env=Env.REQUIRED),
    Field("memory_proxy.usage.max_mb", Type.INTEGER, 1024,
          "past this size the SQLite file's oldest records are pruned (not on PostgreSQL)",
          low=1, high=10**7, env=Env.REQUIRED),
    Field("memory_proxy.usage.queue_size", Type.INTEGER, 10_000,
          "parts of records waiting for the writer (two or three per request); more are dropped and counted "
          "(`status`, `/health`)",
          low=10, high=10**7, env=Env.REQUIRED),
    Field("memory_proxy.usage.database_url", Type.STRING, None,
          "a PostgreSQL store instead of SQLite ([usage](usage.md))",
          pattern=r"^postgres(ql)?://", env=Env.REQUIRED,
          message="must be a postgresql://... URL (or leave it out for SQLite in the state folder)",
          default_note="(SQLite in the state folder)",
          allowed="`postgresql://…` or `postgres://…`; `os.environ/NAME` recommended"),
    Field("memory_proxy.log_format", Type.CHOICE, "text",
          "the memory proxy's log lines: the text line, or one JSON object per line "
          "([observability](observability.md))", choices=LOG_FORMATS),
    Field("memory_proxy.otel", Type.SECTION,
          doc="OpenTelemetry traces; the standard `OTEL_*` variables apply too ([observability](observability.md))"),
    Field("memory_proxy.otel.enabled", Type.BOOLEAN, True,
          "`false`: no traces, even with `OTEL_EXPORTER_OTLP_ENDPOINT` set"),
    Field("memory_proxy.otel.endpoint", Type.STRING, None,
          "the OTLP/HTTP collector: base URL or `…/v1/traces`; set, tracing is on",
          pattern=HTTP_URL_PATTERN, env=Env.OPTIONAL, expect="an http(s) URL of an OTLP/HTTP collector",
          default_note="(the `OTEL_*` variables decide)"),
    Field("memory_proxy.otel.service_name", Type.STRING, None, "the proxy's service name in its spans",
          pattern=r"^\s*\S", expect="a non-empty string",
          default_note="(`OTEL_SERVICE_NAME`, else `litellm-memory-proxy`)"),
    Field("memory_proxy.otel.capture_message_content", Type.BOOLEAN, False,
          "prompt and answer text in LiteLLM's spans (the proxy's own never carry any)"),
)

FIELDS: dict[str, Field] = {f.key: f for f in TABLE}
OUR_SECTIONS = tuple(f.key for f in TABLE if not f.parent)


def children(parent: str) -> tuple[Field, ...]:
    """The entries directly under ``parent``, in the table's order."""
    return tuple(f for f in TABLE if f.parent == parent)


def keys(parent: str) -> tuple[str, ...]:
    """The key names a section accepts, in the table's order (a problem lists them so)."""
    return tuple(f.name for f in children(parent))


def default(key: str) -> Any:
    return FIELDS[key].default
