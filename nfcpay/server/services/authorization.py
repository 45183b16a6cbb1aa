"""Payment authorization (patent FIG. 6): check the payment means, then charge every share
or none, in ONE transaction.

Order of work inside the transaction:

1. claim the merchant's idempotency key (a finished earlier request is replayed);
2. check the split (shares add up), that a bill is not paid already (PostgreSQL: a
   transaction-scoped advisory lock on the bill id serializes its payers), the presenting
   terminal's signature over the merchant's challenge, and that the challenge is fresh;
3. lock the grants, then their funding sources, each in sorted id order (PostgreSQL
   ``FOR UPDATE``; SQLite holds the write lock already) and check every rule on every share;
4. on any failure: release the key, write only the owner notifications, answer "declined";
5. otherwise charge: grants, sources, payment, shares, ledger, challenge, notifications.

A declined request changes no balance, grant, ledger, challenge or idempotency row. The one
deliberate exception is brute-force protection: the :data:`LOCK_AFTER_MISMATCHES`-th wrong
usage-auth for a grant locks it (owner notified).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nfcpay import crypto
from nfcpay.errors import InvalidRequest
from nfcpay.money import format_minor
from nfcpay.server import ledger
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import GrantShareIn, PaymentIn
from nfcpay.server.services import idempotency, notifications, payments, sources
from nfcpay.server.services.formats import iso, load_list
from nfcpay.server.services.grants import GRANT_COLUMNS
from nfcpay.server.store import RetryableConflict, Row, Tx

LOCK_AFTER_MISMATCHES = 5
CHALLENGE_BYTES = (16, 64)


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one share was declined: a grant's (``grant_id``), the presenting terminal's own
    (``source_id``), or the whole request's (neither)."""

    code: str
    message: str
    grant_id: str | None = None
    source_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decline_code": self.code, "message": self.message}
        if self.grant_id is not None:
            out["grant_id"] = self.grant_id
        elif self.source_id is not None:
            out["source_id"] = self.source_id
        return out


@dataclass(frozen=True, slots=True)
class _Share:
    grant_id: str | None
    source_id: str
    amount: int


@dataclass
class _Check:
    """The state of one authorization while its rules are checked."""

    tx: Tx
    rt: Runtime
    now: int
    body: PaymentIn
    merchant_id: str
    merchant: Row
    purpose: str
    failures: list[Failure] = field(default_factory=list)
    #: Writes a decline still makes: owner notifications (and a grant lock).
    on_decline: list[Callable[[], None]] = field(default_factory=list)
    shares: list[_Share] = field(default_factory=list)
    grants: dict[str, Row] = field(default_factory=dict)
    sources: dict[str, Row] = field(default_factory=dict)

    def money(self, amount: int) -> str:
        return format_minor(amount, self.body.currency)

    def fail(
        self, code: str, message: str, grant_id: str | None = None, source_id: str | None = None
    ) -> None:
        self.failures.append(Failure(code, message, grant_id, source_id))

    def where(self) -> str:
        """ " for bill b_…" when the payment pays a group bill (for owner notifications)."""
        return f" for bill {self.body.bill_id}" if self.body.bill_id else ""

    def notify_later(self, owner: str, kind: str, message: str, **fields: Any) -> None:
        self.on_decline.append(
            lambda: notifications.notify(self.tx, self.now, owner, kind, message, **fields)
        )

    def notify_share_owner(
        self, row: Row, share: GrantShareIn, kind: str, message: str, **fields: Any
    ) -> None:
        """Tell a grant's owner about this attempt on it: who, how much, where, which bill."""
        context = {
            "grant_id": row["grant_id"],
            "amount": share.amount,
            "currency": self.body.currency,
            "merchant_id": self.merchant_id,
            "terminal_id": self.body.means.presenting_terminal,
            "bill_id": self.body.bill_id,
        }
        self.notify_later(row["issuing_terminal"], kind, message, **{**context, **fields})


