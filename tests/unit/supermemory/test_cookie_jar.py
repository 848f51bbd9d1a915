"""The cookie jar in the state folder (Cloudflare's clearance cookies, kept across restarts)."""

import os
import stat
from http.cookiejar import Cookie, CookieJar

from memory_proxy.supermemory import cookie_jar


def _cookie(name: str, value: str, expires: int | None) -> Cookie:
    return Cookie(0, name, value, None, False, "127.0.0.1", False, False, "/", True, False, expires, expires is None,
                  None, None, {"HttpOnly": None})


def test_cookie_jar_round_trip_drops_expired(tmp_path):
    jar = CookieJar()
    jar.set_cookie(_cookie("cf_clearance", "abc", 4102444800))
    jar.set_cookie(_cookie("__cf_bm", "session", None))  # session cookies are kept too
    jar.set_cookie(_cookie("old", "gone", 1000))
    path = tmp_path / "jar.json"
    cookie_jar.save(jar, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = {c.name: c.value for c in cookie_jar.load(path)}
    assert loaded == {"cf_clearance": "abc", "__cf_bm": "session"}


def test_corrupt_or_missing_jar_gives_empty_jar(tmp_path):
    assert list(cookie_jar.load(tmp_path / "missing.json")) == []
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1, "cookies": [{"name": ')
    assert list(cookie_jar.load(broken)) == []
