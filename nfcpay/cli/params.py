"""Click parameter types for what people type at a counter, and the sentences that refuse it.

Each type checks a value before anything is sent, and says in one plain sentence what is
wrong (click prefixes the option: ``Invalid value for '--expiry': expiry must be MM/YY, e.g.
12/29``). Its ``rule`` says what the option accepts: :func:`refusal` uses it when the server
refuses a request field, so both refusals read alike (see :data:`SERVER_FIELDS`).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import click

from nfcpay import allowance, crypto
from nfcpay.money import CURRENCY_EXPONENTS, MAX_MINOR, Money, check_currency, parse_amount

_DURATION_RE = re.compile(r"(\d+)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Longest validity a grant may be given from the command line.
MAX_DURATION = timedelta(days=366)
#: Longest text read as a duration or an amount: far more than any real one needs, and
#: short enough that no number in it is too long for int() (Python refuses > 4300 digits).
MAX_CHARS = 40
#: Card numbers: how many digits a real one has (the server's rule too).
CARD_DIGITS = range(12, 20)
#: Longest label, shop name or settlement account the server keeps.
MAX_TEXT = 200
#: The server's MAX_KEY_LENGTH (not imported: it would load the server's storage modules).
MAX_IDEMPOTENCY_KEY = 64
_EXPIRY_RE = re.compile(r"(0[1-9]|1[0-2])/([0-9]{2})")
_CARD_SEPARATORS = re.compile(r"[ -]")


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


def card_number(text: str) -> str:
    """The digits of a card number as typed (spaces and dashes dropped); a number that cannot
    be a real card raises ValueError. Only its masked form is ever said back."""
    digits = _CARD_SEPARATORS.sub("", text.strip())
    if not digits.isascii() or not digits.isdigit():
        raise ValueError("card number must be digits only (spaces and dashes are fine)")
    if len(digits) not in CARD_DIGITS:
        raise ValueError(
            f"card number has {len(digits)} digits; a card has "
            f"{CARD_DIGITS.start} to {CARD_DIGITS.stop - 1}"
        )
    masked = crypto.mask_card_number(digits)
    if not crypto.luhn_valid(digits):
        raise ValueError(f"card number {masked} fails its check digit: a typing mistake?")
    if crypto.is_virtual_card_number(digits):
        raise ValueError(f"card number {masked} is an nfcpay virtual card, not a real one")
    return digits


def expiry_example(today: date | None = None) -> str:
    """An expiry that reads right in messages: December, three years on (``12/29``)."""
    year = (today or datetime.now(UTC).date()).year + 3
    return f"12/{year % 100:02d}"


def expiry_rule(today: date | None = None) -> str:
    """What ``--expiry`` takes, said the same whether the CLI or the server refuses it."""
    return f"expiry must be MM/YY, e.g. {expiry_example(today)}"


def card_expiry(text: str, today: date | None = None) -> str:
    """``MM/YY`` of a card still valid in ``today``'s month (UTC, as the server counts), else
    ValueError. A card is valid through the last day of its expiry month."""
    today = today or datetime.now(UTC).date()
    match = _EXPIRY_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(expiry_rule(today))
    month, year = int(match[1]), 2000 + int(match[2])
    if (year, month) < (today.year, today.month):
        raise ValueError(f"expiry {match[0]} is in the past: that card has expired")
    return match[0]


class CheckedType(click.ParamType):  # type: ignore[type-arg]
    """A value :meth:`check` accepts (and may tidy) or refuses with ValueError's sentence."""

    #: What the option accepts, said without the value (a server's refusal has none).
    rule: str = ""

    def check(self, text: str) -> object:
        raise NotImplementedError

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        try:
            return self.check(str(value))
        except ValueError as exc:  # MoneyError included: its str() is its message
            self.fail(str(exc), param, ctx)


class DurationType(CheckedType):
    name = "duration"
    rule = f"duration must be between 1s and {MAX_DURATION.days} days, e.g. 15m, 2h or 1d12h"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Any:
        return value if isinstance(value, timedelta) else super().convert(value, param, ctx)

    def check(self, text: str) -> timedelta:
        return parse_duration(text)