def authorize(
    tx: Tx, rt: Runtime, caller: Caller, body: PaymentIn, key: str, digest: bytes
) -> dict[str, Any]:
    merchant_id = payments.require_merchant(caller)
    now = rt.now_us()
    _check_shape(body)
    stored = idempotency.claim(tx, merchant_id, key, digest, now)
    if stored is not None:
        return {**stored.response, "replayed": True}
    merchant = rt.merchant(tx, merchant_id)
    if merchant is None:
        raise RuntimeError(f"merchant {merchant_id} of a registered terminal is missing")
    check = _Check(tx, rt, now, body, merchant_id, merchant, body.purpose or merchant["category"])
    own_amount = _check_split(check)
    if not check.failures:
        _check_bill(check)
    if not check.failures:
        _check_presentation(check)
    if not check.failures:
        _check_grants(check)
        _check_own_source(check, own_amount)
        _check_funding(check)
    if check.failures:
        idempotency.release(tx, merchant_id, key)
        for write in check.on_decline:
            write()
        return declined(check.failures)
    response = _charge(check)
    idempotency.complete(tx, merchant_id, key, 200, response)
    return response


def declined(failures: list[Failure]) -> dict[str, Any]:
    return {
        "payment_id": None,
        "status": "declined",
        "decline_code": failures[0].code,
        "message": failures[0].message,
        "failing": [f.as_dict() for f in failures],
        "replayed": False,
    }


def _check_shape(body: PaymentIn) -> None:
    """Malformed requests are refused (422) before anything is claimed."""
    ids = [share.grant_id for share in body.means.grants]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("a grant may appear only once in the means", field="means.grants")
    try:
        challenge = crypto.b64d(body.challenge)
    except ValueError:
        raise InvalidRequest("challenge is not base64url", field="challenge") from None
    low, high = CHALLENGE_BYTES
    if not low <= len(challenge) <= high:
        raise InvalidRequest(f"challenge must be {low} to {high} bytes", field="challenge")


def _check_split(check: _Check) -> int:
    """The own-source share implied by the split mode (declines if the shares do not fit)."""
    body, means = check.body, check.body.means
    granted = sum(share.amount for share in means.grants)
    if body.split_mode == "exact":
        own = means.own_amount or 0
        gap = body.amount - granted - own
        if gap:
            side = "short of" if gap > 0 else "more than"
            check.fail(
                "shares_do_not_add_up",
                f"the shares add up to {check.money(granted + own)}, {check.money(abs(gap))} "
                f"{side} the amount {check.money(body.amount)}",
            )
    else:
        own = body.amount - granted
        if own < 0:
            check.fail(
                "shares_do_not_add_up",
                f"the grant shares exceed the amount {check.money(body.amount)} "
                f"by {check.money(-own)}",
            )
        elif means.own_amount is not None and means.own_amount != own:
            check.fail(
                "shares_do_not_add_up",
                f"own_amount {check.money(means.own_amount)} is not the remainder "
                f"{check.money(own)}",
            )
    if own > 0 and means.own_source_id is None and not check.failures:
        check.fail(
            "shares_do_not_add_up",
            f"{check.money(own)} is left for the presenting terminal's own source, "
            "but the means name none",
        )
    return own


def _check_bill(check: _Check) -> None:
    """A bill is paid at most once (the unique index on payments.bill_id backs this up)."""
    bill_id = check.body.bill_id
    if bill_id is None:
        return
    if check.tx.dialect == "postgresql":
        check.tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (bill_id,))
    paid = check.tx.scalar("SELECT payment_id FROM payments WHERE bill_id = ?", (bill_id,))
    if paid is not None:
        check.fail("bill_already_paid", f"bill {bill_id} was already paid by payment {paid}")
    elif not check.body.means.grants:
        _fail_bill_without_members(check)


