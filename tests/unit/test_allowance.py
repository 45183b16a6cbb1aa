"""The interval arithmetic of allowances (nfcpay.allowance): days, weeks from Monday and
calendar months, in a time zone, across daylight-saving changes and month ends."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay import allowance
from nfcpay.allowance import Period, interval, interval_us, parse_per, renewal_text, zone

#: Zones with and without daylight saving, east and west, one with a 45-minute offset, one
#: whose DST change happens at midnight (America/Santiago) and one that skipped a whole day.
ZONES = [
    "UTC",
    "Asia/Seoul",
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "Asia/Kathmandu",
    "Pacific/Apia",
    "Australia/Lord_Howe",
]

instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 12, 31), timezones=st.just(UTC)
)


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(allowance).failed == 0


@given(moment=instants, period=st.sampled_from(Period), name=st.sampled_from(ZONES))
def test_every_instant_falls_in_exactly_one_interval(
    moment: datetime, period: Period, name: str
) -> None:
    tz = zone(name)
    start, end = interval(period, tz, moment)
    assert start <= moment < end
    assert interval(period, tz, start) == (start, end), "the start is in its own interval"
    assert interval(period, tz, end)[0] == end, "the next interval starts where this one ends"
    assert interval(period, tz, end - timedelta(microseconds=1)) == (start, end)


@given(a=instants, b=instants, period=st.sampled_from(Period), name=st.sampled_from(ZONES))
def test_interval_starts_are_monotone(a: datetime, b: datetime, period: Period, name: str) -> None:
    tz = zone(name)
    early, late = sorted((a, b))
    assert interval(period, tz, early)[0] <= interval(period, tz, late)[0]


@given(moment=instants, name=st.sampled_from(ZONES))
def test_intervals_begin_on_the_first_local_day(moment: datetime, name: str) -> None:
    tz = zone(name)
    week = interval(Period.WEEK, tz, moment)[0].astimezone(tz)
    month = interval(Period.MONTH, tz, moment)[0].astimezone(tz)
    assert week.weekday() == 0, "weeks start on Monday"
    assert month.day == 1
    assert (week.hour, week.minute) in {(0, 0), (1, 0)}  # 01:00 only where a gap ate midnight


def _utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


def test_a_day_in_seoul_runs_from_midnight_to_midnight_there() -> None:
    start, end = interval(Period.DAY, zone("Asia/Seoul"), _utc(2026, 12, 2, 5))
    assert (start, end) == (_utc(2026, 12, 1, 15), _utc(2026, 12, 2, 15))


def test_berlin_days_around_daylight_saving_are_23_and_25_hours() -> None:
    berlin = zone("Europe/Berlin")
    spring = interval(Period.DAY, berlin, _utc(2026, 3, 29, 12))
    autumn = interval(Period.DAY, berlin, _utc(2026, 10, 25, 12))
    assert spring[1] - spring[0] == timedelta(hours=23)
    assert autumn[1] - autumn[0] == timedelta(hours=25)
    assert renewal_text(spring[0], berlin) == "Sun 29 Mar 00:00 Europe/Berlin"


def test_a_gap_at_midnight_starts_the_day_when_the_clocks_resume() -> None:
    """Santiago skipped 00:00-01:00 on 2026-09-06: the day starts at 01:00 local time."""
    santiago = zone("America/Santiago")
    start, end = interval(Period.DAY, santiago, _utc(2026, 9, 6, 12))
    assert renewal_text(start, santiago) == "Sun 6 Sep 01:00 America/Santiago"
    assert end - start == timedelta(hours=23)


@pytest.mark.parametrize(
    ("moment", "first", "after"),
    [
        (_utc(2028, 2, 29, 12), _utc(2028, 2, 1), _utc(2028, 3, 1)),
        (_utc(2026, 12, 31, 23, 59), _utc(2026, 12, 1), _utc(2027, 1, 1)),
        (_utc(2027, 1, 1), _utc(2027, 1, 1), _utc(2027, 2, 1)),
    ],
)
def test_months_are_calendar_months(moment: datetime, first: datetime, after: datetime) -> None:
    assert interval(Period.MONTH, zone("UTC"), moment) == (first, after)


def test_weeks_start_on_monday() -> None:
    start, end = interval(Period.WEEK, zone("UTC"), _utc(2026, 12, 6, 23))  # a Sunday
    assert (start, end) == (_utc(2026, 11, 30), _utc(2026, 12, 7))


def test_microseconds_agree_with_datetimes() -> None:
    start, end = interval_us(Period.DAY, zone("UTC"), 86_400_000_000 + 5)
    assert (start, end) == (86_400_000_000, 172_800_000_000)


@pytest.mark.parametrize(
    ("text", "period", "amount"),
    [("day:10,000", Period.DAY, "10,000"), ("Week: 12.50", Period.WEEK, "12.50")],
)
def test_per_is_a_period_and_an_amount(text: str, period: Period, amount: str) -> None:
    assert parse_per(text) == (period, amount)


@pytest.mark.parametrize(
    ("text", "why"),
    [("10,000", "PERIOD:AMOUNT"), ("day:", "PERIOD:AMOUNT"), ("year:5", "day, week or month")],
)
def test_a_per_without_a_period_or_amount_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_per(text)


@pytest.mark.parametrize(
    "name",
    ["Mars/Olympus", "../../etc/passwd", "", "EST5EDT,M3.2.0", "America", "right/Asia/Seoul"],
)
def test_an_unknown_zone_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match="time zone"):
        zone(name)


def test_the_machine_zone_is_named_from_tz_or_localtime(tmp_path: Path) -> None:
    assert allowance.machine_zone({"TZ": ":Asia/Seoul"}, tmp_path / "none") == "Asia/Seoul"
    link = tmp_path / "localtime"
    link.symlink_to("/usr/share/zoneinfo/Europe/Berlin")
    assert allowance.machine_zone({}, link) == "Europe/Berlin"
    assert allowance.machine_zone({"TZ": "nowhere"}, tmp_path / "none") is None
