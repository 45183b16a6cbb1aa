"""The rules of payment authorization, pure: the request and rows in, failures out.

Each ``*_rule`` takes the request as an :class:`Attempt` and rows already read, and returns
what fails as :class:`Failure` values, each with its :class:`~nfcpay.declines.DeclineCode`;
none reads or writes anything. :mod:`.authorization` reads and locks the rows, runs the
rules in order and writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from nfcpay import crypto
from nfcpay.declines import DeclineCode
from nfcpay.errors import InvalidRequest
from nfcpay.money import format_minor
from nfcpay.server.runtime import TerminalKey
from nfcpay.server.schemas import GrantShareIn, PaymentIn
from nfcpay.server.services import allowances, bills, sources
from nfcpay.server.services.formats import iso, load_list
from nfcpay.server.store import Row

LOCK_AFTER_MISMATCHES = 5
CHALLENGE_BYTES = (16, 64)


def challenge_bytes(text: str) -> bytes:
    """The merchant's challenge as a payment body (and a presentation's URL) carries it:
    base64url of :data:`CHALLENGE_BYTES` bytes; anything else is refused (422)."""
    try:
        challenge = crypto.b64d(text)
    except ValueError:
        raise InvalidRequest("challenge is not base64url", field="challenge") from None
    low, high = CHALLENGE_BYTES
    if not low <= len(challenge) <= high:
        raise InvalidRequest(f"challenge must be {low} to {high} bytes", field="challenge")
    return challenge


#: Declines that tell the funding source's owner "limit_declined".
SHORTFALLS = frozenset({DeclineCode.LIMIT_EXCEEDED, DeclineCode.INSUFFICIENT_BALANCE})


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one share was declined: a grant's (``grant_id``), the presenting terminal's own
    (``source_id``), or the whole request's (neither)."""

    code: DeclineCode
    message: str
    grant_id: str | None = None
    source_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.code, DeclineCode):
            raise TypeError(f"decline code {self.code!r} is not a DeclineCode")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decline_code": self.code, "message": self.message}
        if self.grant_id is not None:
            out["grant_id"] = self.grant_id
        elif self.source_id is not None:
            out["source_id"] = self.source_id
        return out


@dataclass(frozen=True, slots=True)
class Attempt:
    """One payment request as the rules see it: the body, the merchant taking it, when."""

    body: PaymentIn
    merchant_id: str
    #: The merchant's row: ``merchant_id``, ``name``, ``region``.
    merchant: Row
    now: int
    #: The merchant's registered categories, primary first.
    categories: tuple[str, ...]

    @property
    def purpose(self) -> str:
        """What the payment is for: the request's purpose, else the merchant's primary
        category."""
        return self.body.purpose or self.categories[0]

    @property
    def presenting(self) -> str:
        return self.body.means.presenting_terminal

    def money(self, amount: int) -> str:
        return format_minor(amount, self.body.currency)


@dataclass(frozen=True, slots=True)
class Share:
    """One share to charge: a grant's (on the grant's source) or the own source's."""

    grant_id: str | None
    source_id: str
    amount: int


# --- the rules: the request and rows in, failures out; no database access -------------------


def split_rule(attempt: Attempt) -> tuple[int, Failure | None]:
    """The own-source share implied by the split mode, and why the shares do not fit."""
    body, means, money = attempt.body, attempt.body.means, attempt.money
    granted = sum(share.amount for share in means.grants)
    why = None
    if body.split_mode == "exact":
        own = means.own_amount or 0
        gap = body.amount - granted - own
        if gap:
            side = "short of" if gap > 0 else "more than"
            why = (
                f"the shares add up to {money(granted + own)}, {money(abs(gap))} "
                f"{side} the amount {money(body.amount)}"
            )
    else:
        own = body.amount - granted
        if own < 0:
            why = f"the grant shares exceed the amount {money(body.amount)} by {money(-own)}"
        elif means.own_amount is not None and means.own_amount != own:
            why = f"own_amount {money(means.own_amount)} is not the remainder {money(own)}"
    if own > 0 and means.own_source_id is None and why is None:
        why = (
            f"{money(own)} is left for the presenting terminal's own source, "
            "but the means name none"
        )
    return own, None if why is None else Failure(DeclineCode.SHARES_DO_NOT_ADD_UP, why)


