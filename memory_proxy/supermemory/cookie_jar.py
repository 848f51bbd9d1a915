"""Persist the egress session's cookies (Cloudflare's ``cf_clearance`` / ``__cf_bm``).

Session cookies are saved too: Cloudflare's clearance is what lets the next run through,
whatever the cookie's own lifetime flag says; expired cookies are dropped on load.

The memory proxy owns the file (``load`` at start, ``save`` by atomic rename). The ``memory``
and ``doctor`` commands share it while a proxy may be running: they ``read`` it without
touching its writes in progress and ``merge_save`` their cookies into what is there by then.
"""

from __future__ import annotations

import json
import logging
import time
from http.cookiejar import Cookie, CookieJar
from pathlib import Path

from memory_proxy.state import atomic_write, discard_partial_writes

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
    """A jar with the saved cookies; an unreadable or corrupt file gives an empty jar.
    For the file's owner, the memory proxy, at start (it discards torn temporary files)."""
    discard_partial_writes(path)
    return read(path)


def read(path: Path) -> CookieJar:
    """``load`` for anyone but the owner: the same jar, leaving a running proxy's writes alone."""
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


def merge_save(jar: CookieJar, path: Path) -> None:
    """Save ``jar`` into a file a running proxy may also write: under a lock (against other
    commands doing the same), read what is there now, put our cookies over it (same domain,
    path and name: ours are the newer) and rename the result into place. The proxy renames
    whole files too, so the file is never torn; at worst one side's newest cookie is lost and
    Cloudflare issues another."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; renames still keep the file whole
            fcntl = None
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        merged = read(path)
        for cookie in jar:
            merged.set_cookie(cookie)
        save(merged, path)
