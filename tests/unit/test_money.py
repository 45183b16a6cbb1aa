from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay.errors import MoneyError
from nfcpay.money import CURRENCY_EXPONENTS, Money, format_minor, parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12000", "KRW", 12000),
        ("12,000", "KRW", 12000),
        ("1,234,567", "KRW", 1234567),
        ("12.50", "USD", 1250),
        ("12.5", "USD", 1250),
        ("12", "USD", 1200),
        ("12.50 USD", "USD", 1250),
        (" 7 ", "KRW", 7),
        ("0.005", "KWD", 5),
    ],
)
def test_parse_amount_accepts_what_people_type(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == Money(minor, currency)


@pytest.mark.parametrize(
    ("text", "currency", "fragment"),
    [
        ("12.5", "KRW", "no minor unit"),
        ("1.234", "USD", "2 decimal places"),
        ("-1", "KRW", "cannot read"),
        ("1e3", "KRW", "cannot read"),
        ("", "KRW", "cannot read"),
        ("1,00", "KRW", "cannot read"),
        ("12 EUR", "USD", "in EUR, but this works in USD"),
        ("1 2 3", "KRW", "cannot read"),
        ("5", "XXX", "unknown currency"),
        ("9" * 5000, "KRW", "5000 characters long"),
        ("\uff11\uff12,\uff10\uff10\uff10", "KRW", "cannot read"),  # fullwidth 12,000
        ("\u0661\u0662\u0663", "KRW", "cannot read"),  # Arabic-Indic 123
    ],
)
def test_parse_amount_refuses_with_reason(text: str, currency: str, fragment: str) -> None:
    with pytest.raises(MoneyError, match=fragment):
        parse_amount(text, currency)


def test_money_refuses_floats_bools_and_out_of_range() -> None:
    with pytest.raises(MoneyError):
        Money(1.5, "KRW")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True, "KRW")
    with pytest.raises(MoneyError):
        Money(-1, "KRW")
    with pytest.raises(MoneyError):
        Money(10**16, "KRW")


def test_format_minor() -> None:
    assert format_minor(12000, "KRW") == "12,000 KRW"
    assert format_minor(1250, "USD") == "12.50 USD"
    assert format_minor(-5, "USD") == "-0.05 USD"
    assert str(Money(5, "KWD")) == "0.005 KWD"


@given(st.integers(0, 10**15), st.sampled_from(sorted(CURRENCY_EXPONENTS)))
def test_format_then_parse_round_trips(minor: int, currency: str) -> None:
    assert parse_amount(format_minor(minor, currency), currency).minor == minor
