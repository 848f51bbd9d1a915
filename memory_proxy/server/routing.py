"""Which client is calling: explicit header, then a scope in the path, then patterns, then the default."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from memory_proxy.config.model import CLIENT_ID_RE, UserIdMappings

SCOPE_PREFIX = "/scope/"


class InvalidClientId(ValueError):
    """The client named an id explicitly and it is not a valid one."""


@dataclass(frozen=True)
class Resolution:
    user_id: str
    source: str  # "custom_header" | "scope_path" | "pattern" | "default"
    detail: str  # human-readable reason, never a credential
    path: str  # the request path with any /scope/<id> prefix removed
    pattern_index: int | None = None


def split_scope(path: str) -> tuple[str | None, str]:
    """``/scope/<id>/v1/x`` -> (``<id>``, ``/v1/x``); other paths -> (None, path)."""
    if not path.startswith(SCOPE_PREFIX):
        return None, path
    rest = path[len(SCOPE_PREFIX):]
    scope, slash, tail = rest.partition("/")
    return scope, slash + tail if slash else "/"


def valid_id(value: str) -> bool:
    """1-128 letters, digits or ``. _ : -``, not dots alone (``..`` would name no memory in a URL path)."""
    return CLIENT_ID_RE.fullmatch(value) is not None and value.strip(".") != ""


def validate_id(value: str, where: str) -> str:
    if not valid_id(value):
        raise InvalidClientId(f"invalid client id in {where}: use 1-128 letters, digits or . _ : -, not dots alone "
                              f"(got {len(value)} characters)")
    return value


def resolve(mappings: UserIdMappings, headers: Mapping[str, str], path: str) -> Resolution:
    """Resolve the memory scope of a request. ``headers`` must have lower-case names."""
    scope, stripped = split_scope(path)
    explicit = headers.get(mappings.custom_header)
    if explicit is not None:
        user_id = validate_id(explicit.strip(), f"header {mappings.custom_header}")
        return Resolution(user_id, "custom_header", f"header {mappings.custom_header}", stripped)
    if scope is not None:
        user_id = validate_id(scope, "path /scope/<id>/")
        return Resolution(user_id, "scope_path", "path prefix /scope/<id>/", stripped)
    for index, pattern in enumerate(mappings.header_patterns):
        value = headers.get(pattern.header)
        if value is not None and pattern.regex.search(value):
            return Resolution(pattern.user_id, "pattern",
                              f"header_patterns[{index}]: {pattern.header} ~ {pattern.pattern!r}",
                              stripped, index)
    return Resolution(mappings.default_user_id, "default", "no header or pattern matched", stripped)
