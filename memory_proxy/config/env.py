"""``os.environ/NAME`` references: LiteLLM's way of reading an environment variable from the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENV_PREFIX = "os.environ/"


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


def missing_env(value: Any, environ: Mapping[str, str]) -> list[str]:
    """The variables referenced anywhere in a structure that are unset (or empty)."""
    name = env_reference(value)
    if name is not None:
        return [] if environ.get(name) else [name]
    if isinstance(value, dict):
        return [n for v in value.values() for n in missing_env(v, environ)]
    if isinstance(value, list):
        return [n for v in value for n in missing_env(v, environ)]
    return []
