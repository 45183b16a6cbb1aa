"""Money as integer minor units plus an ISO 4217 currency code. Never floats.

>>> parse_amount("12,000", "KRW")
Money(minor=12000, currency='KRW')
>>> str(parse_amount("12.50", "USD"))
'12.50 USD'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nfcpay.errors import MoneyError

#: Minor-unit exponent per supported currency (ISO 4217).
CURRENCY_EXPONENTS: dict[str, int] = {
    "KRW": 0,
    "JPY": 0,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CNY": 2,
    "SGD": 2,
    "AUD": 2,
    "CAD": 2,
    "CHF": 2,
    "KWD": 3,
}

DEFAULT_CURRENCY = "KRW"
#: Upper bound on any single amount, in minor units: keeps every figure inside a signed
#: 64-bit column and far below anything a sandbox issuer should ever see.
MAX_MINOR = 10**15

#: ASCII digits only: ``\d`` alone would read fullwidth or Arabic-Indic digits as numbers.
_AMOUNT_RE = re.compile(r"^(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?$", re.ASCII)
#: Longer input than this cannot be an amount under MAX_MINOR; refusing it early also keeps
#: int() away from thousands of digits (Python refuses over 4,300 with a bare ValueError).
_MAX_AMOUNT_TEXT = 40


def exponent(currency: str) -> int:
    """The number of minor-unit digits of ``currency``; unknown codes are refused."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        known = ", ".join(sorted(CURRENCY_EXPONENTS))
        raise MoneyError(f"unknown currency {currency!r} (known: {known})") from None


def check_currency(currency: str) -> str:
    """Return ``currency`` if it is a supported ISO 4217 code, else raise MoneyError."""
    exponent(currency)
    return currency


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of ``currency`` (KRW 12000 → minor=12000)."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise MoneyError(f"amounts are integer minor units, not {type(self.minor).__name__}")
        if not 0 <= self.minor <= MAX_MINOR:
            raise MoneyError(f"amount {self.minor} is outside 0..{MAX_MINOR} minor units")
        check_currency(self.currency)

    def __str__(self) -> str:
        return format_minor(self.minor, self.currency)


def format_minor(minor: int, currency: str) -> str:
    """Human form with thousands separators: ``12000 KRW`` → ``'12,000 KRW'``."""
    exp = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exp)
    text = f"{whole:,}"
    if exp:
        text += f".{frac:0{exp}d}"
    return f"{sign}{text} {currency}"


def parse_amount(text: str, currency: str = DEFAULT_CURRENCY) -> Money:
    """Parse what people type (``12000``, ``12,000``, ``12.50``) into Money.

    A trailing currency code (``12.50 USD``) must match ``currency``. More decimals than the
    currency has, negative numbers, floats in exponent form and empty input are refused with a
    message that says why.
    """
    if len(text) > _MAX_AMOUNT_TEXT:
        raise MoneyError(f"amount is {len(text)} characters long; expected e.g. 12000 or 12.50")
    cleaned = text.strip().replace("_", "")
    parts = cleaned.split()
    if len(parts) == 2:
        cleaned, code = parts
        if code.upper() != currency:
            raise MoneyError(
                f"amount {text!r} is in {code.upper()}, but this works in {currency}: "
                f"type the amount in {currency}"
            )
    elif len(parts) != 1:
        raise MoneyError(f"cannot read amount {text!r}: expected e.g. 12000, 12,000 or 12.50")
    match = _AMOUNT_RE.match(cleaned)
    if match is None:
        raise MoneyError(f"cannot read amount {text!r}: expected e.g. 12000, 12,000 or 12.50")
    exp = exponent(currency)
    frac = match.group("frac") or ""
    if len(frac) > exp:
        if exp == 0:
            raise MoneyError(f"{currency} has no minor unit: {text!r} must be a whole number")
        raise MoneyError(f"{currency} has {exp} decimal places: {text!r} has {len(frac)}")
    whole = int(match.group("int").replace(",", ""))
    return Money(whole * 10**exp + int(frac.ljust(exp, "0") or "0"), currency)
