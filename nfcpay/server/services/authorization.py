"""Payment authorization (patent FIG. 6): check the payment means, then charge every share
or none, in ONE transaction.

The rules are pure functions in :mod:`.rules` (request and rows in, failures out); this
module is the work: it reads and locks the rows the rules need, runs the rules in order,
and writes the owner notifications (worded by :data:`notifications.TEXTS`) and, for an
approval, the charge.

Order of work inside the transaction:

0. send the reads the rules need (:class:`Reads`; on PostgreSQL in the request nonce's
   pipeline, :meth:`Authorization.send`, so BEGIN, the nonce and all of them take ONE round
   trip): the idempotency claim, the merchant's categories, whether the challenge was used
   and, for a payment outside a bill, the grants and their funding sources, locked;
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
6. otherwise charge: grants, sources, payment, shares, ledger, challenge, notifications and
   the idempotency record, sent back to back (one round trip on PostgreSQL).

So an approval outside a bill takes three round trips on PostgreSQL: the reads, the writes
and the COMMIT. The rules run in Python, once, on the rows read: there is no second copy of
any of them in SQL.

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
from nfcpay.server.store import Cursor, RetryableConflict, Row, Tx


@dataclass
class _Check:
    """The state of one authorization while its rules are checked."""

    tx: Tx
    rt: Runtime
    attempt: Attempt
    reads: Reads
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


class Reads:
    """What the rules read before they run, sent together and read afterwards (one round
    trip on PostgreSQL when sent inside a pipeline): the idempotency claim, the merchant's
    categories, whether the challenge was used and — for a payment outside a bill, which
    takes no bill lock before its grants — the grants and every funding source they or the
    means name, each locked in sorted id order. A bill's grants and sources are read when
    the rules come to them (:meth:`grants`, :meth:`sources`), after the bill's lock."""

    def __init__(
        self, tx: Tx, merchant_id: str, body: PaymentIn, key: str, digest: bytes, now: int
    ) -> None:
        self.now = now
        self._merchant_id, self._key, self._digest = merchant_id, key, digest
        self._claim = idempotency.send_claim(tx, merchant_id, key, now, digest)
        self._categories = merchants.send_categories(tx, merchant_id)
        self._challenge = tx.send(
            "SELECT 1 AS x FROM challenges WHERE merchant_id = ? AND challenge = ?",
            (merchant_id, crypto.b64d(body.challenge)),
        )
        self._grants: Cursor | None = None
        self._sources: dict[str, Row] | Cursor | None = None
        ids = sorted(share.grant_id for share in body.means.grants)
        if body.bill_id is None and ids:
            self._grants = _send_grants(tx, body.means.presenting_terminal, ids)
            marks = ", ".join("?" * len(ids))
            self._sources = _send_sources(
                tx,
                f"SELECT source_id FROM grants WHERE grant_id IN ({marks}) UNION SELECT ?",
                [*ids, body.means.own_source_id],
            )

    def claimed(self, tx: Tx) -> idempotency.Stored | None:
        return idempotency.claimed(tx, self._claim, self._merchant_id, self._key, self._digest)

    def categories(self) -> list[str]:
        return merchants.categories_in(self._categories)

    def challenge_used(self) -> bool:
        return bool(self._challenge.fetchall())

    def grants(self, tx: Tx, presenting: str, ids: list[str]) -> list[Row]:
        """The grants ``ids`` (sorted), locked, each with ``allowed`` for ``presenting``."""
        if self._grants is None:
            return _send_grants(tx, presenting, ids).fetchall()
        return self._grants.fetchall()

    def sources(self, tx: Tx, ids: list[str]) -> dict[str, Row]:
        """The funding sources ``ids`` (sorted) that exist, locked, by id."""
        if self._sources is None:
            marks = ", ".join("?" * len(ids))
            return {row["source_id"]: row for row in _send_sources(tx, marks, ids).fetchall()}
        return {i: self._sent_sources()[i] for i in ids if i in self._sent_sources()}

    def owner_of(self, tx: Tx, source_id: str) -> str | None:
        """The owner of funding source ``source_id``; None when there is no such source."""
        if self._sources is None:
            return tx.scalar(  # type: ignore[no-any-return]
                "SELECT owner_terminal FROM funding_sources WHERE source_id = ?", (source_id,)
            )
        source = self._sent_sources().get(source_id)
        return None if source is None else source["owner_terminal"]

    def _sent_sources(self) -> dict[str, Row]:
        if not isinstance(self._sources, dict):
            assert self._sources is not None
            self._sources = {row["source_id"]: row for row in self._sources.fetchall()}
        return self._sources


