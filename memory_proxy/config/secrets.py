"""Secrets written into the config as text: found (to warn about them with their key) and masked
(``check`` prints the generated LiteLLM config). An ``os.environ/NAME`` reference is never one."""

from __future__ import annotations

import re
from typing import Any

from memory_proxy.config.env import env_reference

SECRET_WORDS = frozenset({"key", "apikey", "secret", "token", "password", "passwd", "credential", "credentials",
                          "authorization", "cookie"})
URL_PASSWORD_RE = re.compile(r"://[^/@\s:]*:([^/@\s]+)@")
_SECRET_KEY = r"(key|secret|token|password|credential)"  # compiled on first use: only `check` masks
PREFER_REFERENCE = "an os.environ/NAME reference"


def literal_warning(key: str, what: str = "secret", prefer: str = PREFER_REFERENCE) -> str:
    """The warning about a secret written into the config at ``key``."""
    return f"{key}: literal {what} in the config; prefer {prefer}"


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


def mask_secrets(value: Any, key: str = "") -> Any:
    """A copy with literal secrets replaced by ``****`` (``os.environ/`` references are kept):
    values under a secret-sounding name (``is_secret_name``) and URL passwords."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if isinstance(value, str) and env_reference(value) is None:
        if is_secret_name(key) or re.search(_SECRET_KEY, key, re.IGNORECASE):
            return "****"
        return URL_PASSWORD_RE.sub(lambda m: m.group(0).replace(m.group(1), "****"), value)
    return value
