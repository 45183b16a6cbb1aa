"""Request bodies of the HTTP API, validated by pydantic (a 422 names the offending field).

Money is strict integers in minor units: ``12.5`` or ``"12"`` are refused, never rounded.
Text that is stored or looked up (ids, codes, labels) may not hold NUL (U+0000): PostgreSQL
cannot take it, and refusing it here keeps both databases alike. An instant must name a UTC
time in years 1 to 9999 whatever its offset, so that every answer can show it. Card numbers
and expiries are ASCII digits.
Responses are plain dicts built by the services; the server's OpenAPI document
(``GET /openapi.json``) shows every request and error shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from nfcpay import allowance, money


def refuse_nul(text: str) -> str:
    """``text`` unless it holds NUL, which PostgreSQL text cannot store (psycopg refuses the
    query); the ValueError becomes a 422 naming the field."""
    if "\x00" in text:
        raise ValueError("must not contain NUL (U+0000) characters")
    return text


def in_utc_range(moment: datetime) -> datetime:
    """``moment`` unless its UTC time falls outside years 1 to 9999: a legal ISO text such as
    ``9999-12-31T23:59:59-14:00`` names one, which datetime cannot hold (and so no answer
    could show it)."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC"
        ) from None
    return moment


NoNul = AfterValidator(refuse_nul)
Amount = Annotated[int, Field(strict=True, gt=0, le=money.MAX_MINOR)]
Balance = Annotated[int, Field(strict=True, ge=0, le=money.MAX_MINOR)]
Id = Annotated[str, StringConstraints(strict=True, min_length=3, max_length=64), NoNul]
Code = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=32), NoNul]
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=200), NoNul]
Instant = Annotated[AwareDatetime, AfterValidator(in_utc_range)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _WithCurrency(_Body):
    currency: Annotated[str, StringConstraints(strict=True, min_length=3, max_length=3)]

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        return money.check_currency(value)


def distinct(values: list[str]) -> list[str]:
    """``values`` unless one appears twice (a 422 naming the field)."""
    seen = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{value!r} appears twice")
        seen.add(value)
    return values


#: A merchant's categories: the first is its primary one (the default purpose).
Categories = Annotated[list[Code], Field(min_length=1, max_length=20), AfterValidator(distinct)]


class MerchantIn(_Body):
    name: Text
    categories: Categories | None = None
    #: One category, as nfcpay before multiple categories registers it (``categories``: [it]).
    category: Code | None = None
    region: Code
    settlement_account: Text

    @model_validator(mode="after")
    def _one_way_to_name_categories(self) -> MerchantIn:
        if (self.categories is None) == (self.category is None):
            raise ValueError("give the merchant's categories (or one category), not both")
        return self

    @property
    def all_categories(self) -> list[str]:
        """The categories registered, primary first."""
        return self.categories if self.categories is not None else [str(self.category)]


class CategoriesIn(_Body):
    """A merchant's new set of categories, primary first (replaces the whole set)."""

    categories: Categories


class TerminalIn(_Body):
    role: Literal["user", "target", "merchant"]
    label: Text
    public_key: Annotated[str, StringConstraints(strict=True, min_length=43, max_length=44)]
    merchant: MerchantIn | None = None


class FundingSourceIn(_WithCurrency):
    kind: Literal["card", "wallet", "bank"]
    # [0-9], not \d: pydantic's \d also matches Arabic-Indic, fullwidth, ... digits.
    number: Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9]{12,19}$")] | None = None
    expiry: (
        Annotated[str, StringConstraints(strict=True, pattern=r"^(0[1-9]|1[0-2])/[0-9]{2}$")] | None
    ) = None
    limit: Balance | None = None
    balance: Balance | None = None


class SourceStatusIn(_Body):
    status: Literal["active", "dormant", "closed"]


def known_zone(name: str) -> str:
    """``name`` if it is an IANA time zone this server knows (a 422 naming the field)."""
    allowance.zone(name)
    return name


class AllowanceIn(_Body):
    """A cap that renews: at most ``amount`` per ``period``, counted in ``time_zone`` (the
    issuing terminal's IANA zone; weeks start on Monday, months are calendar months)."""

    period: allowance.Period
    amount: Amount
    time_zone: Annotated[
        str, StringConstraints(strict=True, min_length=1, max_length=64), AfterValidator(known_zone)
    ]


class RightsIn(_Body):
    amount_cap: Amount
    max_uses: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] = 1
    per_use_cap: Amount | None = None
    valid_from: Instant | None = None
    valid_until: Instant | None = None
    purposes: Annotated[list[Code], Field(min_length=1, max_length=50)] | None = None
    regions: Annotated[list[Code], Field(min_length=1, max_length=50)] | None = None
    merchants: Annotated[list[Id], Field(min_length=1, max_length=50)] | None = None
    allowance: AllowanceIn | None = None


#: A key fingerprint as a hello record carries it: 8 bytes, lowercase hex.
Fingerprint = Annotated[str, StringConstraints(strict=True, pattern=r"^[0-9a-f]{16}$")]


class GrantIn(_WithCurrency):
    source_id: Id
    allowed_terminals: Annotated[list[Id], Field(min_length=1, max_length=20)]
    rights: RightsIn
    bill_id: Id | None = None
    #: Issued to whoever tapped: the key fingerprint that terminal's hello claimed. The grant
    #: then waits for its owner's confirmation (``POST /v1/grants/{id}/confirm``).
    tap_fingerprint: Fingerprint | None = None


class DeliveryIn(_Body):
    """A grant its owner sends through the server to target terminal ``to``: ``record`` is
    the hand-off NDEF message a tap would carry (base64url), grant and usage-auth."""

    grant_id: Id
    to: Id
    record: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=4096), NoNul]


class BillIn(_WithCurrency):
    """A group bill its collector opens: the total to split and how (see ``PaymentIn``)."""

    total: Amount
    mode: Literal["exact", "remainder"] = "exact"


class GrantShareIn(_Body):
    grant_id: Id
    usage_auth: Annotated[str, StringConstraints(strict=True, max_length=64)]
    amount: Amount


class MeansIn(_Body):
    #: The presentation layout the signature is over (the means record's payload version);
    #: left out by merchant terminals on nfcpay before version 2, which are told to upgrade.
    version: Annotated[int, Field(strict=True, ge=0, le=255)] | None = None
    presenting_terminal: Id
    grants: Annotated[list[GrantShareIn], Field(max_length=32)] = []
    own_source_id: Id | None = None
    own_amount: Balance | None = None
    signature: Annotated[str, StringConstraints(strict=True, max_length=128)]


class PaymentIn(_WithCurrency):
    amount: Amount
    purpose: Code | None = None
    challenge: Annotated[str, StringConstraints(strict=True, min_length=22, max_length=86)]
    means: MeansIn
    bill_id: Id | None = None
    split_mode: Literal["exact", "remainder"] = "exact"


class RefundIn(_Body):
    amount: Amount | None = None
