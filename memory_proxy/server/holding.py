"""Requests that found LiteLLM's port closed (starting or restarting) wait here for it.

Only a request that never reached LiteLLM is held: its connection was refused, so not a
byte of it was sent, and sending it once LiteLLM listens again sends it once. A request
LiteLLM may have seen (a connection that closed under it, a stream cut when it died) is
never sent again: it keeps today's 503 or error event. A streamed request body (not JSON)
that found the port closed was not read yet either: the ingress reads it into memory first
(bounded by ``max_body_bytes``), and from then on it waits like any other.

One probe task per wait (not one per request) tries to connect every ``PROBE_EVERY``
seconds and wakes every waiter at the first success; it ends when nobody waits any more.
Each waiter watches its own client, so a client that leaves stops waiting at once and
leaves no task behind. When the server starts to stop (``stop``), every waiter gets its 503 at
once, instead of being cancelled by the server's shutdown a few seconds later (a plain-text
500 and a traceback). Nothing here runs while LiteLLM answers: the relay calls ``send``
only after a refused connection.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from starlette.types import Receive

from memory_proxy.server.relay import send_upstream

log = logging.getLogger("memory_proxy")

PROBE_EVERY = 0.05  # seconds between connection attempts while someone waits
STOPPING = "the memory proxy is stopping and LiteLLM was not back yet; retry shortly"


class NotHeld(Exception):
    """Past ``startup_queue`` or ``startup_wait``: the caller answers 503; ``message`` says which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientLeft(Exception):
    """The client went away while its request waited."""


class Holding:
    """The waiting room in front of one LiteLLM (one per ``Runtime``)."""

    def __init__(self, url: httpx.URL, wait: float, limit: int) -> None:
        self.host = url.host
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.wait = wait
        self.limit = limit
        self.waiting = 0  # shown by /health and `status`
        self._opened: asyncio.Future | None = None  # set when a probe connected
        self._prober: asyncio.Task | None = None
        self.stopping = False
        self._stopped: asyncio.Future | None = None  # set by stop(): the waiters answer at once

    def stop(self) -> None:
        """The server stops: requests waiting now, and any that come, are not held (503 at once)."""
        self.stopping = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def refused(self, exc: Exception) -> bool:
        """A refused connection (nothing was sent, not a byte of the body read) while requests may wait."""
        return isinstance(exc, httpx.ConnectError) and self.wait > 0 and self.limit > 0

    def takes(self, exc: Exception, request: httpx.Request) -> bool:
        """A refused connection of a request whose body is in memory."""
        return self.refused(exc) and isinstance(request.stream, httpx.ByteStream)

    async def send(self, client: httpx.AsyncClient, request: httpx.Request, receive: Receive) -> httpx.Response:
        """Send ``request`` as soon as LiteLLM accepts connections again.

        Raises NotHeld past a bound, ClientLeft when the client goes away first, and
        whatever the send raises but a refused connection (which waits on)."""
        if self.stopping:
            raise NotHeld(STOPPING)
        if self.waiting >= self.limit:
            raise NotHeld(f"LiteLLM is not reachable (starting or restarting?) and {self.waiting} requests already "
                          "wait for it (memory_proxy.startup_queue); retry shortly")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        self.waiting += 1
        left = loop.create_task(_client_leaves(receive))
        if self._stopped is None:
            self._stopped = loop.create_future()
        try:
            while True:
                opened = self._opened_future(loop)
                remaining = deadline - loop.time()
                done = await asyncio.wait((opened, left, self._stopped), timeout=remaining,
                                          return_when=asyncio.FIRST_COMPLETED)
                if left in done[0]:
                    raise ClientLeft
                if self._stopped in done[0]:
                    raise NotHeld(STOPPING)
                if opened not in done[0]:
                    raise NotHeld(f"LiteLLM did not come back within memory_proxy.startup_wait ({self.wait:g} s); "
                                  "retry shortly")
                try:
                    return await send_upstream(client, request)
                except httpx.ConnectError:
                    if loop.time() >= deadline:
                        raise
                    # refused again (it went away again just after the probe): wait on
        finally:
            self.waiting -= 1
            left.cancel()

    def _opened_future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        if self._opened is None or self._opened.done():
            self._opened = loop.create_future()
        if self._prober is None:
            self._prober = loop.create_task(self._probe(self._opened))
        return self._opened

    async def _probe(self, opened: asyncio.Future) -> None:
        try:
            while self.waiting and not opened.done():
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1.0)
                except (OSError, TimeoutError):
                    await asyncio.sleep(PROBE_EVERY)
                    continue
                writer.close()
                if not opened.done():
                    opened.set_result(None)
        finally:
            self._prober = None


async def _client_leaves(receive: Receive) -> None:
    """Returns when the client disconnects (the request's body has been read, or has none)."""
    while (await receive())["type"] != "http.disconnect":
        pass