def _check_presentation(check: _Check) -> None:
    body, means = check.body, check.body.means
    key = check.rt.terminal_key(check.tx, means.presenting_terminal)
    try:
        signature = crypto.b64d(means.signature)
    except ValueError:
        signature = b""
    challenge = crypto.b64d(body.challenge)
    message = crypto.presentation_message(
        challenge=challenge,
        merchant_id=check.merchant_id,
        amount=body.amount,
        currency=body.currency,
        presenting_terminal=means.presenting_terminal,
        grants=[crypto.GrantShare(s.grant_id, s.amount) for s in means.grants],
        own_source_id=means.own_source_id,
        own_amount=means.own_amount or 0,
        bill_id=body.bill_id,
        split_mode=body.split_mode,
    )
    if key is None or not crypto.verify_signature(key.public_key, signature, message):
        check.fail(
            "bad_signature",
            "the presenting terminal's signature over this challenge, merchant, amount, "
            "shares and bill is missing or wrong",
        )
        if key is not None:
            _note_copies(check)
    elif check.tx.one(
        "SELECT 1 AS x FROM challenges WHERE merchant_id = ? AND challenge = ?",
        (check.merchant_id, challenge),
    ):
        check.fail("challenge_reused", "this challenge was already used for a payment")


def _fail_bill_without_members(check: _Check) -> None:
    """Only a member's grant bound to the bill shows that the bill exists. Without one, anyone
    who heard the bill id could pay "it" first and so block the real bill for good."""
    check.fail(
        "bill_mismatch",
        f"none of the grants presented belongs to bill {check.body.bill_id}; a bill is paid "
        "with its members' grants",
    )


def _note_copies(check: _Check) -> None:
    """Unsigned means with a genuine usage-auth for the named terminal are a copy of that
    terminal's grant presented by someone else: tell each such grant's owner. A wrong or
    made-up usage-auth proves nothing was copied, so a stranger who only knows a grant id
    cannot make its owner's phone ring."""
    presenting = check.body.means.presenting_terminal
    shares = {share.grant_id: share for share in check.body.means.grants}
    if not shares:
        return
    marks = ", ".join("?" * len(shares))
    rows = check.tx.all(
        f"SELECT grant_id, issuing_terminal, auth_code_enc FROM grants WHERE grant_id IN ({marks})",
        sorted(shares),
    )
    for row in rows:
        share = shares[row["grant_id"]]
        if _usage_auth_ok(check, share, row):
            check.notify_share_owner(
                row,
                share,
                "forged_presentation",
                f"a copy of grant {row['grant_id']} was presented under terminal {presenting}'s "
                f"id without its signature ({check.money(share.amount)}{check.where()} at "
                f"{check.merchant_id})",
            )


def _check_grants(check: _Check) -> None:
    shares = check.body.means.grants
    if not shares:
        return
    tx = check.tx
    ids = sorted(share.grant_id for share in shares)
    marks = ", ".join("?" * len(ids))
    # One statement: the grants (locked) and whether the presenting terminal may use each.
    rows = tx.all(
        f"SELECT {GRANT_COLUMNS}, auth_code_enc, EXISTS (SELECT 1 FROM grant_terminals t "
        "WHERE t.grant_id = grants.grant_id AND t.terminal_id = ?) AS allowed "
        f"FROM grants WHERE grant_id IN ({marks}) ORDER BY grant_id{tx.for_update}",
        [check.body.means.presenting_terminal, *ids],
    )
    check.grants = {row["grant_id"]: row for row in rows}
    for share in shares:
        row = check.grants.get(share.grant_id)
        if row is None:
            check.fail("unknown_grant", f"no grant {share.grant_id} is known", share.grant_id)
        elif _grant_ok(check, share, row, bool(row["allowed"])):
            check.shares.append(_Share(share.grant_id, row["source_id"], share.amount))
    bill_id = check.body.bill_id
    if bill_id is not None and not check.failures and all(r["bill_id"] != bill_id for r in rows):
        _fail_bill_without_members(check)  # (a failing share already names what to fix)


