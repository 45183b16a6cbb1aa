"""Allowances: a grant's cap that renews every day, week or month, counted in a time zone.

An allowance of 10,000 KRW a day in ``Asia/Seoul`` lets a grant pay at most 10,000 KRW
between two local midnights there. The intervals are a partition of time: every instant
falls in exactly one, found by :func:`interval`. An interval starts at the first instant
whose local date is its first day (a day; the Monday of a week; the 1st of a month), which
is local midnight, or the end of a daylight-saving gap that swallowed midnight. Where the
clocks go back across midnight, the day renews at the first midnight and the repeated hour
belongs to the new day.

A core module: the server counts spending with it, terminals show what is left and when it
renews, and the CLI parses ``--per day:10,000`` with it.

>>> from datetime import UTC, datetime
>>> seoul = zone("Asia/Seoul")
>>> start, end = interval(Period.DAY, seoul, datetime(2026, 12, 2, 5, tzinfo=UTC))  # 14:00 there
>>> start.isoformat(), end.isoformat()
('2026-12-01T15:00:00+00:00', '2026-12-02T15:00:00+00:00')
>>> renewal_text(end, seoul)
'Thu 3 Dec 00:00 Asia/Seoul'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: The zone a terminal declares when the machine's own cannot be named.
FALLBACK_ZONE = "UTC"
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+){0,2}")
#: Files beside the zones in a system's zoneinfo directory: leap-second ("right/") and
#: duplicate ("posix/") trees, which the tzdata package and other machines lack.
_NOT_ZONES = ("right/", "posix/", "posixrules")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Period(StrEnum):
    """How often an allowance renews."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    @property
    def this(self) -> str:
        """``today``, ``this week``, ``this month``: the interval in a sentence."""
        return "today" if self is Period.DAY else f"this {self.value}"


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Seoul``); ValueError naming it if there is none.

    Only names of the IANA database are taken, never a path or a POSIX TZ string."""
    if not _ZONE_NAME.fullmatch(name) or name.startswith(_NOT_ZONES):
        raise ValueError(f"{name[:64]!r} is not an IANA time zone name such as Asia/Seoul")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{name!r} is not a time zone this machine knows (IANA names such as Asia/Seoul, "
            "Europe/Berlin, UTC)"
        ) from None


def _first_day(day: date, period: Period) -> date:
    if period is Period.DAY:
        return day
    if period is Period.WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _step(first: date, period: Period, count: int) -> date:
    """The first day ``count`` periods after (or before, negative) ``first``."""
    if period is Period.DAY:
        return first + timedelta(days=count)
    if period is Period.WEEK:
        return first + timedelta(weeks=count)
    months = first.year * 12 + first.month - 1 + count
    return date(months // 12, months % 12 + 1, 1)


def _begins(first: date, tz: ZoneInfo) -> datetime:
    """The instant (UTC) the interval starting on local date ``first`` begins: its local
    midnight, the earlier one if it happens twice, the end of the gap if it is skipped."""
    return datetime(first.year, first.month, first.day, tzinfo=tz, fold=0).astimezone(UTC)


def interval(period: Period, tz: ZoneInfo, moment: datetime) -> tuple[datetime, datetime]:
    """The interval ``moment`` (aware) falls in, as (start, end) in UTC: start ≤ moment < end."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    first = _first_day(moment.astimezone(tz).date(), period)
    if _begins(first, tz) > moment:  # in a repeated hour before midnight: the new day began
        first = _step(first, period, -1)
    while _begins(_step(first, period, 1), tz) <= moment:
        first = _step(first, period, 1)
    return _begins(first, tz), _begins(_step(first, period, 1), tz)


def interval_us(period: Period, tz: ZoneInfo, now_us: int) -> tuple[int, int]:
    """:func:`interval` in microseconds since the epoch, as the server stores instants."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start, end = interval(period, tz, epoch + timedelta(microseconds=now_us))
    return (start - epoch) // timedelta(microseconds=1), (end - epoch) // timedelta(microseconds=1)


def renewal_text(moment: datetime, tz: ZoneInfo) -> str:
    """``Tue 3 Dec 00:00 Asia/Seoul``: an instant as the zone's wall clock reads it (English
    names whatever the locale)."""
    local = moment.astimezone(tz)
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local:%H:%M} {tz.key}"


def parse_per(text: str) -> tuple[Period, str]:
    """``day:10,000`` → (Period.DAY, ``"10,000"``); the amount is left as typed."""
    period, sep, amount = text.partition(":")
    period = period.strip().lower()
    if not sep or not amount.strip():
        raise ValueError(f"{text!r} is not PERIOD:AMOUNT, e.g. day:10,000 or month:200,000")
    if period not in Period.__members__.values():
        raise ValueError(f"the period must be day, week or month, not {period!r}")
    return Period(period), amount.strip()


def machine_zone(environ: Mapping[str, str], localtime: Path | None = None) -> str | None:
    """This machine's IANA zone name (``TZ`` in ``environ``, else what ``/etc/localtime``
    links to), or None when it cannot be named."""
    localtime = localtime or Path("/etc/localtime")
    candidates = [environ.get("TZ", "").removeprefix(":")]
    try:
        target = str(localtime.resolve(strict=True))
    except OSError:
        target = ""
    if "/zoneinfo/" in target:
        candidates.append(target.split("/zoneinfo/", 1)[1])
    for name in candidates:
        try:
            return zone(name).key
        except ValueError:
            continue
    return None
