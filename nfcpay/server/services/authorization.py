"""Payment authorization (patent FIG. 6): check the payment means, then charge every share
or none, in ONE transaction.

The rules are pure functions in :mod:`.rules` (request and rows in, failures out); this
module is the work: it reads and locks the rows the rules need, runs the rules in order,
and writes the owner notifications (worded by :data:`notifications.TEXTS`) and, for an
approval, the charge.

Order of work inside the transaction:

1. claim the merchant's idempotency key (a finished earlier request is replayed);
2. check the split (shares add up), that a bill is not paid already and paid on its terms
   (PostgreSQL: a transaction-scoped advisory lock on the bill id serializes its payers, and
   the bill's row is locked), the presenting terminal's signature over the merchant's
   challenge, and that the challenge is fresh;
3. lock the grants, then their funding sources, each in sorted id order (PostgreSQL
   ``FOR UPDATE``; SQLite holds the write lock already) and check every rule on every share;
4. a bill that is not the presenting terminal's is declined after all that (its members'
   grant alarms still go out), without a write to the bill;
5. on any failure: release the key, write only the owner notifications, answer "declined";
6. otherwise charge: grants, sources, payment, shares, ledger, challenge, notifications.

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
from nfcpay.declines import DeclineCode
from nfcpay.errors import InvalidRequest
from nfcpay.server import ledger
from nfcpay.server.runtime import Caller, Runtime
from nfcpay.server.schemas import GrantShareIn, PaymentIn
from nfcpay.server.services import (
    allowances,
    bills,
    idempotency,
    merchants,
    notifications,
    payments,
)
from nfcpay.server.services.grants import GRANT_COLUMNS
from nfcpay.server.services.rules import (
    LOCK_AFTER_MISMATCHES,
    SHORTFALLS,
    Attempt,
    Failure,
    Share,
    backed_shares_rule,
    bill_members_rule,
    bill_owner_rule,
    bill_rule,
    challenge_bytes,
    challenge_rule,
    grant_rule,
    own_source_rule,
    purpose_rule,
    shortfall,
    signature_rule,
    source_rule,
    split_rule,
    usage_auth_genuine,
)
from nfcpay.server.store import RetryableConflict, Row, Tx


@dataclass
class _Check:
    """The state of one authorization while its rules are checked."""

    tx: Tx
    rt: Runtime
    attempt: Attempt
    failures: list[Failure] = field(default_factory=list)
    #: Writes a decline still makes: owner notifications (and a grant lock).
    on_decline: list[Callable[[], None]] = field(default_factory=list)
    shares: list[Share] = field(default_factory=list)
    grants: dict[str, Row] = field(default_factory=dict)
    sources: dict[str, Row] = field(default_factory=dict)

    def add(self, failure: Failure | None) -> None:
        if failure is not None:
            self.failures.append(failure)

    def notify_later(self, owner: str, kind: str, **fields: Any) -> None:
        """Tell ``owner`` if the payment is declined (``fields`` as :func:`notifications.notify`
        takes them)."""
        self.on_decline.append(
            lambda: notifications.notify(self.tx, self.attempt.now, owner, kind, **fields)
        )

    def names(self) -> dict[str, str | None]:
        """The merchant's name and the presenting terminal's label, as notification facts."""
        key = self.rt.terminal_key(self.tx, self.attempt.presenting)
        return {
            "merchant_name": self.attempt.merchant["name"],
            "terminal_label": None if key is None else key.label,
        }

    def notify_share_owner(self, row: Row, share: GrantShareIn, kind: str, **facts: Any) -> None:
        """Tell a grant's owner about this attempt on it: who, how much, where, which bill."""
        attempt = self.attempt
        self.notify_later(
            row["issuing_terminal"],
            kind,
            grant_id=row["grant_id"],
            amount=share.amount,
            currency=attempt.body.currency,
            merchant_id=attempt.merchant_id,
            terminal_id=attempt.presenting,
            bill_id=attempt.body.bill_id,
            facts=self.names() | facts,
        )


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
    categories = tuple(merchants.categories(tx, merchant_id))
    check = _Check(tx, rt, Attempt(body, merchant_id, merchant, now, categories))
    own_amount, failure = split_rule(check.attempt)
    check.add(failure)
    if not check.failures:
        check.add(purpose_rule(check.attempt))
    foreign_bill = None if check.failures else _check_bill(check)
    if not check.failures:
        _check_presentation(check)
    if not check.failures:
        _check_grants(check)
        _check_own_source(check, own_amount)
        _check_funding(check)
    check.add(foreign_bill)
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
    challenge_bytes(body.challenge)
    _check_version(body.means.version)