def purpose_rule(attempt: Attempt) -> Failure | None:
    """The purpose is one of the merchant's categories: a merchant cannot claim a purpose
    (and so reach grants limited to it) that it did not register."""
    if attempt.purpose in attempt.categories:
        return None
    return Failure(
        DeclineCode.PURPOSE_NOT_REGISTERED,
        f"merchant {attempt.merchant_id} is registered for {', '.join(attempt.categories)}, "
        f"not for purpose {attempt.purpose}",
    )


def bill_owner_rule(attempt: Attempt, bill: Row | None) -> Failure | None:
    """Only the terminal that opened a bill presents a payment for it (``bill``: its row, None
    when no bill has the id). Declined alike whether that bill exists, is paid or not, so a
    stranger learns nothing of it and the bill stays payable by its collector."""
    if bill is None or bill["collector_terminal"] != attempt.presenting:
        return Failure(
            DeclineCode.BILL_NOT_YOURS,
            f"bill {attempt.body.bill_id} was not opened by the presenting terminal "
            f"{attempt.presenting}: {bills.OPENED_BY_COLLECTOR}",
        )
    return None


def bill_rule(attempt: Attempt, bill: Row) -> Failure | None:
    """The presenting terminal's own ``bill`` is paid at most once, on the terms it was
    opened with, and with its members' grants."""
    body = attempt.body
    if bill["payment_id"] is not None:
        return Failure(
            DeclineCode.BILL_ALREADY_PAID,
            f"bill {body.bill_id} was already paid by payment {bill['payment_id']}",
        )
    failure = bill_terms_rule(attempt, bill)
    if failure is None and not body.means.grants:
        return _no_member_grant(attempt)
    return failure


def bill_terms_rule(attempt: Attempt, bill: Row) -> Failure | None:
    """The payment is in the bill's currency and split mode and, in exact mode, for its total
    (in remainder mode the collector's own share takes up whatever the merchant charges)."""
    body, money = attempt.body, attempt.money
    wrong = []
    if body.currency != bill["currency"]:
        wrong.append(f"the payment is in {body.currency}, the bill in {bill['currency']}")
    if body.split_mode != bill["mode"]:
        wrong.append(f"the payment splits in {body.split_mode} mode, the bill in {bill['mode']}")
    elif not wrong and bill["mode"] == "exact" and body.amount != bill["total"]:
        wrong.append(
            f"the payment is {money(body.amount)}, the bill's total {money(bill['total'])}"
        )
    if not wrong:
        return None
    return Failure(
        DeclineCode.BILL_TERMS_MISMATCH,
        f"bill {body.bill_id} is not paid as it was opened: " + "; ".join(wrong),
    )


def presentation(body: PaymentIn, merchant_id: str, purpose: str) -> crypto.Presentation:
    """What the presenting terminal signed, as merchant ``merchant_id``'s request ``body``
    for ``purpose`` (the request's, else the merchant's primary category) tells it: the
    target built the same value from the NFC records
    (:func:`nfcpay.records.presentation.presentation`). Raises ValueError if the challenge
    is not base64url."""
    means = body.means
    return crypto.Presentation(
        nonce=crypto.b64d(body.challenge),
        merchant_id=merchant_id,
        amount=body.amount,
        currency=body.currency,
        purpose=purpose,
        presenting_terminal=means.presenting_terminal,
        grants=tuple(crypto.GrantShare(s.grant_id, s.amount) for s in means.grants),
        own_source_id=means.own_source_id,
        own_amount=means.own_amount or 0,
        bill_id=body.bill_id,
        split_mode=body.split_mode,
    )


def signature_rule(attempt: Attempt, key: TerminalKey | None) -> Failure | None:
    """The presenting terminal (``key``: its registered key) signed exactly this request."""
    try:
        signature = crypto.b64d(attempt.body.means.signature)
    except ValueError:
        signature = b""
    message = presentation(attempt.body, attempt.merchant_id, attempt.purpose).message()
    if key is None or not crypto.verify_signature(key.public_key, signature, message):
        return Failure(
            DeclineCode.BAD_SIGNATURE,
            "the presenting terminal's signature over this challenge, merchant, amount, "
            "purpose, shares and bill is missing or wrong",
        )
    return None


def challenge_rule(used: bool) -> Failure | None:
    """A merchant's challenge pays once (``used``: a payment took it already)."""
    if used:
        return Failure(
            DeclineCode.CHALLENGE_REUSED, "this challenge was already used for a payment"
        )
    return None


