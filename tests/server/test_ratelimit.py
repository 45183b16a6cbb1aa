"""The token buckets behind the API's rate limits, on a clock the test moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


def test_buckets_that_refilled_are_forgotten_first() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10.0, burst=1, clock=clock, max_keys=100)
    for n in range(1000):
        buckets.take(n)
        clock.now += 0.2  # every earlier bucket has refilled by the time the next key comes
    assert len(buckets) <= 100


def test_keys_rotating_faster_than_buckets_refill_cannot_grow_memory() -> None:
    """An attacker naming a new address or terminal in every request keeps every bucket
    non-full: the bound holds anyway."""
    clock = Clock()
    buckets = TokenBuckets(rate=0.1, burst=3, clock=clock, max_keys=100)
    for n in range(10_000):
        buckets.take(("203.0.113.9", f"t_{n}"))
    assert len(buckets) <= 100


def test_a_key_in_steady_use_stays_throttled_while_others_are_forgotten() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=0.1, burst=2, clock=clock, max_keys=100)
    forger = ("198.51.100.7", "t_victim")
    assert buckets.take(forger) == buckets.take(forger) == 0.0
    for n in range(1000):
        buckets.take(n)
        assert buckets.take(forger) > 0, f"the forger got a fresh budget after {n} other keys"
    assert len(buckets) <= 100


def test_full_buckets_are_dropped_before_any_that_still_holds_a_debt() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1.0, burst=1, clock=clock, max_keys=10)
    for n in range(5):
        buckets.take(f"spent-{n}")  # oldest, and still empty
    for n in range(5):
        buckets.wait(f"idle-{n}")  # newer, but full
    buckets.take("newcomer")
    assert all(buckets.wait(f"spent-{n}") > 0 for n in range(5)), "debts were kept"
    assert len(buckets) <= 10


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBuckets(rate=0, burst=5, clock=Clock())
    with pytest.raises(ValueError, match="burst >= 1"):
        TokenBuckets(rate=1, burst=0, clock=Clock())
    with pytest.raises(ValueError, match="max_keys >= 1"):
        TokenBuckets(rate=1, burst=1, clock=Clock(), max_keys=0)


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_retry_after_is_a_whole_second_at_least_one(seconds: float) -> None:
    after = retry_after(seconds)
    assert isinstance(after, int) and after >= 1 and after >= seconds