def _check_version(version: int | None) -> None:
    """The means must be signed in this server's presentation layout; nothing else can be
    checked, and the sender is told which side runs the older nfcpay."""
    ours = crypto.PRESENTATION_VERSION
    if version == ours:
        return
    theirs = version or 1  # merchants before version 2 send no version
    where = "the merchant and target terminals" if theirs < ours else "the payment server"
    raise InvalidRequest(
        f"the means are signed in presentation version {theirs}, this server checks version "
        f"{ours} (which signs the purpose): upgrade nfcpay on {where}",
        code="unsupported_version",
        field="means.version",
    )


def _check_bill(check: _Check) -> Failure | None:
    """The presenting terminal's bill is unpaid and paid on its terms. Its payers are
    serialized (PostgreSQL: an advisory lock on the bill id and the bill's row lock; SQLite:
    the transaction's write lock), and the unique index on payments.bill_id backs "paid at
    most once" up.

    Returns (without adding it) why the bill is not the presenting terminal's: the grants are
    still checked, so a member whose grant was copied is told as for any other payment. Such
    a payment takes no lock on the bill: a bill's collector never changes, so whose it is
    needs none, and a stranger cannot make its collector wait."""
    tx, bill_id = check.tx, check.attempt.body.bill_id
    if bill_id is None:
        return None
    bill = bills.load(tx, bill_id)
    foreign = bill_owner_rule(check.attempt, bill)
    if foreign is not None:
        return foreign
    if tx.dialect == "postgresql":
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (bill_id,))
        bill = bills.load(tx, bill_id, lock=True)  # read again now that payers wait in turn
    if bill is not None:
        check.add(bill_rule(check.attempt, bill))
    return None


def _check_presentation(check: _Check) -> None:
    attempt = check.attempt
    key = check.rt.terminal_key(check.tx, attempt.presenting)
    failure = signature_rule(attempt, key)
    if failure is not None:
        check.add(failure)
        if key is not None:
            _note_copies(check)
        return
    used = check.tx.one(
        "SELECT 1 AS x FROM challenges WHERE merchant_id = ? AND challenge = ?",
        (attempt.merchant_id, crypto.b64d(attempt.body.challenge)),
    )
    check.add(challenge_rule(bool(used)))


def _note_copies(check: _Check) -> None:
    """Unsigned means with a genuine usage-auth for the named terminal are a copy of that
    terminal's grant presented by someone else: tell each such grant's owner. A wrong or
    made-up usage-auth proves nothing was copied, so a stranger who only knows a grant id
    cannot make its owner's phone ring."""
    shares = {share.grant_id: share for share in check.attempt.body.means.grants}
    if not shares:
        return
    marks = ", ".join("?" * len(shares))
    rows = check.tx.all(
        f"SELECT grant_id, issuing_terminal, auth_code_enc FROM grants WHERE grant_id IN ({marks})",
        sorted(shares),
    )
    for row in rows:
        share = shares[row["grant_id"]]
        if usage_auth_genuine(check.attempt, share, row, check.rt.cipher):
            check.notify_share_owner(row, share, "forged_presentation")


