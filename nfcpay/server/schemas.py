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
)

from nfcpay import money


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


class MerchantIn(_Body):
    name: Text
    category: Code
    region: Code
    settlement_account: Text


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


class RightsIn(_Body):
    amount_cap: Amount
    max_uses: Annotated[int, Field(strict=True, ge=1, le=1_000_000)] = 1
    per_use_cap: Amount | None = None
    valid_from: Instant | None = None
    valid_until: Instant | None = None
    purposes: Annotated[list[Code], Field(min_length=1, max_length=50)] | None = None
    regions: Annotated[list[Code], Field(min_length=1, max_length=50)] | None = None
    merchants: Annotated[list[Id], Field(min_length=1, max_length=50)] | None = None


class GrantIn(_WithCurrency):
    source_id: Id
    allowed_terminals: Annotated[list[Id], Field(min_length=1, max_length=20)]
    rights: RightsIn
    bill_id: Id | None = None


class BillIn(_WithCurrency):
    """A group bill its collector opens: the total to split and how (see ``PaymentIn``)."""

    total: Amount
    mode: Literal["exact", "remainder"] = "exact"


class GrantShareIn(_Body):
    grant_id: Id
    usage_auth: Annotated[str, StringConstraints(strict=True, max_length=64)]
    amount: Amount


class MeansIn(_Body):
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