def _grant_ok(check: _Check, share: GrantShareIn, row: Row, allowed: bool) -> bool:
    """Check one grant share; on failure record it and return False."""
    gid = share.grant_id
    presenting = check.body.means.presenting_terminal
    if not allowed:
        check.fail("terminal_not_allowed", f"terminal {presenting} may not use grant {gid}", gid)
        check.notify_share_owner(
            row,
            share,
            "terminal_not_allowed",
            f"terminal {presenting} tried to pay {check.money(share.amount)}{check.where()} "
            f"at {check.merchant_id} with grant {gid}",
        )
        return False
    if not _usage_auth_ok(check, share, row):
        check.fail("usage_auth_mismatch", f"the usage-auth for grant {gid} is not genuine", gid)
        _note_mismatch(check, share, row)
        return False
    failure = _rights_failure(check, share, row)
    if failure is not None:
        check.fail(*failure, gid)
        return False
    return True


def _usage_auth_ok(check: _Check, share: GrantShareIn, row: Row) -> bool:
    try:
        presented = crypto.b64d(share.usage_auth)
    except ValueError:
        return False
    code = crypto.b64d(check.rt.cipher.decrypt(bytes(row["auth_code_enc"]), row["grant_id"]))
    return crypto.usage_auth_matches(
        presented,
        code,
        row["grant_id"],
        row["issuing_terminal"],
        check.body.means.presenting_terminal,
    )


def _note_mismatch(check: _Check, share: GrantShareIn, row: Row) -> None:
    gid, owner = row["grant_id"], row["issuing_terminal"]
    check.notify_share_owner(
        row,
        share,
        "usage_auth_mismatch",
        f"a wrong usage-auth was presented for grant {gid} "
        f"({check.money(share.amount)}{check.where()} at {check.merchant_id})",
    )
    earlier = check.tx.scalar(
        "SELECT COUNT(*) AS n FROM notifications WHERE grant_id = ? AND kind = ?",
        (gid, "usage_auth_mismatch"),
    )
    if row["status"] == "active" and int(earlier or 0) + 1 >= LOCK_AFTER_MISMATCHES:

        def lock() -> None:
            check.tx.execute("UPDATE grants SET status = 'locked' WHERE grant_id = ?", (gid,))

        check.on_decline.append(lock)
        check.notify_later(
            owner,
            "grant_locked",
            f"grant {gid} is locked after {LOCK_AFTER_MISMATCHES} wrong usage-auth values",
            grant_id=gid,
        )


def _rights_failure(check: _Check, share: GrantShareIn, row: Row) -> tuple[str, str] | None:
    """The first usage right ``share`` breaks, as (decline code, message)."""
    gid, amount, now = row["grant_id"], share.amount, check.now
    if row["bill_id"] is not None and row["bill_id"] != check.body.bill_id:
        _note_bill_mismatch(check, share, row)
        return "bill_mismatch", f"grant {gid} pays only bill {row['bill_id']}"
    if row["status"] == "locked":
        return "grant_locked", f"grant {gid} is locked"
    if row["status"] == "revoked":
        return "grant_revoked", f"grant {gid} was revoked by its owner"
    if row["valid_from"] is not None and now < row["valid_from"]:
        return "grant_not_yet_valid", f"grant {gid} is valid from {iso(row['valid_from'])}"
    if row["valid_until"] is not None and now >= row["valid_until"]:
        _note_expired(check, row)
        return "grant_expired", f"grant {gid} expired at {iso(row['valid_until'])}"
    if row["currency"] != check.body.currency:
        return "currency_mismatch", f"grant {gid} is in {row['currency']}, the payment is not"
    if row["remaining_uses"] <= 0:
        return "no_uses_left", f"grant {gid} has no uses left"
    if row["per_use_cap"] is not None and amount > row["per_use_cap"]:
        return "over_per_use_cap", (
            f"{check.money(amount)} is over grant {gid}'s per-use cap "
            f"{check.money(row['per_use_cap'])}"
        )
    if amount > row["remaining_amount"]:
        return "over_remaining_cap", (
            f"{check.money(amount)} is over grant {gid}'s remaining "
            f"{check.money(row['remaining_amount'])}"
        )
    return _scope_failure(check, row)