def _check_grants(check: _Check) -> None:
    shares = check.attempt.body.means.grants
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
        [check.attempt.presenting, *ids],
    )
    check.grants = {row["grant_id"]: row for row in rows}
    for share in shares:
        row = check.grants.get(share.grant_id)
        failure = grant_rule(check.attempt, share, row, check.rt.cipher)
        if failure is not None:
            check.add(failure)
            tell = _TELL_GRANT_OWNER.get(failure.code)
            if row is not None and tell is not None:
                tell(check, share, row)
        elif row is not None:
            check.shares.append(Share(share.grant_id, row["source_id"], share.amount))
    if not check.failures:  # (a failing share already names what to fix)
        check.add(bill_members_rule(check.attempt, rows))


def _note_not_allowed(check: _Check, share: GrantShareIn, row: Row) -> None:
    check.notify_share_owner(row, share, "terminal_not_allowed")


def _note_mismatch(check: _Check, share: GrantShareIn, row: Row) -> None:
    gid = row["grant_id"]
    check.notify_share_owner(row, share, "usage_auth_mismatch")
    earlier = check.tx.scalar(
        "SELECT COUNT(*) AS n FROM notifications WHERE grant_id = ? AND kind = ?",
        (gid, "usage_auth_mismatch"),
    )
    if row["status"] == "active" and int(earlier or 0) + 1 >= LOCK_AFTER_MISMATCHES:

        def lock() -> None:
            check.tx.execute("UPDATE grants SET status = 'locked' WHERE grant_id = ?", (gid,))

        check.on_decline.append(lock)
        check.notify_later(
            row["issuing_terminal"],
            "grant_locked",
            grant_id=gid,
            facts={"after": LOCK_AFTER_MISMATCHES},
        )


def _note_bill_mismatch(check: _Check, share: GrantShareIn, row: Row) -> None:
    """A member's bill-bound grant presented outside its bill: tell the member."""
    check.notify_share_owner(row, share, "bill_mismatch", grant_bill=row["bill_id"])


def _note_expired(check: _Check, share: GrantShareIn, row: Row) -> None:
    """Tell the owner once that a grant was presented after it expired."""
    gid = row["grant_id"]
    if not check.tx.one(
        "SELECT 1 AS x FROM notifications WHERE grant_id = ? AND kind = 'grant_expired'", (gid,)
    ):
        check.notify_later(row["issuing_terminal"], "grant_expired", grant_id=gid)


#: What a grant's owner is told (and what that reads) when a share of the grant is declined.
_TELL_GRANT_OWNER: dict[DeclineCode, Callable[[_Check, GrantShareIn, Row], None]] = {
    DeclineCode.TERMINAL_NOT_ALLOWED: _note_not_allowed,
    DeclineCode.USAGE_AUTH_MISMATCH: _note_mismatch,
    DeclineCode.BILL_MISMATCH: _note_bill_mismatch,
    DeclineCode.GRANT_EXPIRED: _note_expired,
}


def _check_own_source(check: _Check, own_amount: int) -> None:
    if own_amount <= 0:
        return
    source_id = check.attempt.body.means.own_source_id
    owner = check.tx.scalar(
        "SELECT owner_terminal FROM funding_sources WHERE source_id = ?", (source_id,)
    )
    failure = own_source_rule(check.attempt, owner)
    if failure is None:
        check.shares.append(Share(None, str(source_id), own_amount))
    check.add(failure)


