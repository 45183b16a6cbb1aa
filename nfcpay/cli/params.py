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


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``2h``, ``1d12h`` → timedelta; anything else raises ValueError."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION_RE.sub("", compact):
        raise ValueError(f"cannot read duration {text!r}: use e.g. 90s, 15m, 2h or 1d12h")
    total = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_RE.findall(compact))
    duration = timedelta(seconds=total)
    if not timedelta(0) < duration <= MAX_DURATION:
        raise ValueError(f"duration {text!r} must be between 1s and {MAX_DURATION.days} days")
    return duration


class DurationType(click.ParamType):
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


class AmountType(click.ParamType):
    """An amount as typed (``12000``, ``12,000``, ``12.50``); the currency is applied later.

    The terminal's currency is only known once its home is loaded, so the raw text is kept
    and turned into Money by :func:`to_money`.
    """

    name = "amount"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        try:
            parse_amount(text, "KWD")  # the most permissive exponent: syntax check only
        except MoneyError as exc:
            self.fail(exc.message, param, ctx)
        return text


def to_money(text: str, currency: str) -> Money:
    """Turn an :class:`AmountType` value into Money in the terminal's currency."""
    return parse_amount(text, currency)


DURATION = DurationType()
AMOUNT = AmountType()
