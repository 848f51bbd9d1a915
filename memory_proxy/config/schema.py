"""A JSON Schema of the whole config file, for editors (``start_proxies.py schema``).

Our sections are described exactly; LiteLLM's sections only loosely (LiteLLM owns them).
Keep it in step with the checks in ``config.py``; a test compares the two.
"""

from __future__ import annotations

from memory_proxy.config.fields import (
    DEFAULT_SUPERMEMORY_URL,
    HOST_NAME_PATTERN,
    LOG_FORMATS,
    OPTIONAL_ROUTE_GROUPS,
    ORIGIN_PATTERN,
)
from memory_proxy.config.model import ProxySettings, SupermemorySettings, Timeouts, UsageSettings, UserIdMappings

_ENV_REF = {"type": "string", "pattern": "^os\\.environ/[A-Za-z_][A-Za-z0-9_]*$"}
_CLIENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}
_HEADER = {"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}


def _number(default: float, minimum: float, maximum: float, integer: bool = False) -> dict:
    kind = "integer" if integer else "number"
    return {"anyOf": [{"type": kind, "minimum": minimum, "maximum": maximum}, _ENV_REF], "default": default}


def json_schema() -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "LiteLLM Memory Proxy config",
        "type": "object",
        "properties": {
            "model_list": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["model_name", "litellm_params"],
                    "properties": {
                        "model_name": {"type": "string", "minLength": 1},
                        "litellm_params": {
                            "type": "object",
                            "required": ["model"],
                            "properties": {
                                "model": {"type": "string"},
                                "api_base": {"type": "string", "description":
                                             "starts with memory_proxy.supermemory.base_url: Supermemory-backed"},
                                "api_key": {"type": "string"},
                                "extra_headers": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        },
                    },
                },
            },
            "general_settings": {"type": "object", "properties": {
                "forward_client_headers_to_llm_api": {"const": False, "description":
                                                      "set per Supermemory-backed group by the memory proxy"},
            }},
            "litellm_settings": {"type": "object"},
            "router_settings": {"type": "object"},
            "environment_variables": {"type": "object"},
            "user_id_mappings": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "custom_header": {**_HEADER, "default": UserIdMappings.custom_header},
                    "header_patterns": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["header", "pattern", "user_id"],
                            "properties": {
                                "header": _HEADER,
                                "pattern": {"type": "string", "description": "regex, searched case-insensitively"},
                                "user_id": _CLIENT_ID,
                            },
                        },
                    },
                    "default_user_id": {**_CLIENT_ID, "default": UserIdMappings.default_user_id},
                },
            },
            "memory_proxy": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "host": {"type": "string", "default": ProxySettings.host},
                    "port": _number(ProxySettings.port, 1, 65535, integer=True),
                    "litellm_port": _number(ProxySettings.litellm_port, 1, 65535, integer=True),
                    "api_keys": {"type": "array", "items": {"type": "string"},
                                 "description": "front-door keys; os.environ/NAME references recommended"},
                    "allowed_hosts": {"type": "array", "items": {"type": "string", "pattern": HOST_NAME_PATTERN},
                                      "default": [], "description": "Host names served besides loopback, "
                                                                    "localhost and *.localhost"},
                    "cors_origins": {"type": "array", "items": {"type": "string", "pattern": ORIGIN_PATTERN},
                                     "default": [], "description": "browser origins allowed to call the proxy"},
                    "optional_routes": {"type": "array", "items": {"enum": list(OPTIONAL_ROUTE_GROUPS)},
                                        "default": [], "description": "route groups relayed besides the model routes"},
                    "max_body_bytes": _number(ProxySettings.max_body_bytes, 1024, 2**40, integer=True),
                    "max_header_bytes": _number(ProxySettings.max_header_bytes, 1024, 2**24, integer=True),
                    "requests_per_minute": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}, _ENV_REF],
                                            "default": None, "description": "per client id; null: no limit"},
                    "startup_wait": {**_number(ProxySettings.startup_wait, 0, 3600), "description":
                                     "seconds a request waits for a starting or restarting LiteLLM; 0: 503 at once"},
                    "startup_queue": {**_number(ProxySettings.startup_queue, 0, 100_000, integer=True),
                                      "description": "requests that may wait for LiteLLM at once; more get 503"},
                    "log_format": {"enum": list(LOG_FORMATS), "default": ProxySettings.log_format,
                                   "description": "the memory proxy's log lines: text, or one JSON object per line"},
                    "otel": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "OpenTelemetry traces; the standard OTEL_* variables apply too",
                        "properties": {
                            "enabled": {"type": "boolean", "default": True},
                            "endpoint": {"type": "string", "pattern": "^(https?://|os\\.environ/)",
                                         "description": "OTLP/HTTP collector: base URL or .../v1/traces"},
                            "service_name": {"type": "string", "default": "litellm-memory-proxy"},
                            "capture_message_content": {"type": "boolean", "default": False,
                                                        "description": "prompt/answer text in LiteLLM's spans"},
                        },
                    },
                    "timeouts": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "connect": _number(Timeouts.connect, 0.01, 600),
                            "read": _number(Timeouts.read, 0.01, 86400),
                            "total": _number(Timeouts.total, 1, 7 * 86400),
                        },
                    },
                    "supermemory": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "base_url": {"type": "string", "pattern": "^(https?://|os\\.environ/)",
                                         "default": DEFAULT_SUPERMEMORY_URL},
                            "api_key": {"type": "string", "default": "os.environ/SUPERMEMORY_API_KEY"},
                            "cloudflare_retry_delay": _number(SupermemorySettings.cloudflare_retry_delay, 0, 60),
                        },
                    },
                    "usage": {
                        "type": "object",
                        "additionalProperties": False,
                        "description": "the usage record (docs/usage.md)",
                        "properties": {
                            "enabled": {"type": "boolean", "default": True},
                            "retention_days": _number(UsageSettings.retention_days, 1, 100 * 366, integer=True),
                            "max_mb": _number(UsageSettings.max_mb, 1, 10**7, integer=True),
                            "queue_size": _number(UsageSettings.queue_size, 10, 10**7, integer=True),
                            "database_url": {"type": "string", "pattern": "^(postgres(ql)?://|os\\.environ/)",
                                             "description": "PostgreSQL instead of SQLite in the state folder"},
                        },
                    },
                },
            },
        },
    }