def grant_rule(
    attempt: Attempt, share: GrantShareIn, row: Row | None, cipher: crypto.FieldCipher
) -> Failure | None:
    """The first thing wrong with one grant share. ``row`` is the grant (None: no such grant)
    with ``allowed``: whether the presenting terminal may use it; ``cipher`` opens its
    stored auth code."""
    gid = share.grant_id
    if row is None:
        return Failure(DeclineCode.UNKNOWN_GRANT, f"no grant {gid} is known", gid)
    if not row["allowed"]:
        return Failure(
            DeclineCode.TERMINAL_NOT_ALLOWED,
            f"terminal {attempt.presenting} may not use grant {gid}",
            gid,
        )
    if not usage_auth_genuine(attempt, share, row, cipher):
        return Failure(
            DeclineCode.USAGE_AUTH_MISMATCH, f"the usage-auth for grant {gid} is not genuine", gid
        )
    return rights_rule(attempt, share, row)


def usage_auth_genuine(
    attempt: Attempt, share: GrantShareIn, row: Row, cipher: crypto.FieldCipher
) -> bool:
    """The share's usage-auth is the grant's, for the presenting terminal."""
    try:
        presented = crypto.b64d(share.usage_auth)
    except ValueError:
        return False
    code = crypto.b64d(cipher.decrypt(bytes(row["auth_code_enc"]), row["grant_id"]))
    return crypto.usage_auth_matches(
        presented, code, row["grant_id"], row["issuing_terminal"], attempt.presenting
    )


def rights_rule(attempt: Attempt, share: GrantShareIn, row: Row) -> Failure | None:
    """The first usage right of grant ``row`` that ``share`` breaks."""
    gid, amount, now, money = row["grant_id"], share.amount, attempt.now, attempt.money
    if row["bill_id"] is not None and row["bill_id"] != attempt.body.bill_id:
        return Failure(
            DeclineCode.BILL_MISMATCH, f"grant {gid} pays only bill {row['bill_id']}", gid
        )
    if row["status"] == "locked":
        return Failure(DeclineCode.GRANT_LOCKED, f"grant {gid} is locked", gid)
    if row["status"] == "revoked":
        return Failure(DeclineCode.GRANT_REVOKED, f"grant {gid} was revoked by its owner", gid)
    unconfirmed = confirmation_rule(row, now)
    if unconfirmed is not None:
        return unconfirmed
    if row["valid_from"] is not None and now < row["valid_from"]:
        return Failure(
            DeclineCode.GRANT_NOT_YET_VALID,
            f"grant {gid} is valid from {iso(row['valid_from'])}",
            gid,
        )
    if row["valid_until"] is not None and now >= row["valid_until"]:
        return Failure(
            DeclineCode.GRANT_EXPIRED, f"grant {gid} expired at {iso(row['valid_until'])}", gid
        )
    if row["currency"] != attempt.body.currency:
        return Failure(
            DeclineCode.CURRENCY_MISMATCH,
            f"grant {gid} is in {row['currency']}, the payment is not",
            gid,
        )
    if row["remaining_uses"] <= 0:
        return Failure(DeclineCode.NO_USES_LEFT, f"grant {gid} has no uses left", gid)
    if row["per_use_cap"] is not None and amount > row["per_use_cap"]:
        return Failure(
            DeclineCode.OVER_PER_USE_CAP,
            f"{money(amount)} is over grant {gid}'s per-use cap {money(row['per_use_cap'])}",
            gid,
        )
    if amount > row["remaining_amount"]:
        return Failure(
            DeclineCode.OVER_REMAINING_CAP,
            f"{money(amount)} is over grant {gid}'s remaining {money(row['remaining_amount'])}",
            gid,
        )
    return allowance_rule(attempt, amount, row) or scope_rule(attempt, row)


def allowance_rule(attempt: Attempt, amount: int, row: Row) -> Failure | None:
    """A share of grant ``row`` fits what its allowance has left in the current interval, and
    a decline says how much that is and when the allowance renews."""
    limit = allowances.of(row, attempt.now)
    if limit is None or amount <= limit.left:
        return None
    money, gid = attempt.money, row["grant_id"]
    return Failure(
        DeclineCode.ALLOWANCE_EXCEEDED,
        f"{money(amount)} is over grant {gid}'s allowance: {money(limit.left)} of "
        f"{money(limit.amount)} is left {limit.period.this}; it renews {limit.renews}",
        gid,
    )


