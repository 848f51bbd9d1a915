"""Per-client rate limit (``memory_proxy.requests_per_minute``; off by default).

One token bucket per resolved client id, so one client's burst never slows another:
the bucket holds up to a minute's worth of requests and refills continuously. A client names
its own id, so this reins in a runaway client, not a hostile one (which can change ids); the
buckets that have refilled are forgotten, so changing ids cannot grow them without bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

SWEEP_ABOVE = 4096  # buckets kept before the refilled ones are looked for


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, last refill time)
        self._next_sweep = 0.0

    def acquire(self, client_id: str) -> float:
        """Take one request for ``client_id``: 0 if allowed, else the seconds to wait."""
        now = self.clock()
        if len(self.buckets) > SWEEP_ABOVE and now >= self._next_sweep:
            self._forget_full(now)
        tokens, last = self.buckets.get(client_id, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self.buckets[client_id] = (tokens - 1, now)
            return 0.0
        self.buckets[client_id] = (tokens, now)
        return (1 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (a full bucket is what an unknown id gets),
        at most once a second: the buckets left are the ids seen within about a minute."""
        self._next_sweep = now + 1.0
        capacity, rate = self.capacity, self.rate
        self.buckets = {k: (tokens, last) for k, (tokens, last) in self.buckets.items()
                        if tokens + (now - last) * rate < capacity}

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
