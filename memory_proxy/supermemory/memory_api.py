"""Supermemory's Memory API for the ``memory`` and ``doctor`` commands and the dashboard's
memory page.

The official SDK (``supermemory`` 5.x, see docs/memory.md for why that major version), with
the base URL and key of ``memory_proxy.supermemory``, retrying a Cloudflare refusal once as the
egress does. The commands (``session``) use its sync client over an ``httpx.Client`` that reads
the state folder's cookie jar and merges new cookies back safely while a proxy may be running;
a running proxy (``async_session``) uses its async client over the egress's own jar. The SDK
(and pydantic with it) is imported only when a call is about to be made: the launcher's other
commands and the proxy's start never pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from memory_proxy.config.model import ENV_PREFIX, env_reference
from memory_proxy.config.secrets import mask_text
from memory_proxy.supermemory import cookie_jar

if TYPE_CHECKING:
    from supermemory import AsyncSupermemory, Supermemory

    from memory_proxy.config.model import Config
    from memory_proxy.state import StateDir

T = TypeVar("T")
PAGE = 100  # the Memory API's largest page
# A memory id as Supermemory gives them. Checked before one goes into a request: the SDK puts it
# in the URL's path as it is, so "../../<other id>/memories/<m>" would read another id's memory.
MEMORY_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class MemoryApiError(Exception):
    """A call that failed, as one sentence a user can act on; ``kind`` for scripts."""

    def __init__(self, kind: str, message: str, status: int | None = None, fix: str | None = None,
                 retry_after: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # unauthorised | unreachable | rate_limited | cloudflare | not_found | refused | no_key
        self.message = message
        self.status = status
        self.fix = fix  # what to do, where there is something
        self.retry_after = retry_after  # Supermemory's Retry-After on a 429

    def __str__(self) -> str:
        return self.message + (f"; {self.fix}" if self.fix else "")


def key_variable(config: Config) -> str:
    """The environment variable the config reads the Supermemory key from (for messages)."""
    raw = ((config.raw.get("memory_proxy") or {}).get("supermemory") or {}).get("api_key",
                                                                               ENV_PREFIX + "SUPERMEMORY_API_KEY")
    return env_reference(raw) or "memory_proxy.supermemory.api_key"


@dataclass
class _Caller:
    """What both sessions know to turn an SDK failure into a MemoryApiError."""

    base_url: str
    secret: str
    retry_delay: float
    secret_hint: str = "the Supermemory key"  # where the key comes from, for messages

    def _failure(self, exc: Exception, attempt: int) -> MemoryApiError | None:
        """The error to raise for a failed call, or None for a first Cloudflare refusal (retry it)."""
        transport = exc if isinstance(exc, httpx.HTTPError) else exc.__cause__
        where = "check the network and memory_proxy.supermemory.base_url"
        if isinstance(transport, httpx.TimeoutException):
            return MemoryApiError("unreachable", f"Supermemory at {mask_text(self.base_url)} did not answer in time "
                                                 f"({type(transport).__name__})", fix=where)
        if isinstance(transport, httpx.HTTPError):
            return MemoryApiError("unreachable", f"cannot reach Supermemory at {mask_text(self.base_url)} "
                                                 f"({type(transport).__name__})", fix=where)
        status = getattr(exc, "status_code", None)
        if status is None:
            return MemoryApiError("refused", f"Supermemory's answer could not be read ({type(exc).__name__})")
        if _is_cloudflare_refusal(exc) and attempt == 1:
            return None
        return self._translate(exc, status)

    def _translate(self, exc: Exception, status: int) -> MemoryApiError:
        headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
        detail = self._detail(getattr(exc, "body", None))
        if status in (401, 403):
            return MemoryApiError("unauthorised", f"Supermemory refused the key ({status})" + detail, status,
                                  fix=f"check {self.secret_hint}")
        if _is_cloudflare_refusal(exc):
            return MemoryApiError("cloudflare", "Supermemory's Cloudflare edge refused the request twice (503, "
                                                "error code: 1200, rate limited)", status,
                                  fix="retry in a few seconds; keep the cookie jar")
        if status == 429:
            wait = headers.get("retry-after")
            return MemoryApiError("rate_limited", "Supermemory is rate-limiting this key (429)" + detail, status,
                                  fix="retry " + (f"in {wait} s" if wait else "later"), retry_after=wait)
        if status == 404:
            return MemoryApiError("not_found", "not found" + detail, status)
        return MemoryApiError("refused", f"Supermemory answered {status}" + detail, status)

    def _detail(self, body: Any) -> str:
        if isinstance(body, dict):
            body = body.get("details") or body.get("error") or body.get("message")
        if not isinstance(body, str) or not body.strip():
            return ""
        text = " ".join(body.split())
        text = (text.replace(self.secret, "***") if self.secret else text)[:200]  # redacted, then cut
        return f": {text}"


@dataclass
class Session(_Caller):
    """One SDK client for one command run, and what its last answer said about the server."""

    client: Supermemory | None = None
    server_date: str | None = None  # the Date header of the last answer (doctor's clock check)
    elapsed_ms: float | None = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one SDK call; a Cloudflare refusal is retried once, failures become MemoryApiError."""
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                result = fn(*args, **kwargs)
                self.elapsed_ms = (time.monotonic() - started) * 1000
                return result
            except Exception as exc:  # the SDK's error family (it wraps httpx's as their cause)
                error = self._failure(exc, attempt)
                if error is not None:
                    raise error from None
                time.sleep(self.retry_delay)
        raise AssertionError("unreachable")  # the loop returns or raises


