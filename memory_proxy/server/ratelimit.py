"""Per-client rate limit (``memory_proxy.requests_per_minute``; off by default).

One token bucket per resolved client id, so one client's burst never slows another:
the bucket holds up to a minute's worth of requests and refills continuously.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill time)

    def acquire(self, client_id: str) -> float:
        """Take one request for ``client_id``: 0 if allowed, else the seconds to wait."""
        now = self.clock()
        tokens, last = self.buckets.get(client_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[client_id] = (tokens - 1, now)
            return 0.0
        self.buckets[client_id] = (tokens, now)
        return (1 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
