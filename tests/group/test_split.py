"""The splitting helpers: exact sums, deterministic remainders, maximums respected."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from nfcpay.errors import MoneyError
from nfcpay.split import (
    MAX_MEMBERS,
    Split,
    capped_split,
    equal_split,
    plan_equal,
    plan_explicit,
    plan_fixed,
    within_maximum,
)

totals = st.integers(1, 10**12)


def test_krw_100000_among_three() -> None:
    assert equal_split(100_000, 3) == [33_334, 33_333, 33_333]
    split = plan_equal(100_000, members=2)
    assert (split.collector_share, split.member_shares) == (33_334, (33_333, 33_333))


def test_fixed_and_explicit_shares_leave_the_rest_to_the_collector() -> None:
    assert plan_fixed(100_000, 30_000, 3) == Split(100_000, 10_000, (30_000,) * 3)
    assert plan_explicit(100_000, [30_000, 25_000]).collector_share == 45_000
    assert plan_explicit(55_000, [30_000, 25_000]).collector_share == 0


@pytest.mark.parametrize(
    ("call", "why"),
    [
        (lambda: equal_split(0, 2), "positive"),
        (lambda: equal_split(2, 3), "cannot give"),
        (lambda: plan_explicit(10, [6, 5]), "more than the total"),
        (lambda: plan_explicit(10, [0, 5]), "positive"),
        (lambda: plan_fixed(10, 1, MAX_MEMBERS + 1), "members"),
        (lambda: capped_split(100, [10, 20]), "less than the total"),
        (lambda: capped_split(100, [-1, None]), "negative"),
        (lambda: Split(10, 1, (5, 5)), "add up"),
    ],
)
def test_bad_splits_are_refused(call: object, why: str) -> None:
    with pytest.raises(MoneyError, match=why):
        call()  # type: ignore[operator]


@given(totals, st.integers(1, MAX_MEMBERS + 1))
def test_equal_split_adds_up_and_differs_by_at_most_one(total: int, parts: int) -> None:
    if parts > total:
        return
    shares = equal_split(total, parts)
    assert sum(shares) == total and len(shares) == parts
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)  # the extra units go to the first shares
    assert shares == equal_split(total, parts)  # deterministic


@given(
    totals,
    st.lists(st.one_of(st.none(), st.integers(0, 10**12)), min_size=1, max_size=MAX_MEMBERS),
)
@example(total=1, maximums=[1, 1])  # CI's hypothesis run found it: one of the two pays it all
def test_capped_split_respects_every_maximum(total: int, maximums: list[int | None]) -> None:
    try:
        shares = capped_split(total, maximums)
    except MoneyError:
        assert all(m is not None for m in maximums)
        assert sum(m or 0 for m in maximums) < total
        return
    assert sum(shares) == total
    assert all(within_maximum(s, m) for s, m in zip(shares, maximums, strict=True))
    # Nobody under their maximum pays more than one unit above anyone else who could pay more.
    free = [s for s, m in zip(shares, maximums, strict=True) if m is None or s < m]
    if free:
        assert max(free) - min(free) <= 1
        # A share at its maximum pays no more than the free ones but for one remainder unit,
        # which can take it to its maximum: with total 1 and two people capped at 1, someone
        # pays the unit and is then at their maximum, the other pays 0 and stays free.
        assert all(s <= min(free) + 1 for s in shares)


def test_doctests() -> None:
    import doctest

    import nfcpay.split as module

    assert doctest.testmod(module).failed == 0


def test_a_remainder_unit_goes_to_an_uncapped_share_first() -> None:
    """Found by hypothesis: the one unit of 1 among a capped and an uncapped person went to
    the capped one, against the docstring (and the fairness property above)."""
    assert capped_split(1, [1, None]) == [0, 1]
    assert capped_split(5, [3, None, 3]) == [2, 2, 1]
