"""The rate limiter: one bucket per client."""

from memory_proxy.server.ratelimit import RateLimiter


def test_rate_limiter_buckets_are_per_client_and_refill():
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one per second, burst of 60
    assert all(limiter.acquire("a") == 0 for _ in range(60))
    wait = limiter.acquire("a")
    assert 0 < wait <= 1.0 and limiter.retry_after(wait) == "1"
    assert limiter.acquire("b") == 0  # another client is not slowed
    now[0] += 1.0
    assert limiter.acquire("a") == 0
