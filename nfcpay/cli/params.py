"""Click parameter types for what people type at a counter: amounts and durations."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from nfcpay.errors import MoneyError
from nfcpay.money import Money, parse_amount

_DURATION_RE = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Longest validity a grant may be given from the command line.
MAX_DURATION = timedelta(days=366)
#: Longest text read as a duration or an amount: far more than any real one needs, and
#: short enough that no number in it is too long for int() (Python refuses > 4300 digits).
MAX_CHARS = 40


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d12h`` → timedelta; anything else raises ValueError."""
    compact = text.strip().lower().replace(" ", "")
    if len(compact) > MAX_CHARS:
        raise ValueError(f"duration {text[:MAX_CHARS]!r}… is too long: use e.g. 2h or 1d12h")
    if not compact or _DURATION_RE.sub("", compact):
        raise ValueError(f"cannot read duration {text!r}: use e.g. 90s, 15m, 2h or 1d12h")
    total = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_RE.findall(compact))
    # compare whole seconds first: timedelta() itself overflows past 999,999,999 days
    if not 0 < total <= MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text!r} must be between 1s and {MAX_DURATION.days} days")
    return timedelta(seconds=total)


class DurationType(click.ParamType):  # type: ignore[type-arg]
    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AmountType(click.ParamType):  # type: ignore[type-arg]
    """An amount as typed (``12000``, ``12,000``, ``12.50``); the currency is applied later.

    The terminal's currency is only known once its home is loaded, so the raw text is kept
    and turned into Money by :func:`to_money`.
    """

    name = "amount"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if len(text) > MAX_CHARS:
            self.fail(f"amount {text[:MAX_CHARS]!r}… is too long", param, ctx)
        parts = text.split()
        # Syntax only: against the currency the text names, else the most permissive
        # exponent (KWD's three decimals); the terminal's currency is checked later.
        named = parts[1].upper() if len(parts) == 2 else "KWD"
        try:
            parse_amount(text, named)
        except MoneyError as exc:
            self.fail(exc.message, param, ctx)
        return text


def to_money(text: str, currency: str) -> Money:
    """Turn an :class:`AmountType` value into Money in the terminal's currency."""
    return parse_amount(text, currency)


DURATION = DurationType()
AMOUNT = AmountType()