def _scope_failure(check: _Check, row: Row) -> tuple[str, str] | None:
    gid = row["grant_id"]
    purposes, regions = load_list(row["purposes"]), load_list(row["regions"])
    merchants = load_list(row["merchants"])
    if purposes is not None and check.purpose not in purposes:
        return "purpose_not_allowed", f"grant {gid} does not allow purpose {check.purpose}"
    if regions is not None and check.merchant["region"] not in regions:
        return "region_not_allowed", f"grant {gid} does not allow region {check.merchant['region']}"
    if merchants is not None and check.merchant_id not in merchants:
        return "merchant_not_allowed", f"grant {gid} does not allow merchant {check.merchant_id}"
    return None


def _note_bill_mismatch(check: _Check, share: GrantShareIn, row: Row) -> None:
    """A member's bill-bound grant presented outside its bill: tell the member."""
    gid, bill = row["grant_id"], check.body.bill_id
    outside = f"bill {bill}" if bill else "a payment outside any bill"
    check.notify_share_owner(
        row,
        share,
        "bill_mismatch",
        f"grant {gid} for bill {row['bill_id']} was presented for {outside} "
        f"({check.money(share.amount)} at {check.merchant_id})",
    )


def _note_expired(check: _Check, row: Row) -> None:
    """Tell the owner once that a grant was presented after it expired."""
    gid = row["grant_id"]
    if not check.tx.one(
        "SELECT 1 AS x FROM notifications WHERE grant_id = ? AND kind = 'grant_expired'", (gid,)
    ):
        check.notify_later(
            row["issuing_terminal"], "grant_expired", f"grant {gid} has expired", grant_id=gid
        )


def _check_own_source(check: _Check, own_amount: int) -> None:
    if own_amount <= 0:
        return
    source_id = check.body.means.own_source_id
    owner = check.tx.scalar(
        "SELECT owner_terminal FROM funding_sources WHERE source_id = ?", (source_id,)
    )
    if owner is None or owner != check.body.means.presenting_terminal:
        check.fail(
            "unknown_source",
            f"the presenting terminal has no funding source {source_id}",
            source_id=source_id,
        )
    else:
        check.shares.append(_Share(None, str(source_id), own_amount))


def _check_funding(check: _Check) -> None:
    """Lock every funding source charged (sorted) and check it can bear its total."""
    totals: dict[str, int] = {}
    for share in check.shares:
        totals[share.source_id] = totals.get(share.source_id, 0) + share.amount
    if not totals:
        return
    tx = check.tx
    ids = sorted(totals)
    rows = tx.all(
        "SELECT source_id, owner_terminal, kind, currency, status, card_masked, expiry, "
        "credit_limit, outstanding, balance FROM funding_sources "
        f"WHERE source_id IN ({', '.join('?' * len(ids))}) ORDER BY source_id{tx.for_update}",
        ids,
    )
    check.sources = {row["source_id"]: row for row in rows}
    for source_id in ids:
        failure = _funding_failure(check, check.sources[source_id], totals[source_id])
        if failure is not None:
            for share in check.shares:
                if share.source_id == source_id:
                    code, message = failure
                    whose = f"grant {share.grant_id}" if share.grant_id else "own share"
                    own = None if share.grant_id else source_id
                    check.fail(code, f"{whose}: {message}", share.grant_id, own)


def _funding_failure(check: _Check, source: Row, total: int) -> tuple[str, str] | None:
    if source["status"] != "active" or sources.card_expired(source["expiry"], check.now):
        state = "expired" if source["status"] == "active" else source["status"]
        return "source_not_active", f"the funding source behind this share is {state}"
    if source["currency"] != check.body.currency:
        return "currency_mismatch", f"the funding source is in {source['currency']}"
    if sources.available(source) >= total:
        return None
    code, what = (
        ("limit_exceeded", "card limit")
        if source["kind"] == "card"
        else ("insufficient_balance", f"{source['kind']} balance")
    )
    check.notify_later(
        source["owner_terminal"],
        "limit_declined",
        f"a payment of {check.money(total)}{check.where()} at {check.merchant_id} was declined: "
        f"{what} too low",
        amount=total,
        currency=check.body.currency,
        merchant_id=check.merchant_id,
        bill_id=check.body.bill_id,
    )
    return code, f"the {what} does not cover {check.money(total)}"


