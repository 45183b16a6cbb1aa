"""Token buckets keyed by terminal (or client address): the per-process API rate limits.

Each key owns a bucket of ``burst`` tokens refilled at ``rate`` per second; a request takes
one token or is refused with the number of seconds until one is available (the 429
``Retry-After``). Limits are per server process: N processes behind a load balancer allow
up to N times the rate, which is fine for a flood guard and needs no shared state.

Memory is bounded: at most ``max_keys`` buckets are kept (:meth:`TokenBuckets._make_room`).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

#: Default bound on the buckets one :class:`TokenBuckets` keeps (a few MB at most).
MAX_KEYS = 10_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """Thread-safe token buckets, one per key, at most ``max_keys`` of them."""

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float],
        *,
        max_keys: int = MAX_KEYS,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        if max_keys < 1:
            raise ValueError("token buckets need max_keys >= 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        #: Least recently updated first: every update moves its key to the end.
        self._buckets: dict[Hashable, _Bucket] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def _refilled(self, key: Hashable, now: float) -> _Bucket:
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._make_room(now)
            bucket = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        self._buckets[key] = bucket
        return bucket

    def _make_room(self, now: float) -> None:
        """Free at least a tenth of ``max_keys``, so this O(n) pass runs once per n/10 keys.

        Buckets that refilled completely go first: a full bucket and a missing one behave the
        same, so nothing is lost. If that is not enough (keys arriving faster than buckets
        refill: someone rotating addresses or claimed ids), the least recently updated
        buckets go next. That errs towards allowing: a forgotten bucket comes back full, so
        its key may again spend up to ``burst`` before it is refused, and never the other
        way (no one is refused because of a bucket that was dropped). Acceptable: a key is
        forgotten only after ``max_keys // 10`` other keys were used since its last request,
        and whoever can bring that many new keys already has that many fresh budgets; a
        key in steady use (a forger who keeps trying) stays at the recent end and stays
        throttled.
        """
        full = [
            key
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        excess = len(self._buckets) - (self.max_keys - max(1, self.max_keys // 10))
        for key in list(itertools.islice(self._buckets, max(0, excess))):
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
