"""Secrets written into the config as text: found (to warn about them with their key) and masked
(``check`` prints the generated LiteLLM config). An ``os.environ/NAME`` reference is never one."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from memory_proxy.config.env import env_reference

if TYPE_CHECKING:
    from memory_proxy.config.model import Config

SECRET_WORDS = frozenset({"key", "apikey", "secret", "token", "password", "passwd", "credential", "credentials",
                          "authorization", "cookie"})
URL_PASSWORD_RE = re.compile(r"://[^/@\s:]*:([^/@\s]+)@")
_SECRET_KEY = r"(key|secret|token|password|credential)"  # compiled on first use: only `check` masks
_ENV_SECRET_NAME = r"(pass|secret|token|key|credential)"  # environment_variables.MY_PASS, DB_PASSWD, ...
MASK = "****"
# Secrets inside a longer text (a URL, a header string): group 1 is the secret, masked; what names
# it stays.
_SECRET_TEXT = (
    URL_PASSWORD_RE.pattern,  # http://user:<password>@host
    r"[?&;][^=&#\s]*(?:key|token|secret|passw(?:or)?d|pwd|signature|sig|auth|credential)[^=&#\s]*"
    r"=([^&#\s'\"]+)",  # ?api_key=<secret>&...
    r"(?:hooks\.slack\.com/services|discord(?:app)?\.com/api/webhooks)/([^\s'\",]+)",  # webhook URLs
    r"\b(?:proxy-)?authorization\s*[=:]\s*([^,;\n'\"]+)",  # "Authorization=Bearer <token>"
    r"\b(?:bearer|basic)\s+([^\s,;'\"]+)",  # "Bearer <token>" on its own
    r"\b(?:x-)?api-key\s*[=:]\s*([^,;\s'\"]+)",  # "x-api-key: <key>"
)
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


def mask_text(text: str) -> str:
    """``text`` with the secrets it carries replaced by ``****``: a URL's password, query
    parameters named like a key, token, secret, password or signature, a Slack or Discord
    webhook's path, and header strings with ``Authorization``, ``Bearer`` or ``api-key``. For
    anything that quotes a configured value back (``check``, config errors, messages naming a URL)."""
    for regex in _secret_text_res():
        text = regex.sub(lambda m: m.group(0)[:m.start(1) - m.start(0)] + MASK + m.group(0)[m.end(1) - m.start(0):],
                         text)
    return text


@functools.cache
def _secret_text_res() -> tuple[re.Pattern[str], ...]:
    """Compiled on first use: ``status`` imports this module, and rarely masks anything."""
    return tuple(re.compile(pattern, re.IGNORECASE) for pattern in _SECRET_TEXT)


def mask_secrets(value: Any, key: str = "", path: tuple = ()) -> Any:
    """A copy with literal secrets replaced by ``****`` (``os.environ/`` references are kept):
    values (text or numbers) under a secret-sounding name (``is_secret_name``), names with
    PASS, SECRET, TOKEN or KEY under ``environment_variables``, and the secrets inside a text
    (``mask_text``: URL passwords and query keys, webhook URLs, ``Authorization`` header strings)."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k), path + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key, path) for v in value]
    secret_name = is_secret_name(key) or (
        path[:1] == ("environment_variables",) and re.search(_ENV_SECRET_NAME, key, re.IGNORECASE))
    if isinstance(value, (int, float)) and not isinstance(value, bool) and secret_name:
        return MASK
    if isinstance(value, str) and env_reference(value) is None:
        if secret_name or re.search(_SECRET_KEY, key, re.IGNORECASE):
            return MASK
        return mask_text(value)
    return value


def without_config_secrets(text: str, config: Config | None) -> str:
    """``text`` without the secrets the config holds (the Supermemory key, a database URL and its
    password): for an error quoted from a library, which may repeat what it was given."""
    if config is None:
        return text
    from urllib.parse import urlsplit

    secrets = [config.proxy.supermemory.api_key, config.proxy.usage.database_url]
    if config.proxy.usage.database_url:
        secrets.append(urlsplit(config.proxy.usage.database_url).password)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
