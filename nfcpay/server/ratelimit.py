"""Token buckets keyed by terminal (or client address): the per-process API rate limits.

Each key owns a bucket of ``burst`` tokens refilled at ``rate`` per second; a request takes
one token or is refused with the number of seconds until one is available (the 429
``Retry-After``). Limits are per server process: N processes behind a load balancer allow
up to N times the rate, which is fine for a flood guard and needs no shared state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Above this many tracked keys, buckets that refilled completely are forgotten (a full
#: bucket and a missing one behave the same), so random keys cannot grow memory forever.
_PRUNE_ABOVE = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Thread-safe token buckets, one per key."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[Hashable, _Bucket] = {}
        self._lock = threading.Lock()

    def _refilled(self, key: Hashable, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= _PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]

    def take(self, key: Hashable) -> float:
        """Take a token: 0.0 if granted, else the seconds until one will be available."""
        with self._lock:
            bucket = self._refilled(key, self._clock())
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def wait(self, key: Hashable) -> float:
        """Like :meth:`take` without taking: 0.0 if a token is available."""
        with self._lock:
            bucket = self._refilled(key, self._clock())
            return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / self.rate


def retry_after(seconds: float) -> int:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return max(1, math.ceil(seconds))
