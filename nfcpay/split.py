"""Splitting a bill into shares: integer minor units only, every rounding rule deterministic.

The collector (the target terminal that pays at the counter) is share 0 of every
:class:`Split`; members follow in the order they were planned. Whatever the rule, the
shares add up to the total exactly.

>>> equal_split(100_000, 3)                      # 100,000 KRW among three people
[33334, 33333, 33333]
>>> plan_equal(100_000, members=2).member_shares  # the collector keeps the extra won
(33333, 33333)
>>> capped_split(90_000, [20_000, None, None])   # member 0 pays at most 20,000
[20000, 35000, 35000]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nfcpay.errors import MoneyError

#: Most members one bill can have (a means record bundles at most 8 grants).
MAX_MEMBERS = 8
#: Room left under "no maximum" (more than any amount).
_UNCAPPED = 10**18


@dataclass(frozen=True, slots=True)
class Split:
    """A bill's total, the collector's own share and each member's share (minor units)."""

    total: int
    collector_share: int
    member_shares: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.collector_share < 0 or any(share <= 0 for share in self.member_shares):
            raise MoneyError("every member share must be positive and the collector's ≥ 0")
        if self.collector_share + sum(self.member_shares) != self.total:
            raise MoneyError("the shares do not add up to the total")


def equal_split(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares differing by at most one minor unit; the first
    ``total % parts`` shares carry the extra unit."""
    _check_total(total)
    if parts < 1:
        raise MoneyError("a bill is split among at least one person")
    if parts > total:
        raise MoneyError(f"{total} minor units cannot give {parts} people a share each")
    base, extra = divmod(total, parts)
    return [base + 1 if i < extra else base for i in range(parts)]


def plan_equal(total: int, members: int) -> Split:
    """The collector and ``members`` others pay equal shares (the collector takes the
    rounding remainder first)."""
    _check_members(members)
    shares = equal_split(total, members + 1)
    return Split(total, shares[0], tuple(shares[1:]))


def plan_fixed(total: int, share: int, members: int) -> Split:
    """Every member pays ``share``; the collector pays what is left (may be zero)."""
    _check_members(members)
    return plan_explicit(total, [share] * members)


def plan_explicit(total: int, shares: Sequence[int]) -> Split:
    """Members pay exactly ``shares``; the collector pays the rest, which must not be negative."""
    _check_total(total)
    _check_members(len(shares))
    if any(share <= 0 for share in shares):
        raise MoneyError("every member share must be positive")
    rest = total - sum(shares)
    if rest < 0:
        raise MoneyError(f"the member shares add up to {sum(shares)}, more than the total {total}")
    return Split(total, rest, tuple(shares))


def capped_split(total: int, maximums: Sequence[int | None]) -> list[int]:
    """Equal shares of ``total`` where share *i* is at most ``maximums[i]`` (None: no cap).

    What a capped person cannot pay is spread equally over the others, again and again
    until it fits (water filling); remainders go to the earliest uncapped shares.
    A zero share is allowed for a person whose maximum is 0.
    """
    _check_total(total)
    if not maximums:
        raise MoneyError("a bill is split among at least one person")
    if any(cap is not None and cap < 0 for cap in maximums):
        raise MoneyError("a maximum cannot be negative")
    if all(cap is not None for cap in maximums) and sum(c or 0 for c in maximums) < total:
        raise MoneyError(f"the maximums add up to less than the total {total}")
    shares: list[int] = [0] * len(maximums)
    open_ = list(range(len(maximums)))
    left = total
    while left:
        base, extra = divmod(left, len(open_))
        first = sorted(open_, key=lambda i: maximums[i] is not None)  # uncapped first
        offer = {i: base + (1 if k < extra else 0) for k, i in enumerate(first)}
        capped = [i for i in open_ if _room(maximums[i], shares[i]) < offer[i]]
        if not capped:
            for i in open_:
                shares[i] += offer[i]
            break
        for i in capped:
            room = _room(maximums[i], shares[i])
            shares[i] += room
            left -= room
            open_.remove(i)
    return shares


def within_maximum(share: int, maximum: int | None) -> bool:
    """Whether a member who pays at most ``maximum`` accepts ``share``."""
    return maximum is None or share <= maximum


def _room(cap: int | None, taken: int) -> int:
    return _UNCAPPED if cap is None else cap - taken


def _check_total(total: int) -> None:
    if isinstance(total, bool) or not isinstance(total, int) or total <= 0:
        raise MoneyError(f"a bill total must be a positive number of minor units, not {total!r}")


def _check_members(members: int) -> None:
    if not 0 <= members <= MAX_MEMBERS:
        raise MoneyError(f"a bill has 0 to {MAX_MEMBERS} members besides the collector")
