"""The trust boundary: who may call the memory proxy at all, and which paths it serves.

The proxy holds LiteLLM's master key and every client's memory, and any web page the user
visits can send requests to 127.0.0.1. So, before anything is relayed (both backends):

- ``Host`` must name this machine: a loopback address, ``localhost``, a ``*.localhost`` name
  or one of ``memory_proxy.allowed_hosts`` (a DNS-rebinding page sends its own name);
- a request that carries ``Origin`` (``null`` too) comes from a browser page: refused unless
  the origin is listed in ``memory_proxy.cors_origins`` or is the proxy's own; likewise a
  ``Sec-Fetch-Site`` of ``cross-site`` or ``same-site`` (a ``no-cors`` request or a link);
- only the routes AI clients need get the master key (``FrontDoor.model_route``); the rest of
  LiteLLM (admin, keys, spend, config, cache, UI, pass-through, MCP, files, ...) is 404.

IDEs, SDKs and CLIs send neither ``Origin`` nor ``Sec-Fetch-*``: for them this is a few
header lookups. Models: Ollama's ``allowedHostsMiddleware`` (CVE-2024-28224), Jupyter's
``local_hostnames``, the MCP spec's "validate Origin, 403", coder/aibridge's route list.
"""

from __future__ import annotations

from collections import Counter

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memory_proxy.config.model import ProxySettings, is_loopback
from memory_proxy.names import UI_PREFIX
from memory_proxy.server.errors import error_response

_BASE_ROUTES = ("/chat/completions", "/completions", "/embeddings", "/models", "/messages",
                "/messages/count_tokens", "/responses", "/responses/input_tokens")
_OPTIONAL_ROUTES = {
    "audio": ("/audio/speech", "/audio/transcriptions", "/audio/translations"),
    "images": ("/images/generations", "/images/edits", "/images/variations"),
    "moderations": ("/moderations",),
    "rerank": ("/rerank", "/v2/rerank"),
}
_RESPONSE_ACTIONS = frozenset({"input_items", "cancel"})
# What a browser may read of an answer from a listed origin besides the CORS-safelisted headers.
_EXPOSED = b"x-request-id, x-supermemory-user-id, retry-after"
_TWICE = b"\x00"  # a Host or Origin header sent twice: no value names this (HTTP parsers refuse NUL)
# Why the front door refused a request: ``memory_proxy_refused_total{reason}`` (a fixed set).
REFUSAL_REASONS = ("host_not_allowed", "origin_not_allowed", "method_not_allowed", "headers_too_large",
                   "unauthorized", "route_not_served", "invalid_client_id", "rate_limited", "body_too_large",
                   "invalid_json")
_REASON_OF_CODE = {"invalid_api_key": "unauthorized", "request_too_large": "body_too_large"}  # error code -> reason


def _with_v1(paths) -> set[str]:
    return {p for path in paths for p in (path, path if path.startswith("/v2/") else "/v1" + path)}


def _plain_segment(segment: str) -> bool:
    """A path segment that names something: no dot segment, encoded slash or backslash."""
    return bool(segment) and segment not in (".", "..") and "%" not in segment and "\\" not in segment