@dataclass
class AsyncSession(_Caller):
    """The SDK's async client for a running memory proxy (the dashboard's memory page): its
    httpx client shares the egress's cookie jar object, so both send and keep the same
    Cloudflare cookies; the egress, the jar's owner, saves it (``on_cookies``)."""

    client: AsyncSupermemory | None = None
    http: httpx.AsyncClient | None = None
    on_cookies: Callable[[], None] | None = None  # new cookies arrived: save the jar

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """``Session.call`` for the async client: the retry waits without blocking the event loop."""
        for attempt in (1, 2):
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:  # the SDK's error family, as in Session.call
                error = self._failure(exc, attempt)
                if error is not None:
                    raise error from None
                await asyncio.sleep(self.retry_delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()


def async_session(config: Config, jar: CookieJar, on_cookies: Callable[[], None] | None = None) -> AsyncSession:
    """An async SDK client over ``jar`` (the egress's own): no file is read or written here."""
    settings = config.proxy.supermemory
    if not settings.api_key:
        raise MemoryApiError("no_key", f"no Supermemory key: {key_variable(config)} is not set "
                                       "(memory_proxy.supermemory.api_key)")
    from supermemory import AsyncSupermemory  # the caller imports it first, off the event loop

    timeouts = config.proxy.timeouts
    limit = httpx.Timeout(min(timeouts.read, 30.0), connect=timeouts.connect)
    current = AsyncSession(settings.base_url, settings.api_key, settings.cloudflare_retry_delay,
                           f"{key_variable(config)} (memory_proxy.supermemory.api_key)", on_cookies=on_cookies)

    async def seen(response: httpx.Response) -> None:
        if "set-cookie" in response.headers and current.on_cookies is not None:
            current.on_cookies()

    current.http = httpx.AsyncClient(cookies=jar, timeout=limit, trust_env=False, follow_redirects=False,
                                     event_hooks={"response": [seen]})
    current.client = AsyncSupermemory(base_url=settings.base_url, api_key=settings.api_key,
                                      httpx_client=current.http, max_retries=0, timeout=limit.read)
    return current


def _is_cloudflare_refusal(exc: Exception) -> bool:
    headers = {k.lower(): v for k, v in (getattr(exc, "headers", None) or {}).items()}
    return (getattr(exc, "status_code", None) == 503 and "cloudflare" in headers.get("server", "").lower()
            and "error code: 1200" in str(getattr(exc, "body", "")))


@contextlib.contextmanager
def session(config: Config, state: StateDir, timeout: float | None = None) -> Iterator[Session]:
    """An SDK session over the state folder's cookie jar; new cookies are merged back at the end."""
    settings = config.proxy.supermemory
    if not settings.api_key:
        raise MemoryApiError("no_key", f"no Supermemory key: {key_variable(config)} is not set "
                                       "(memory_proxy.supermemory.api_key)")
    from supermemory import Supermemory  # the SDK only for the commands that call it

    jar_path = state.cookie_jar
    jar = cookie_jar.read(jar_path)
    before = cookie_jar.dump(jar)
    timeouts = config.proxy.timeouts
    limit = httpx.Timeout(timeout or min(timeouts.read, 30.0), connect=timeouts.connect)
    holder: dict[str, Session] = {}

    def seen(response: httpx.Response) -> None:
        if "session" in holder:
            holder["session"].server_date = response.headers.get("date")

    http = httpx.Client(cookies=jar, timeout=limit, trust_env=False, follow_redirects=False,
                        event_hooks={"response": [seen]})
    try:
        client = Supermemory(base_url=settings.base_url, api_key=settings.api_key, httpx_client=http,
                             max_retries=0, timeout=limit.read)
        current = Session(settings.base_url, settings.api_key, settings.cloudflare_retry_delay,
                          f"{key_variable(config)} (memory_proxy.supermemory.api_key)", client=client)
        holder["session"] = current
        yield current
    finally:
        http.close()
        if cookie_jar.dump(jar) != before:
            try:
                cookie_jar.merge_save(jar, jar_path)
            except OSError:
                pass  # the cookies are an optimisation: a read-only state folder must not fail the command


def all_memories(api: Session, namespace: str, limit: int | None = None) -> list[Any]:
    """The namespace's live memories, newest first, paged through (at most ``limit``)."""
    found: list[Any] = []
    page = 1
    while limit is None or len(found) < limit:  # pages of one size: page N of size S starts at (N-1)*S
        answer = api.call(api.client.list, namespace, "memories", page=page, limit=PAGE, sort="createdAt",
                          order="desc")
        found += answer.memories
        if not answer.memories or page >= answer.pagination.total_pages:
            break
        page += 1
    return found if limit is None else found[:limit]


def valid_memory_id(value: Any) -> bool:
    return isinstance(value, str) and MEMORY_ID.fullmatch(value) is not None


def memory_record(memory: Any) -> dict[str, Any]:
    """One memory as ``--json`` and ``export`` show it (SDK object to plain data)."""
    system = getattr(memory, "system", None)
    created = getattr(system, "created_at", None)
    updated = getattr(system, "updated_at", None)
    return {"id": memory.id, "memory": memory.memory, "metadata": dict(getattr(memory, "metadata", None) or {}),
            "created_at": _iso(created), "updated_at": _iso(updated),
            "is_static": getattr(memory, "is_static", None), "is_forgotten": getattr(memory, "is_forgotten", None)}


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
