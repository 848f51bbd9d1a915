"""What one running memory proxy holds: its config, its two HTTP sessions and its counters.

Created in the app's lifespan (see ``app.py``) and handed to every request, so there is
no module-level client or singleton anywhere.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from memory_proxy.config.model import Config
from memory_proxy.server.front_door import FrontDoor
from memory_proxy.server.holding import Holding
from memory_proxy.server.metrics import Metrics
from memory_proxy.server.outcome import Outcome
from memory_proxy.server.ratelimit import RateLimiter
from memory_proxy.server.tracing import Tracing
from memory_proxy.usage.record import UsageLog, from_litellm


@dataclass
class Runtime:
    config: Config
    litellm: httpx.AsyncClient  # ingress -> LiteLLM; never keeps cookies (they would cross clients)
    supermemory: httpx.AsyncClient  # egress -> Supermemory; one long-lived cookie-persistent session
    litellm_url: httpx.URL
    master_key: str
    egress_secret: str
    cookie_jar_path: Path | None
    door: FrontDoor
    started: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    supermemory_errors: int = 0
    cloudflare_retries: int = 0
    _targets: dict[bytes, httpx.URL] = field(default_factory=dict, repr=False)  # parsing a URL costs ~50 us
    limiter: RateLimiter | None = None
    holding: Holding = field(init=False, repr=False)  # requests waiting for a starting LiteLLM
    stopping: bool = False  # the server has started to stop (stop())
    usage: UsageLog | None = None  # the usage record's queue; None when memory_proxy.usage.enabled is false
    usage_reader: Callable[[], Any] | None = None  # opens a read-only store (dashboard)
    tracing: Tracing | None = None  # None: tracing off (memory_proxy/server/tracing.py)
    memory_api: Any = None  # the memory page's Supermemory client, made on first use (server/memory_page.py)
    metrics: Metrics = field(init=False, repr=False)
    backed: frozenset[str] = field(init=False, repr=False)  # the Supermemory-backed model groups
    # request id -> client id of requests LiteLLM may still report (its callback may come
    # before or after the answer ends); bounded, oldest first out.
    _callers: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.backed = frozenset(self.config.supermemory_groups)
        self.holding = Holding(self.litellm_url, self.config.proxy.startup_wait, self.config.proxy.startup_queue)
        if self.config.proxy.requests_per_minute:
            self.limiter = RateLimiter(self.config.proxy.requests_per_minute)
        self.metrics = Metrics(self)
        self.metrics.inputs["held_requests"] = lambda: self.holding.waiting

    def stop(self) -> None:
        """The server starts to stop (``serve.py``): held requests answer at once, and a request
        the server's shutdown cancels while it waits for LiteLLM's answer gets a 503 (``ingress.py``)."""
        self.stopping = True
        self.holding.stop()

    def finish(self, outcome: Outcome) -> None:
        """A request ended (both backends): count it, log its line, observe its metrics, end its
        span and queue the ingress's half of its usage record."""
        if outcome.resolved_by != "refused":
            self.count(outcome.client_id, error=outcome.failed)
        self.metrics.observe(outcome)
        outcome.log()
        if outcome.span is not None:
            self.tracing.end_request(outcome.span, outcome)
        if self.usage is not None:
            self.usage.put(outcome.usage_fields())

    def expect_report(self, request_id: str, client_id: str) -> None:
        """A request goes to LiteLLM: its report (``litellm_report``) will name this client."""
        callers = self._callers
        callers[request_id] = client_id
        if len(callers) > 4096:
            del callers[next(iter(callers))]

    def litellm_report(self, payload: object) -> None:
        """LiteLLM's report of one call (its usage callback's payload, or SDK mode's logger):
        tokens and cost for the metrics and LiteLLM's half of the usage record."""
        fields = from_litellm(payload)
        if fields is None:
            return
        self.metrics.observe_usage(self._callers.pop(fields["request_id"], ""), fields)
        if self.usage is not None:
            self.usage.put(fields)

    def count(self, user_id: str, *, error: bool) -> None:
        self.requests[user_id] += 1
        if error:
            self.errors[user_id] += 1

    def litellm_target(self, raw_path: bytes) -> httpx.URL:
        """LiteLLM's URL for a raw path (with query), kept byte for byte."""
        url = self._targets.get(raw_path)
        if url is None:
            prefix = self.litellm_url.raw_path.rstrip(b"/")
            url = self.litellm_url.copy_with(raw_path=prefix + raw_path)
            if len(self._targets) < 1024:
                self._targets[raw_path] = url
        return url