def _send_grants(tx: Tx, presenting: str, ids: list[str]) -> Cursor:
    """One statement: the grants (locked) and whether the presenting terminal may use each."""
    marks = ", ".join("?" * len(ids))
    return tx.send(
        f"SELECT {GRANT_COLUMNS}, auth_code_enc, EXISTS (SELECT 1 FROM grant_terminals t "
        "WHERE t.grant_id = grants.grant_id AND t.terminal_id = ?) AS allowed "
        f"FROM grants WHERE grant_id IN ({marks}) ORDER BY grant_id{tx.for_update}",
        [presenting, *ids],
    )


def _send_sources(tx: Tx, among: str, params: list[Any]) -> Cursor:
    """The funding sources whose id is ``among`` (a list of marks or a subquery), locked in
    id order."""
    return tx.send(
        "SELECT source_id, owner_terminal, kind, currency, status, card_masked, expiry, "
        "credit_limit, outstanding, balance FROM funding_sources "
        f"WHERE source_id IN ({among}) ORDER BY source_id{tx.for_update}",
        params,
    )


class Authorization:
    """The payment route's unit of work: :meth:`send` sends its :class:`Reads` (in the
    request nonce's pipeline, :meth:`Runtime.unit`'s ``first``), calling it runs
    :func:`authorize` on them."""

    def __init__(
        self, rt: Runtime, caller: Caller, body: PaymentIn, key: str, digest: bytes
    ) -> None:
        self.rt, self.caller, self.body, self.key, self.digest = rt, caller, body, key, digest
        self._reads: Reads | None = None

    def send(self, tx: Tx) -> None:
        self._reads = None
        merchant_id = self.caller.merchant_id
        if merchant_id is None or not _well_formed(self.body):
            return  # authorize refuses it (403, 422) before reading anything
        self._reads = Reads(tx, merchant_id, self.body, self.key, self.digest, self.rt.now_us())

    def __call__(self, tx: Tx) -> dict[str, Any]:
        return authorize(tx, self.rt, self.caller, self.body, self.key, self.digest, self._reads)


def authorize(
    tx: Tx,
    rt: Runtime,
    caller: Caller,
    body: PaymentIn,
    key: str,
    digest: bytes,
    reads: Reads | None = None,
) -> dict[str, Any]:
    """Authorize ``body`` and charge it, or decline it; ``reads``: sent already, else now."""
    merchant_id = payments.require_merchant(caller)
    _check_shape(body)
    if reads is None:
        reads = Reads(tx, merchant_id, body, key, digest, rt.now_us())
    now = reads.now
    stored = reads.claimed(tx)
    if stored is not None:
        return {**stored.response, "replayed": True}
    merchant = rt.merchant(tx, merchant_id)
    if merchant is None:
        raise RuntimeError(f"merchant {merchant_id} of a registered terminal is missing")
    categories = tuple(reads.categories())
    check = _Check(tx, rt, Attempt(body, merchant_id, merchant, now, categories), reads)
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
    return _charge(check, key)


def declined(failures: list[Failure]) -> dict[str, Any]:
    return {
        "payment_id": None,
        "status": "declined",
        "decline_code": failures[0].code,
        "message": failures[0].message,
        "failing": [f.as_dict() for f in failures],
        "replayed": False,
    }


def _well_formed(body: PaymentIn) -> bool:
    try:
        _check_shape(body)
    except InvalidRequest:
        return False
    return True


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
    check.add(challenge_rule(check.reads.challenge_used()))


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
    ids = sorted(share.grant_id for share in shares)
    rows = check.reads.grants(check.tx, check.attempt.presenting, ids)
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
    owner = check.reads.owner_of(check.tx, source_id) if source_id is not None else None
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
    attempt = check.attempt
    ids = sorted(totals)
    check.sources = check.reads.sources(check.tx, ids)
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


def _charge(check: _Check, key: str) -> dict[str, Any]:
    with check.tx.pipeline():
        response, challenge_taken = _write_charge(check)
        idempotency.complete(check.tx, check.attempt.merchant_id, key, 200, response)
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
    tx.insert(
        "payment_shares (payment_id, seq, grant_id, source_id, amount)",
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
