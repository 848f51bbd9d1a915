"""The dashboard at ``/ui/`` and its JSON API under ``/ui/api/`` (docs/usage.md).

Two pages of plain HTML, JavaScript and CSS shipped in the package (``server/ui/``), same
origin as the proxy: ``page.html`` is their shell (head, header, key form), and each page's
file (``usage.html``, ``memory.html``) holds its header controls, a line ``<!-- main -->`` and
its main part. With ``memory_proxy.api_keys`` set, the page asks for a key once
(``POST /ui/api/login``) and the proxy keeps a token derived from it in an HttpOnly,
SameSite=Strict cookie until the browser closes or ``POST /ui/api/logout``; the API also takes
the key itself (``Authorization: Bearer`` or ``x-api-key``). Store queries run in a worker
thread on a read-only connection.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string
import time
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from memory_proxy.names import UI_PREFIX
from memory_proxy.server.errors import error_response
from memory_proxy.server.ingress import authorized
from memory_proxy.server.relay import BodyTooLarge, read_body
from memory_proxy.server.runtime import Runtime
from memory_proxy.usage import report as ur

COOKIE = "memory_proxy_ui"
HTML, JS = "text/html; charset=utf-8", "text/javascript; charset=utf-8"
PAGES = {"": ("usage", "app.js"), "memory": ("memory", "memory.js")}  # path under /ui/ -> name, script
ASSETS = {"index.html": ("", HTML), **{path: (path, HTML) for path in PAGES},
          "common.js": ("common.js", JS), "app.js": ("app.js", JS), "memory.js": ("memory.js", JS),
          "app.css": ("app.css", "text/css; charset=utf-8")}
ASSET_DIR = Path(__file__).with_name("ui")
SECURITY_HEADERS = {"cache-control": "no-store", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "x-frame-options": "DENY",
                    "content-security-policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'"}
LOGIN_BODY_BYTES = 4096
RANGES = {"today": ("hourly", 0), "7d": ("daily", 6), "30d": ("daily", 29), "90d": ("daily", 89)}


def _token(runtime: Runtime, key: str) -> str:
    """The cookie's value for a front-door key: valid for this run only, never the key itself."""
    return hmac.new(runtime.egress_secret.encode(), b"ui:" + key.encode(), hashlib.sha256).hexdigest()


def allowed(runtime: Runtime, request: Request) -> bool:
    """The page's cookie or a front-door key, when keys are configured."""
    keys = runtime.config.proxy.api_keys
    if not keys:
        return True
    cookie = request.cookies.get(COOKIE, "").encode()  # bytes: compare_digest refuses non-ASCII str
    if cookie and any(hmac.compare_digest(cookie, _token(runtime, k).encode()) for k in keys):
        return True
    return (bool(request.headers.get("authorization") or request.headers.get("x-api-key"))
            and authorized(runtime, request))


async def page(request: Request) -> Response:
    """The pages and their assets (no key needed: they hold no data)."""
    if request.url.path == UI_PREFIX:
        return Response(status_code=308, headers={"location": UI_PREFIX + "/"})
    name = request.path_params.get("asset", "")
    if name not in ASSETS:
        return error_response(404, "Not Found")
    filename, media = ASSETS[name]
    body = render(filename) if media == HTML else (ASSET_DIR / filename).read_bytes()
    return Response(body, media_type=media, headers=SECURITY_HEADERS)


def render(path: str) -> bytes:
    """The page at ``/ui/<path>``: its own parts in the shell, with a link to the other page."""
    name, script = PAGES[path]
    controls, main = (ASSET_DIR / f"{name}.html").read_text().split("<!-- main -->\n", 1)
    nav = " · ".join(f"<strong>{n}</strong>" if p == path else f'<a href="{p or "./"}">{n}</a>'
                     for p, (n, _) in PAGES.items())
    shell = string.Template((ASSET_DIR / "page.html").read_text())
    return shell.substitute(page=name, script=script, nav=nav, controls=controls, main=main).encode()