class AmountType(CheckedType):
    """An amount as typed (``12000``, ``12,000``, ``12.50``); the currency is applied later.

    The terminal's currency is only known once its home is loaded, so the raw text is kept
    and turned into Money by :func:`to_money`. ``positive``: zero is refused (a price, a cap,
    a refund); without it zero is fine (an opening balance, a credit limit).
    """

    name = "amount"

    def __init__(self, *, positive: bool = False) -> None:
        self.positive = positive
        low = "more than 0" if positive else "0 or more"
        self.rule = f"amount must be {low} and at most {MAX_MINOR:,} minor units, e.g. 12,000"

    def check(self, text: str) -> str:
        if len(text) > MAX_CHARS:
            raise ValueError(f"amount {text[:MAX_CHARS]!r}… is too long")
        parts = text.split()
        # Syntax only: against the currency the text names, else the most permissive
        # exponent (KWD's three decimals); the terminal's currency is checked later.
        named = parts[1].upper() if len(parts) == 2 else "KWD"
        if parse_amount(text, named).minor == 0 and self.positive:
            raise ValueError(f"amount must be more than 0, not {text!r}")
        return text


def to_money(text: str, currency: str) -> Money:
    """Turn an :class:`AmountType` value into Money in the terminal's currency."""
    return parse_amount(text, currency)


class CardNumberType(CheckedType):
    name = "card_number"
    rule = "card number must be 12 to 19 digits and pass its check digit"

    def check(self, text: str) -> str:
        return card_number(text)


class ExpiryType(CheckedType):
    name = "MM/YY"

    def __init__(self) -> None:
        self.rule = expiry_rule()

    def check(self, text: str) -> str:
        return card_expiry(text)


class TextType(CheckedType):
    """Free text the server keeps and shows: 1 to :data:`MAX_TEXT` characters, not blank."""

    name = "text"

    def __init__(self, what: str) -> None:
        self.rule = f"{what} must be 1 to {MAX_TEXT} characters, not only spaces"

    def check(self, text: str) -> str:
        if not text.strip() or len(text) > MAX_TEXT:
            raise ValueError(self.rule + (f" (it has {len(text)})" if text.strip() else ""))
        return text


class CodeType(CheckedType):
    """A category or region code, as NFC records carry them (``5812``, ``KR-11``)."""

    name = "code"

    def __init__(self, what: str, example: str) -> None:
        self.rule = (
            f"{what} must be a short code of letters, digits and _.:- (at most 32), e.g. {example}"
        )

    def check(self, text: str) -> str:
        from nfcpay.records.fields import TOKEN  # records import cbor2: only when needed

        if not TOKEN.pattern.fullmatch(text):
            raise ValueError(f"{self.rule}; not {text[:40]!r}")
        return text


class CodesType(CheckedType):
    """One or more codes, comma-separated (``5812,5814``); the option may also be repeated."""

    name = "codes"

    def __init__(self, code: CodeType) -> None:
        self.code = code
        self.rule = code.rule

    def check(self, text: str) -> tuple[str, ...]:
        return tuple(self.code.check(part.strip()) for part in text.split(","))


def distinct_codes(groups: tuple[tuple[str, ...], ...], what: str) -> list[str]:
    """The codes of a repeated :class:`CodesType` option, in order; ValueError if one is
    named twice (the server refuses that too)."""
    codes: list[str] = []
    for code in (code for group in groups for code in group):
        if code in codes:
            raise ValueError(f"{what} {code} is named twice")
        codes.append(code)
    return codes


class IdType(CheckedType):
    """An nfcpay id with its prefix (``t_…``, ``src_…``), as the server hands them out."""

    name = "id"

    def __init__(self, what: str, prefix: str) -> None:
        self.prefix = prefix
        self.rule = f"{what} must look like {prefix}_3fz7q2m4k9xw6a5b"

    def check(self, text: str) -> str:
        from nfcpay.records.fields import identifier  # records import cbor2: only when needed

        if not identifier(self.prefix).pattern.fullmatch(text):
            raise ValueError(f"{self.rule}; not {text[:40]!r}")
        return text


class IdempotencyKeyType(CheckedType):
    """The key a retried refund is sent with: printable ASCII, as long as the server allows."""

    name = "key"
    rule = f"idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"

    def check(self, text: str) -> str:
        if not 0 < len(text) <= MAX_IDEMPOTENCY_KEY or not (text.isascii() and text.isprintable()):
            raise ValueError(self.rule)
        return text


class CurrencyType(CheckedType):
    name = "currency"
    rule = f"currency must be one of {', '.join(sorted(CURRENCY_EXPONENTS))}"

    def check(self, text: str) -> str:
        return check_currency(text.strip().upper())


class TimeZoneType(CheckedType):
    name = "time_zone"
    rule = "time zone must be an IANA name such as Asia/Seoul, Europe/Berlin or UTC"

    def check(self, text: str) -> str:
        return allowance.zone(text.strip()).key


