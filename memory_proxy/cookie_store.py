"""Persist the egress session's cookies (Cloudflare's ``cf_clearance`` / ``__cf_bm``).

Session cookies are saved too: Cloudflare's clearance is what lets the next run through,
whatever the cookie's own lifetime flag says; expired cookies are dropped on load.
"""

from __future__ import annotations

import json
import logging
import time
from http.cookiejar import Cookie, CookieJar
from pathlib import Path

from .state import atomic_write, discard_partial_writes

log = logging.getLogger("memory_proxy")

_FIELDS = ("version", "name", "value", "port", "port_specified", "domain", "domain_specified",
           "domain_initial_dot", "path", "path_specified", "secure", "expires", "discard", "comment",
           "comment_url", "rfc2109")


def dump(jar: CookieJar) -> str:
    cookies = []
    for c in jar:
        item = {f: getattr(c, f) for f in _FIELDS}
        item["rest"] = dict(getattr(c, "_rest", {}))
        cookies.append(item)
    return json.dumps({"version": 1, "cookies": cookies}, indent=1)


def load(path: Path) -> CookieJar:
    """A jar with the saved cookies; an unreadable or corrupt file gives an empty jar."""
    discard_partial_writes(path)
    jar = CookieJar()
    try:
        data = json.loads(path.read_text())
        now = time.time()
        for item in data["cookies"]:
            rest = item.pop("rest", {})
            if item.get("expires") is not None and item["expires"] < now:
                continue
            jar.set_cookie(Cookie(**item, rest=rest))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable cookie jar %s: %s", path, type(exc).__name__)
    return jar


def save(jar: CookieJar, path: Path) -> None:
    atomic_write(path, dump(jar), mode=0o600)