def confirmation_rule(row: Row, now: int) -> Failure | None:
    """A grant handed over to whoever tapped pays only once its owner confirmed who that
    was (``confirm_by`` cleared); left unconfirmed past ``confirm_by``, it is withdrawn."""
    gid, confirm_by = row["grant_id"], row["confirm_by"]
    if confirm_by is None:
        return None
    if now >= confirm_by:
        return Failure(
            DeclineCode.GRANT_REVOKED,
            f"grant {gid} is withdrawn: its owner did not confirm the terminal that tapped "
            f"by {iso(confirm_by)}",
            gid,
        )
    return Failure(
        DeclineCode.GRANT_NOT_CONFIRMED,
        f"grant {gid} waits for its owner to confirm the terminal that tapped "
        f"(until {iso(confirm_by)})",
        gid,
    )


def scope_rule(attempt: Attempt, row: Row) -> Failure | None:
    """Grant ``row`` allows the payment's purpose, the merchant's region and the merchant."""
    gid, purpose, region = row["grant_id"], attempt.purpose, attempt.merchant["region"]
    purposes, regions = load_list(row["purposes"]), load_list(row["regions"])
    merchants = load_list(row["merchants"])
    if purposes is not None and purpose not in purposes:
        return Failure(
            DeclineCode.PURPOSE_NOT_ALLOWED, f"grant {gid} does not allow purpose {purpose}", gid
        )
    if regions is not None and region not in regions:
        return Failure(
            DeclineCode.REGION_NOT_ALLOWED, f"grant {gid} does not allow region {region}", gid
        )
    if merchants is not None and attempt.merchant_id not in merchants:
        return Failure(
            DeclineCode.MERCHANT_NOT_ALLOWED,
            f"grant {gid} does not allow merchant {attempt.merchant_id}",
            gid,
        )
    return None


def bill_members_rule(attempt: Attempt, grants: Iterable[Row]) -> Failure | None:
    """A payment naming a bill presents at least one grant bound to it."""
    bill_id = attempt.body.bill_id
    if bill_id is not None and all(row["bill_id"] != bill_id for row in grants):
        return _no_member_grant(attempt)
    return None


def _no_member_grant(attempt: Attempt) -> Failure:
    """Only a member's grant bound to the bill shows that the bill exists. Without one, anyone
    who heard the bill id could pay "it" first and so block the real bill for good."""
    return Failure(
        DeclineCode.BILL_MISMATCH,
        f"none of the grants presented belongs to bill {attempt.body.bill_id}; a bill is paid "
        "with its members' grants",
    )


def own_source_rule(attempt: Attempt, owner: str | None) -> Failure | None:
    """The own share's source is the presenting terminal's (``owner``: who holds it)."""
    source_id = attempt.body.means.own_source_id
    if owner is None or owner != attempt.presenting:
        return Failure(
            DeclineCode.UNKNOWN_SOURCE,
            f"the presenting terminal has no funding source {source_id}",
            source_id=source_id,
        )
    return None


def source_rule(attempt: Attempt, source: Row, total: int) -> Failure | None:
    """Funding source ``source`` can bear ``total``, the sum of the shares it backs."""
    if source["status"] != "active" or sources.card_expired(source["expiry"], attempt.now):
        state = "expired" if source["status"] == "active" else source["status"]
        return Failure(
            DeclineCode.SOURCE_NOT_ACTIVE, f"the funding source behind this share is {state}"
        )
    if source["currency"] != attempt.body.currency:
        return Failure(
            DeclineCode.CURRENCY_MISMATCH, f"the funding source is in {source['currency']}"
        )
    if sources.available(source) >= total:
        return None
    why = f"the {shortfall(source)} does not cover {attempt.money(total)}"
    if source["kind"] == "card":
        return Failure(DeclineCode.LIMIT_EXCEEDED, why)
    return Failure(DeclineCode.INSUFFICIENT_BALANCE, why)


def shortfall(source: Row) -> str:
    """What runs short on ``source``: its "card limit" or its "wallet balance"."""
    return "card limit" if source["kind"] == "card" else f"{source['kind']} balance"


def backed_shares_rule(failure: Failure, shares: Iterable[Share], source_id: str) -> list[Failure]:
    """A funding source's ``failure``, once for each share it backs, naming the share."""
    out = []
    for share in shares:
        if share.source_id == source_id:
            whose = f"grant {share.grant_id}" if share.grant_id else "own share"
            message, own = f"{whose}: {failure.message}", None if share.grant_id else source_id
            out.append(replace(failure, message=message, grant_id=share.grant_id, source_id=own))
    return out