class PerType(CheckedType):
    """An allowance as typed, ``day:10,000`` (or week, month): the period and the amount's
    text, turned into Money in the terminal's currency later (as :class:`AmountType`)."""

    name = "per"
    rule = "allowance must be PERIOD:AMOUNT with a period of day, week or month, e.g. day:10,000"

    def check(self, text: str) -> tuple[allowance.Period, str]:
        period, amount = allowance.parse_per(text)
        return period, POSITIVE_AMOUNT.check(amount)


DURATION = DurationType()
AMOUNT = AmountType()
#: A price, a cap or a refund: zero is refused.
POSITIVE_AMOUNT = AmountType(positive=True)
CARD_NUMBER = CardNumberType()
EXPIRY = ExpiryType()
CURRENCY = CurrencyType()
LABEL = TextType("label")
MERCHANT_NAME = TextType("merchant name")
SETTLEMENT_ACCOUNT = TextType("settlement account")
CATEGORY = CodeType("category", "5812")
CATEGORIES = CodesType(CATEGORY)
PURPOSE = CodeType("purpose", "5812")
REGION = CodeType("region", "KR-11")
TERMINAL_ID = IdType("terminal id", "t")
MERCHANT_ID = IdType("merchant id", "m")
SOURCE_ID = IdType("funding source id", "src")
GRANT_ID = IdType("grant id", "g")
PAYMENT_ID = IdType("payment id", "p")
BILL_ID = IdType("bill id", "b")
NOTIFICATION_ID = IdType("notification id", "n")
TIME_ZONE = TimeZoneType()
PER = PerType()
IDEMPOTENCY_KEY = IdempotencyKeyType()

#: Request fields the server validates (as a 422's ``field`` names them, list indexes
#: dropped) → the option a person typed the value with, and that option's type.
SERVER_FIELDS: dict[str, tuple[str, CheckedType]] = {
    "label": ("--label", LABEL),
    "merchant.name": ("--merchant-name", MERCHANT_NAME),
    "merchant.category": ("--category", CATEGORY),
    "merchant.categories": ("--category", CATEGORY),
    "categories": ("CATEGORY", CATEGORY),
    "merchant.region": ("--region", REGION),
    "merchant.settlement_account": ("--settlement-account", SETTLEMENT_ACCOUNT),
    "number": ("--number", CARD_NUMBER),
    "expiry": ("--expiry", EXPIRY),
    "limit": ("--limit", AMOUNT),
    "balance": ("--balance", AMOUNT),
    "source_id": ("--source", SOURCE_ID),
    "allowed_terminals": ("--to", TERMINAL_ID),
    "rights.amount_cap": ("--amount", POSITIVE_AMOUNT),
    "rights.per_use_cap": ("--per-use", POSITIVE_AMOUNT),
    "rights.valid_until": ("--expires", DURATION),
    "rights.valid_from": ("--expires", DURATION),
    "rights.purposes": ("--purpose", PURPOSE),
    "rights.regions": ("--region", REGION),
    "rights.merchants": ("--merchant", MERCHANT_ID),
    "rights.allowance.period": ("--per", PER),
    "rights.allowance.amount": ("--per", PER),
    "rights.allowance.time_zone": ("--time-zone", TIME_ZONE),
    "amount": ("--amount", POSITIVE_AMOUNT),
    "purpose": ("--purpose", PURPOSE),
    "bill_id": ("--bill", BILL_ID),
    "total": ("--total", POSITIVE_AMOUNT),
    "means.own_source_id": ("--own-source", SOURCE_ID),
    "after": ("--after", NOTIFICATION_ID),
    "Idempotency-Key": ("--idempotency-key", IDEMPOTENCY_KEY),
}


#: The API's own names in the server's sentences (``per_use_cap cannot exceed amount_cap``)
#: → the options people know them by.
_API_NAMES = {
    path.rsplit(".", 1)[-1]: option for path, (option, _) in SERVER_FIELDS.items() if "_" in path
}
_API_NAME_RE = re.compile(r"\b(" + "|".join(_API_NAMES) + r")\b")


def refusal(field: str | None, code: str, message: str) -> tuple[str | None, str]:
    """(option, sentence) for the server's refusal of request ``field``. Pydantic's wording
    (``validation_error``) gives way to the option's rule; the server's own sentences (``no
    terminal t_…``) are kept, with the API's names in them turned into options. Both name the
    option; an unknown field keeps the server's message."""
    path = ".".join(part for part in (field or "").split(".") if not part.isdigit())
    if path not in SERVER_FIELDS:
        return None, message
    option, kind = SERVER_FIELDS[path]
    if code == "validation_error":
        sentence = kind.rule
    else:
        sentence = _API_NAME_RE.sub(lambda match: _API_NAMES[match[1]], message)
    return option, f"Invalid value for '{option}': {sentence}"