class FrontDoor:
    """The checks above for one config; built once per app (see ``app.create_app``)."""

    def __init__(self, proxy: ProxySettings) -> None:
        self.check_host = is_loopback(proxy.host)  # bound elsewhere, front-door keys guard it
        self.allowed_hosts = frozenset(h for h in proxy.allowed_hosts if not h.startswith("*."))
        self.allowed_suffixes = tuple(h[1:] for h in proxy.allowed_hosts if h.startswith("*."))
        self.origins = frozenset(o.encode() for o in proxy.cors_origins)
        self.routes = frozenset(_with_v1(_BASE_ROUTES + tuple(
            path for group in proxy.optional_routes for path in _OPTIONAL_ROUTES[group])))
        # The same words in both backends (the parity suite compares them).
        self.admin_hint = (f"LiteLLM's admin API is only on LiteLLM's own port (127.0.0.1:{proxy.litellm_port}, "
                           "memory_proxy.litellm_port, or the --litellm-url given to up), with its master key.")
        self._hosts: dict[bytes, bool] = {}  # Host values seen: parsing one costs more than the rest
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSAL_REASONS, 0))  # by reason, for /metrics

    def count_refusal(self, code: object) -> None:
        """A refusal the proxy answered with error code ``code`` (codes outside the set are not counted)."""
        reason = _REASON_OF_CODE.get(code, code) if isinstance(code, str) else None
        if reason in self.refused:
            self.refused[reason] += 1

    # --- Host and Origin ---------------------------------------------------------------

    def host_allowed(self, value: bytes) -> bool:
        known = self._hosts.get(value)
        if known is None:
            known = self._name_allowed(value.decode("latin-1").lower())
            if len(self._hosts) < 256:
                self._hosts[value] = known
        return known

    def _name_allowed(self, host: str) -> bool:
        if host.startswith("["):  # [::1]:8764
            name, _, _ = host[1:].partition("]")
        else:
            name, colon, port = host.rpartition(":")
            if not colon or not port.isdigit():
                name = host
        name = name.rstrip(".")
        return (name == "localhost" or name.endswith(".localhost") or is_loopback(name)
                or name in self.allowed_hosts or bool(self.allowed_suffixes and name.endswith(self.allowed_suffixes)))

    def screen(self, scope: Scope) -> tuple[Response | None, bytes | None]:
        """(a refusal or a preflight answer, or None; the listed origin to answer for, or None)."""
        host = origin = site = None
        for name, value in scope["headers"]:  # one sent twice is ambiguous: it names nothing, and is refused
            if name == b"host":
                host = value if host is None else _TWICE
            elif name == b"origin":
                origin = value if origin is None else _TWICE
            elif name == b"sec-fetch-site":
                site = value if site is None else b"cross-site"
        if host is not None and self.check_host and not self.host_allowed(host):
            self.refused["host_not_allowed"] += 1
            return error_response(403, "the Host header does not name this machine; the memory proxy only "
                                       "serves loopback names and memory_proxy.allowed_hosts",
                                  code="host_not_allowed"), None
        if origin is None and site not in (b"cross-site", b"same-site"):
            return None, None
        # a listed origin (a browser-based AI client) may use the model routes, never the pages and
        # their API (what each memory holds, forgetting): those answer the proxy's own origin only
        listed = origin is not None and origin.lower() in self.origins and not is_page(scope["path"])
        if not listed and not (origin is not None and host is not None and site not in (b"cross-site", b"same-site")
                               and origin.lower() == b"http://" + host.lower() and self.host_allowed(host)):
            self.refused["origin_not_allowed"] += 1
            return error_response(403, "requests from web pages are refused: this origin is not in "
                                       "memory_proxy.cors_origins", code="origin_not_allowed"), None
        if scope["method"] == "OPTIONS" and any(n == b"access-control-request-method" for n, _ in scope["headers"]):
            return self.preflight(scope, origin), None
        return None, origin if listed else None

    def preflight(self, scope: Scope, origin: bytes) -> Response:
        """The answer to a listed origin's preflight: that origin, what it asked for."""
        asked = {n: v for n, v in scope["headers"] if n.startswith(b"access-control-request-")}
        response = Response(status_code=204)
        response.raw_headers = [
            (b"access-control-allow-origin", origin), (b"vary", b"Origin"),
            (b"access-control-allow-methods", asked.get(b"access-control-request-method", b"POST")),
            (b"access-control-max-age", b"600"),
        ] + ([(b"access-control-allow-headers", asked[b"access-control-request-headers"])]
             if b"access-control-request-headers" in asked else [])
        return response

    @staticmethod
    def cors_send(send: Send, origin: bytes) -> Send:
        """``send`` for an answer to a listed origin: our CORS headers in place of any upstream's."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", ()) if not n.startswith(b"access-control-")]
                headers += [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
                            (b"access-control-expose-headers", _EXPOSED)]
                message = {**message, "headers": headers}
            await send(message)

        return wrapped

    # --- routes ------------------------------------------------------------------------

    def model_route(self, path: str) -> bool:
        """Whether ``path`` (without a ``/scope/<id>`` prefix) is a route AI clients use."""
        if path in self.routes:
            return True
        if len(path) > 1 and path.endswith("/") and path[:-1] in self.routes:
            return True
        rest = path[3:] if path.startswith("/v1/") else path
        if rest.startswith("/models/"):  # a model id may hold slashes: openai/gpt-4o
            return all(_plain_segment(s) for s in rest[len("/models/"):].split("/"))
        if rest.startswith("/responses/"):
            parts = rest[len("/responses/"):].split("/")
            return _plain_segment(parts[0]) and (len(parts) == 1 or (len(parts) == 2 and parts[1] in _RESPONSE_ACTIONS))
        return False

    def not_a_model_route(self, path: str, headers: dict[str, str]) -> Response:
        return error_response(404, f"{path[:200]} is not a route the memory proxy serves: it relays only the "
                                   f"model routes AI clients use (chat/completions, completions, embeddings, "
                                   f"models, messages, responses). {self.admin_hint}",
                              code="route_not_served", headers=headers)


def is_page(path: str) -> bool:
    """The memory proxy's own pages and their JSON API (``/ui``)."""
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


class Guard:
    """An ASGI app behind the front door's Host and Origin checks, for every HTTP request
    (model routes, the proxy's own pages and the egress alike)."""

    def __init__(self, app: ASGIApp, door: FrontDoor) -> None:
        self.app = app
        self.door = door
        self.state = getattr(app, "state", None)
        self.router = getattr(app, "router", None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal, origin = self.door.screen(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            if origin is not None:
                send = self.door.cors_send(send, origin)
        await self.app(scope, receive, send)