async def login(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    keys = runtime.config.proxy.api_keys
    try:  # read only as much as a key can be: this route answers anyone who may ask for a cookie
        offered = json.loads(await read_body(request, LOGIN_BODY_BYTES)).get("key", "")
    except BodyTooLarge:
        return error_response(413, f"a login body is at most {LOGIN_BODY_BYTES} bytes")
    except (ValueError, AttributeError):
        offered = ""
    if not isinstance(offered, str) or not any(hmac.compare_digest(offered.encode(), k.encode()) for k in keys):
        return error_response(401, "wrong memory proxy key")
    response = JSONResponse({"ok": True}, headers={"cache-control": "no-store"})
    response.set_cookie(COOKIE, _token(runtime, offered), httponly=True, samesite="strict", path=UI_PREFIX,
                        secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    """Forget the page's cookie (answered to anyone: it only ever clears the caller's own)."""
    response = JSONResponse({"ok": True}, headers={"cache-control": "no-store"})
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", path=UI_PREFIX,
                           secure=request.url.scheme == "https")
    return response


def report_range(request: Request) -> tuple[str, int, int | None]:
    """(bucket period, since ms, until ms) of ``?range=today|7d|30d|90d`` or ``?since=&until=`` (days)."""
    params = request.query_params
    if params.get("since"):
        since = ur.parse_day(params["since"])
        until = ur.parse_day(params["until"], end=True) if params.get("until") else None
        return "daily", since, until
    period, days = RANGES.get(params.get("range", "today"), RANGES["today"])
    return period, ur.today_start_ms() - days * ur.DAY_MS, None


def _by(request: Request) -> str:
    by = request.query_params.get("by", "client")
    if by not in ur.GROUPS:
        raise ValueError(f"by must be one of {', '.join(ur.GROUPS)}")
    return by


async def api(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    if not allowed(runtime, request):
        return error_response(401, "the dashboard needs a memory proxy key", code="login_required")
    what = request.path_params["what"]
    if what == "status":
        return JSONResponse(_status(runtime), headers=SECURITY_HEADERS)
    if runtime.usage_reader is None:
        return error_response(404, "usage recording is off (memory_proxy.usage.enabled: false)",
                              code="usage_disabled")
    try:
        query = _QUERIES[what]
    except KeyError:
        return error_response(404, "Not Found")
    try:
        args = query[1](request)
    except ValueError as exc:
        return error_response(400, str(exc))

    try:
        data = await read_store(runtime, query[0], *args)
    except Exception as exc:  # e.g. no record written yet: the file does not exist
        return store_unavailable(runtime, exc)
    return JSONResponse(data, headers=SECURITY_HEADERS)


async def read_store(runtime: Runtime, query, *args):
    """``query(store, *args)`` on a read-only store, in a worker thread (never on the event loop)."""
    def run():
        store = runtime.usage_reader()
        try:
            return query(store, *args)
        finally:
            store.close()

    return await anyio.to_thread.run_sync(run)


def store_unavailable(runtime: Runtime, exc: Exception) -> Response:
    return JSONResponse({"error": {"message": f"the usage store cannot be read: {type(exc).__name__}",
                                   "type": "store_unavailable"}, "usage": _status(runtime)["usage"]},
                        status_code=503, headers=SECURITY_HEADERS)


def _status(runtime: Runtime) -> dict:
    return {"usage": runtime.usage.status() if runtime.usage is not None else {"enabled": False},
            "login_required": bool(runtime.config.proxy.api_keys), "now_ms": int(time.time() * 1000)}


def _summary(store, by: str, period: str, since: int, until: int | None) -> dict:
    """Cards: one per client (or project, model, provider) over the range, and the totals."""
    rows = ur.report(store, period="total", by=by, since_ms=since, until_ms=until)
    return {"by": by, "since_ms": since, "until_ms": until, "rows": [r.as_dict() for r in rows],
            "total": ur.totals(rows).as_dict()}


def _timeseries(store, by: str, period: str, since: int, until: int | None) -> dict:
    """Requests and cost per hour (today) or day, per key, for the chart."""
    rows = ur.report(store, period=period, by=by, since_ms=since, until_ms=until)
    return {"by": by, "period": period, "since_ms": since, "until_ms": until,
            "points": [{"period": r.period, "key": r.key, "requests": r.requests, "cost_usd": round(r.cost_usd, 6),
                        "errors": r.errors, "unpriced_requests": r.unpriced} for r in rows]}


def _latency(store, by: str, period: str, since: int, until: int | None) -> dict:
    """Latency percentiles per model."""
    rows = ur.report(store, period="total", by="model", since_ms=since, until_ms=until)
    return {"rows": [{k: v for k, v in r.as_dict().items() if k in (
        "key", "requests", "p50_latency_ms", "p95_latency_ms", "p50_first_event_ms")} for r in rows]}


def _requests(store, limit: int, since: int | None) -> dict:
    return {"rows": ur.latest(store, limit=limit, since_ms=since)}


def _report_args(request: Request) -> tuple:
    period, since, until = report_range(request)
    return (_by(request), period, since, until)


def _request_args(request: Request) -> tuple:
    limit = request.query_params.get("limit", "50")
    since = request.query_params.get("since_ms")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000 or (since is not None and not since.isdigit()):
        raise ValueError("limit must be 1-1000 and since_ms a number")
    return (int(limit), int(since) if since else None)


_QUERIES = {"summary": (_summary, _report_args), "timeseries": (_timeseries, _report_args),
            "latency": (_latency, _report_args), "requests": (_requests, _request_args)}


def routes() -> list[Route]:
    """The dashboard's routes (the memory page's too), for the binary-mode app and SDK mode's alike."""
    from memory_proxy.server import memory_page  # it builds on this module

    return [Route(UI_PREFIX, page, methods=["GET"]),
            Route(UI_PREFIX + "/api/login", login, methods=["POST"]),
            Route(UI_PREFIX + "/api/logout", logout, methods=["POST"]),
            *memory_page.routes(),
            Route(UI_PREFIX + "/api/{what}", api, methods=["GET"]),
            Route(UI_PREFIX + "/{asset:path}", page, methods=["GET"])]