def _charge(check: _Check) -> dict[str, Any]:
    with check.tx.pipeline():
        response, challenge_taken = _write_charge(check)
    if challenge_taken.rowcount != 1:
        # A concurrent approval took the challenge after we checked it: run again, and the
        # fresh check declines with challenge_reused.
        raise RetryableConflict("challenge consumed concurrently")
    return response


def _write_charge(check: _Check) -> tuple[dict[str, Any], Any]:
    """Every write of an approval, sent back to back (one round trip on PostgreSQL)."""
    tx, now, body = check.tx, check.now, check.body
    payment_id = crypto.new_id("p")
    for share in check.shares:
        if share.grant_id is not None:
            tx.execute(
                "UPDATE grants SET remaining_amount = remaining_amount - ?, "
                "remaining_uses = remaining_uses - 1 WHERE grant_id = ?",
                (share.amount, share.grant_id),
            )
    for source_id, source in check.sources.items():
        total = sum(s.amount for s in check.shares if s.source_id == source_id)
        column = (
            "outstanding = outstanding +" if source["kind"] == "card" else "balance = balance -"
        )
        tx.execute(f"UPDATE funding_sources SET {column} ? WHERE source_id = ?", (total, source_id))
    payment = {
        "payment_id": payment_id,
        "merchant_id": check.merchant_id,
        "presenting_terminal": body.means.presenting_terminal,
        "amount": body.amount,
        "currency": body.currency,
        "purpose": check.purpose,
        "bill_id": body.bill_id,
        "approval_code": secrets.token_hex(3).upper(),
        "refunded": 0,
        "created_at": now,
    }
    tx.execute(
        f"INSERT INTO payments ({', '.join(payment)}) VALUES ({', '.join('?' * len(payment))})",
        list(payment.values()),
    )
    shares = [
        {"seq": i, "grant_id": s.grant_id, "source_id": s.source_id, "amount": s.amount}
        for i, s in enumerate(check.shares)
    ]
    tx.executemany(
        "INSERT INTO payment_shares (payment_id, seq, grant_id, source_id, amount) "
        "VALUES (?, ?, ?, ?, ?)",
        [(payment_id, s["seq"], s["grant_id"], s["source_id"], s["amount"]) for s in shares],
    )
    legs = [(ledger.source_account(s.source_id), -s.amount) for s in check.shares]
    legs.append((ledger.merchant_account(check.merchant_id), body.amount))
    ledger.post(tx, now, payment_id, body.currency, legs)
    challenge_taken = tx.execute(
        "INSERT INTO challenges (merchant_id, challenge, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT (merchant_id, challenge) DO NOTHING",
        (check.merchant_id, crypto.b64d(body.challenge), now),
    )
    _notify_owners(check)
    return {**payments.view(payment, shares), "replayed": False}, challenge_taken


def _notify_owners(check: _Check) -> None:
    for share in check.shares:
        if share.grant_id is None:
            continue
        row = check.grants[share.grant_id]
        gid, owner = share.grant_id, row["issuing_terminal"]
        common = {"grant_id": gid, "currency": check.body.currency, "bill_id": check.body.bill_id}
        notifications.notify(
            check.tx,
            check.now,
            owner,
            "grant_used",
            f"grant {gid} paid {check.money(share.amount)}"
            + (f" (your share of bill {check.body.bill_id})" if check.body.bill_id else "")
            + f" at {check.merchant_id}",
            amount=share.amount,
            merchant_id=check.merchant_id,
            terminal_id=check.body.means.presenting_terminal,
            **common,
        )
        if row["remaining_uses"] == 1 or row["remaining_amount"] == share.amount:
            notifications.notify(
                check.tx, check.now, owner, "grant_exhausted", f"grant {gid} is used up", **common
            )
