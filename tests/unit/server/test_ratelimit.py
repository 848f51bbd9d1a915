"""The rate limiter: one bucket per client."""

from memory_proxy.server.ratelimit import SWEEP_ABOVE, RateLimiter


def test_rate_limiter_buckets_are_per_client_and_refill():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one per second, burst of 60
    assert all(limiter.acquire("a") == 0 for _ in range(60))
    wait = limiter.acquire("a")
    assert 0 < wait <= 1.0 and limiter.retry_after(wait) == "1"
    assert limiter.acquire("b") == 0  # another client is not slowed
    now[0] += 1.0
    assert limiter.acquire("a") == 0


def test_refilled_buckets_are_forgotten_so_changing_ids_cannot_grow_them():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    for i in range(SWEEP_ABOVE + 1):  # a client that changes its id on every request
        assert limiter.acquire(f"id-{i}") == 0
    assert limiter.acquire("busy") == 0 and limiter.acquire("busy") == 0
    now[0] = 1.5  # every bucket got a token and a half back: full again, except busy's (58 + 1.5)
    limiter.acquire("another")
    assert set(limiter.buckets) == {"busy", "another"}
    assert limiter.acquire("busy") == 0 and limiter.buckets["busy"][0] == 58.5
