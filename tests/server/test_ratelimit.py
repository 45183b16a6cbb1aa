"""The token buckets behind the API's rate limits, on a clock the test moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay.server import ratelimit
from nfcpay.server.ratelimit import TokenBuckets, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_granted_then_refused_with_the_wait_until_the_next_token() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [buckets.take("t_a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("t_a") == pytest.approx(0.5)  # one token per 0.5 s
    assert buckets.take("t_b") == 0.0  # another key has its own bucket
    clock.now += 0.5
    assert buckets.wait("t_a") == 0.0 and buckets.take("t_a") == 0.0
    assert buckets.take("t_a") == pytest.approx(0.5)


def test_a_bucket_refills_to_its_burst_and_no_further() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=2, clock=clock)
    buckets.take("k")
    clock.now += 3600
    assert [buckets.take("k") for _ in range(3)][:2] == [0.0, 0.0]
    assert buckets.take("k") > 0


def test_wait_does_not_take_a_token() -> None:
    buckets = TokenBuckets(rate=1.0, burst=1, clock=Clock())
    assert buckets.wait("k") == 0.0 and buckets.wait("k") == 0.0
    assert buckets.take("k") == 0.0 and buckets.wait("k") == pytest.approx(1.0)


def test_random_keys_cannot_grow_memory_forever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_PRUNE_ABOVE", 100)
    clock = Clock()
    buckets = TokenBuckets(rate=10.0, burst=1, clock=clock)
    for n in range(1000):
        buckets.take(n)
        clock.now += 0.2  # every earlier bucket has refilled by the time the next key comes
    assert len(buckets._buckets) <= 101


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBuckets(rate=0, burst=5, clock=Clock())
    with pytest.raises(ValueError, match="burst >= 1"):
        TokenBuckets(rate=1, burst=0, clock=Clock())


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_retry_after_is_a_whole_second_at_least_one(seconds: float) -> None:
    after = retry_after(seconds)
    assert isinstance(after, int) and after >= 1 and after >= seconds