def _check_funding(check: _Check) -> None:
    """Lock every funding source charged (sorted) and check it can bear its total."""
    totals: dict[str, int] = {}
    for share in check.shares:
        totals[share.source_id] = totals.get(share.source_id, 0) + share.amount
    if not totals:
        return
    tx, attempt = check.tx, check.attempt
    ids = sorted(totals)
    rows = tx.all(
        "SELECT source_id, owner_terminal, kind, currency, status, card_masked, expiry, "
        "credit_limit, outstanding, balance FROM funding_sources "
        f"WHERE source_id IN ({', '.join('?' * len(ids))}) ORDER BY source_id{tx.for_update}",
        ids,
    )
    check.sources = {row["source_id"]: row for row in rows}
    for source_id in ids:
        source = check.sources[source_id]
        failure = source_rule(attempt, source, totals[source_id])
        if failure is None:
            continue
        if failure.code in SHORTFALLS:
            check.notify_later(
                source["owner_terminal"],
                "limit_declined",
                amount=totals[source_id],
                currency=attempt.body.currency,
                merchant_id=attempt.merchant_id,
                bill_id=attempt.body.bill_id,
                facts={"what": shortfall(source), "merchant_name": attempt.merchant["name"]},
            )
        check.failures += backed_shares_rule(failure, check.shares, source_id)


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
    tx, now, body = check.tx, check.attempt.now, check.attempt.body
    merchant_id = check.attempt.merchant_id
    payment_id = crypto.new_id("p")
    for share in check.shares:
        if share.grant_id is not None:
            _charge_grant(tx, check.grants[share.grant_id], share.amount, now)
    for source_id, source in check.sources.items():
        total = sum(s.amount for s in check.shares if s.source_id == source_id)
        column = (
            "outstanding = outstanding +" if source["kind"] == "card" else "balance = balance -"
        )
        tx.execute(f"UPDATE funding_sources SET {column} ? WHERE source_id = ?", (total, source_id))
    payment = {
        "payment_id": payment_id,
        "merchant_id": merchant_id,
        "presenting_terminal": body.means.presenting_terminal,
        "amount": body.amount,
        "currency": body.currency,
        "purpose": check.attempt.purpose,
        "bill_id": body.bill_id,
        "approval_code": secrets.token_hex(3).upper(),
        "refunded": 0,
        "created_at": now,
    }
    tx.execute(
        f"INSERT INTO payments ({', '.join(payment)}) VALUES ({', '.join('?' * len(payment))})",
        list(payment.values()),
    )
    if body.bill_id is not None:
        bills.mark_paid(tx, body.bill_id, payment_id)
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
    legs.append((ledger.merchant_account(merchant_id), body.amount))
    ledger.post(tx, now, payment_id, body.currency, legs)
    challenge_taken = tx.execute(
        "INSERT INTO challenges (merchant_id, challenge, created_at, payment_id) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (merchant_id, challenge) DO NOTHING",
        (merchant_id, crypto.b64d(body.challenge), now, payment_id),
    )
    names = check.names()
    _notify_owners(check, names)
    named = payment | {
        "merchant_name": names["merchant_name"],
        "presenting_label": names["terminal_label"],
    }
    return {**payments.view(named, shares), "replayed": False}, challenge_taken


def _charge_grant(tx: Tx, row: Row, amount: int, now: int) -> None:
    """Take ``amount`` and a use from grant ``row``, and count it in its allowance's interval."""
    limit = allowances.of(row, now)
    if limit is None:
        tx.execute(
            "UPDATE grants SET remaining_amount = remaining_amount - ?, "
            "remaining_uses = remaining_uses - 1 WHERE grant_id = ?",
            (amount, row["grant_id"]),
        )
        return
    tx.execute(
        "UPDATE grants SET remaining_amount = remaining_amount - ?, "
        "remaining_uses = remaining_uses - 1, interval_start = ?, interval_spent = ? "
        "WHERE grant_id = ?",
        (amount, *limit.after(amount), row["grant_id"]),
    )


def _notify_owners(check: _Check, names: dict[str, str | None]) -> None:
    attempt = check.attempt
    for share in check.shares:
        if share.grant_id is None:
            continue
        row = check.grants[share.grant_id]
        gid, owner = share.grant_id, row["issuing_terminal"]
        common: dict[str, Any] = {
            "grant_id": gid,
            "currency": attempt.body.currency,
            "bill_id": attempt.body.bill_id,
        }
        notifications.notify(
            check.tx,
            attempt.now,
            owner,
            "grant_used",
            amount=share.amount,
            merchant_id=attempt.merchant_id,
            terminal_id=attempt.presenting,
            facts=names,
            **common,
        )
        if row["remaining_uses"] == 1 or row["remaining_amount"] == share.amount:
            notifications.notify(check.tx, attempt.now, owner, "grant_exhausted", **common)
