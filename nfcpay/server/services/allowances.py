"""A grant's allowance as its row and the server's clock make it: what is left of the current
interval, and when the next one starts. Pure: a row and an instant in, values out.

A grant row keeps what payments took (``interval_spent``) in the interval the last of them fell
in (starting ``interval_start``). Nothing is reset by time: an interval that began after that
start has had nothing spent yet, and the next payment in it writes its own start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from nfcpay import allowance
from nfcpay.allowance import Period
from nfcpay.server.store import Row

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Allowance:
    """A grant's allowance as of one instant."""

    period: Period
    amount: int
    zone: ZoneInfo
    #: The current interval, microseconds since the epoch (server time): start ≤ now < end.
    start_us: int
    end_us: int
    #: Spent in the current interval.
    spent: int

    @property
    def left(self) -> int:
        return self.amount - self.spent

    @property
    def renews(self) -> str:
        """``Thu 3 Dec 00:00 Asia/Seoul``: when the next interval starts, on the zone's clock."""
        return allowance.renewal_text(_EPOCH + timedelta(microseconds=self.end_us), self.zone)

    def after(self, amount: int) -> tuple[int, int]:
        """``(interval_start, interval_spent)`` to store once a payment took ``amount``."""
        return self.start_us, self.spent + amount


def of(row: Row, now_us: int) -> Allowance | None:
    """Grant ``row``'s allowance at ``now_us``; None for a grant without one."""
    if row["allowance_period"] is None:
        return None
    period, tz = Period(row["allowance_period"]), ZoneInfo(row["allowance_zone"])
    start, end = allowance.interval_us(period, tz, now_us)
    spent = row["interval_spent"] if row["interval_start"] == start else 0
    return Allowance(period, row["allowance_amount"], tz, start, end, spent)
