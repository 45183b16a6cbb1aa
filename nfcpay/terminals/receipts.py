"""The target's receipts: one per payment attempt, and the states a receipt goes through.

A :class:`Receipt` is written *before* the means leave this terminal, so a payment is never
forgotten, whatever happens to the link or the process. :class:`Receipts` keeps them in the
home directory as ``receipts/<receipt id>.json``::

    {"receipt_id", "status", "merchant_id", "amount", "currency", "purpose",
     "grants": [{"grant_id", "amount", "remaining_uses_before", "remaining_amount_before"}],
     "bill_id", "own_source_id", "own_amount", "payment_id", "approval_code",
     "decline_code", "message", "created_at", "updated_at", "challenge"}

``challenge`` is the merchant's nonce the means answered (base64url): what the server is
asked about the receipt (``GET /v1/presentations/{merchant}/{challenge}``), and so settles it
*exactly*. A receipt written before nfcpay kept it has no such key; it is settled by
inference instead, from each share's ``*_before`` figures, the *baseline*: what this
terminal knew of the grant when the receipt was made, compared with the server's view now.

States (:class:`ReceiptStatus`) and who moves a receipt from one to the next::

      sent ─── result (pay) ───▶ approved ◀───────────────┐
       │ │ │                                              │
       │ │ └─── result (pay) ───▶ declined                │  settled, charged (wallet)
       │ └───── result (pay) ───▶ pending ────────────────┤
       │                                                  │
       └───── link lost (pay) ──▶ unknown ────────────────┘

      sent, unknown, pending ── the server: no payment so far (wallet) ──▶ as it was
      sent, unknown ── inferred, not charged (wallet, old receipt) ──▶ not_charged

=========  ==============================================  ============================
from       event (who moves it)                            to
=========  ==============================================  ============================
(new)      the means are about to leave (``target pay``)   sent
sent       the merchant's result (``target pay``)          approved, declined, pending
sent       the link is lost before the result (``pay``)    unknown
sent       settled (``target wallet``: pay was killed)     approved; else stays
unknown    settled (``target wallet``)                     approved; else stays
pending    settled (``target wallet``)                     approved; else stays
sent       inferred (``target wallet``, old receipt)       approved or not_charged
unknown    inferred (``target wallet``, old receipt)       approved or not_charged
pending    inferred (``target wallet``, old receipt)       approved; not charged: stays
=========  ==============================================  ============================

``target pay`` is :func:`nfcpay.terminals.target.pay` (through :func:`record_result`);
``target wallet`` (and ``group status``) is :func:`nfcpay.terminals.wallet.refresh`, which
asks the server about each unsettled receipt and settles it with the payment the server
names (:func:`settle_charged`), or, for a receipt without a challenge (or a server too old to
be asked), infers it from the server's view of the grants (:func:`settle`). The server can
say "charged" or "no payment so far", never "never" (see
:mod:`nfcpay.server.services.presentations`), so an exact answer never makes a receipt
``not_charged``: it stays as it was, and the next refresh asks again. ``approved``,
``declined`` and ``not_charged`` are settled: a settled receipt never moves again (any
transition out of one raises :class:`IllegalTransition`).

Whenever a receipt becomes ``approved``, every *other* unsettled receipt's baseline moves
past the charge (:func:`shift_baselines`, which says why): only inference reads baselines.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from nfcpay import crypto
from nfcpay.records import ChallengeRecord, MeansRecord, ResultRecord
from nfcpay.terminals.clock import now_iso
from nfcpay.terminals.held import HeldGrants, LastKnown, Share
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.shelf import Shelf

Json = dict[str, Any]


class ReceiptStatus(StrEnum):
    SENT = "sent"
    UNKNOWN = "unknown"
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"
    NOT_CHARGED = "not_charged"


#: Receipt states that an answer from the server can still settle.
UNSETTLED = frozenset({ReceiptStatus.SENT, ReceiptStatus.UNKNOWN, ReceiptStatus.PENDING})
#: The decline code of a merchant's result that is no decision yet (``merchant.PENDING``).
NO_DECISION_YET = "pending"
#: The message of a receipt settled from the server's record of its payment.
EXACT_MESSAGE = "settled from the server's record of the payment these means made"
#: The message of a receipt settled by inference (no challenge kept, or an old server).
SETTLED_MESSAGE = (
    "inferred from how its grants changed on the server, which could not be asked about "
    "this receipt (written before nfcpay kept the merchant's challenge, or an older server)"
)


class IllegalTransition(RuntimeError):
    """A receipt was asked to move where its state diagram has no arrow."""


@dataclass(frozen=True)
class ReceiptShare:
    """One grant's part of a receipt, with the baseline it was made from."""

    grant_id: str
    amount: int
    remaining_uses_before: int
    remaining_amount_before: int

    def taken_in(self, known: LastKnown) -> bool:
        """Whether ``known`` shows this share charged: a use and its amount gone since."""
        used = known.remaining_uses <= self.remaining_uses_before - 1
        spent = known.remaining_amount <= self.remaining_amount_before - self.amount
        return used and spent


@dataclass(frozen=True)
class Receipt:
    """One payment attempt, as this terminal saw it."""

    receipt_id: str
    status: ReceiptStatus
    merchant_id: str
    amount: int
    currency: str
    purpose: str | None
    grants: tuple[ReceiptShare, ...]
    bill_id: str | None
    own_source_id: str | None
    own_amount: int
    payment_id: str | None
    approval_code: str | None
    decline_code: str | None
    message: str
    created_at: str
    updated_at: str
    #: The merchant's nonce the means answered, base64url (None: an older receipt).
    challenge: str | None = None

    @property
    def is_settled(self) -> bool:
        return self.status not in UNSETTLED

    @classmethod
    def new(
        cls, challenge: ChallengeRecord, shares: Sequence[Share], means: MeansRecord | None = None
    ) -> Receipt:
        """(new) → sent: the receipt of ``means`` answering ``challenge``, made before they
        leave; each share's baseline is what this terminal knows of its grant now."""
        now = now_iso()
        return cls(
            receipt_id=crypto.new_id("rc"),
            status=ReceiptStatus.SENT,
            merchant_id=challenge.merchant_id,
            amount=challenge.fixed_amount,
            currency=challenge.currency,
            purpose=challenge.purpose,
            grants=tuple(
                ReceiptShare(
                    grant_id=held.grant_id,
                    amount=amount,
                    remaining_uses_before=held.last_known.remaining_uses,
                    remaining_amount_before=held.last_known.remaining_amount,
                )
                for held, amount in shares
            ),
            bill_id=means.bill_id if means else None,
            own_source_id=means.own_source_id if means else None,
            own_amount=means.own_amount if means else 0,
            payment_id=None,
            approval_code=None,
            decline_code=None,
            message="",
            created_at=now,
            updated_at=now,
            challenge=crypto.b64e(challenge.nonce),
        )

    def with_result(self, result: ResultRecord) -> Receipt:
        """sent → approved / declined / pending: the merchant's result arrived."""
        if result.approved:
            status = ReceiptStatus.APPROVED
        elif result.decline_code == NO_DECISION_YET:
            status = ReceiptStatus.PENDING
        else:
            status = ReceiptStatus.DECLINED
        return self._moved(
            status,
            "a result",
            {ReceiptStatus.SENT},
            payment_id=result.payment_id,
            approval_code=result.approval_code,
            decline_code=None if status is ReceiptStatus.PENDING else result.decline_code,
            message=result.message,
        )

    def link_lost(self, message: str) -> Receipt:
        """sent → unknown: the link was lost before the result came."""
        return self._moved(
            ReceiptStatus.UNKNOWN, "a lost link", {ReceiptStatus.SENT}, message=message
        )

    def charged_as(self, payment_id: str, approval_code: str) -> Receipt:
        """sent / unknown / pending → approved: the server names the payment these means
        made."""
        return self._moved(
            ReceiptStatus.APPROVED,
            "settling",
            UNSETTLED,
            payment_id=payment_id,
            approval_code=approval_code,
            message=EXACT_MESSAGE,
        )

    def settle(self, charged: bool) -> Receipt:
        """Inferred: sent / unknown / pending → approved when the server's view of the grants
        shows the receipt ``charged``; sent / unknown → not_charged when it does not. A
        pending receipt not charged (yet) is returned as it is: the merchant may still
        settle it."""
        if not charged and self.status is ReceiptStatus.PENDING:
            return self
        status = ReceiptStatus.APPROVED if charged else ReceiptStatus.NOT_CHARGED
        return self._moved(status, "settling", UNSETTLED, message=SETTLED_MESSAGE)

    def charged_by(self, known: Mapping[str, LastKnown]) -> bool:
        """Whether every grant of the receipt lost a use and its share since it was made."""
        return all([share.taken_in(known[share.grant_id]) for share in self.grants])

    def baseline_past(self, charged: Receipt) -> Receipt:
        """This unsettled receipt with its baseline moved past the approved ``charged``: one
        use and ``charged``'s amount less of every grant they share (see
        :func:`shift_baselines`)."""
        if self.is_settled or charged.status is not ReceiptStatus.APPROVED:
            raise IllegalTransition(
                f"receipt {self.receipt_id} is {self.status}, receipt {charged.receipt_id} is "
                f"{charged.status}: only an unsettled receipt moves past an approved one"
            )
        spent = {share.grant_id: share.amount for share in charged.grants}
        return replace(
            self,
            grants=tuple(
                replace(
                    share,
                    remaining_uses_before=share.remaining_uses_before - 1,
                    remaining_amount_before=share.remaining_amount_before - spent[share.grant_id],
                )
                if share.grant_id in spent
                else share
                for share in self.grants
            ),
        )

    def _moved(
        self,
        status: ReceiptStatus,
        event: str,
        allowed_from: Collection[ReceiptStatus],
        **changes: Any,
    ) -> Receipt:
        if self.status not in allowed_from:
            raise IllegalTransition(
                f"receipt {self.receipt_id} is {self.status}: {event} cannot move it"
            )
        return replace(self, status=status, updated_at=now_iso(), **changes)

    @classmethod
    def from_json(cls, data: Json) -> Receipt:
        """A receipt as stored; one written before group bills has no bill fields, one
        written before exact outcomes no challenge (a challenge that is not base64url
        raises ValueError)."""
        if data.get("challenge") is not None:
            crypto.b64d(data["challenge"])
        return cls(
            **{
                **BEFORE_BILLS,
                **data,
                "status": ReceiptStatus(data["status"]),
                "grants": tuple(ReceiptShare(**share) for share in data["grants"]),
            }
        )

    def to_json(self) -> Json:
        """The receipt file; one without a challenge is written as before (no such key)."""
        data = {
            **asdict(self),
            "status": self.status.value,
            "grants": [asdict(share) for share in self.grants],
        }
        if self.challenge is None:
            del data["challenge"]
        return data


#: What a receipt stored before group bills lacks: it paid no bill and had no own share.
BEFORE_BILLS: Json = {"bill_id": None, "own_source_id": None, "own_amount": 0}


class Receipts(Shelf[Receipt]):
    """The receipts in a target's home: ``receipts/<receipt id>.json``."""

    kind = "receipts"
    id_field = "receipt_id"

    def parse(self, data: Json) -> Receipt:
        return Receipt.from_json(data)


def record_result(home: TerminalHome, receipt: Receipt, result: ResultRecord) -> Receipt:
    """Keep the merchant's ``result`` for the sent ``receipt``; when approved, move the other
    receipts' baselines past it and count the charge down in the grants it used."""
    receipt = receipt.with_result(result)
    Receipts(home).put(receipt)
    if receipt.status is ReceiptStatus.APPROVED:
        shift_baselines(home, receipt)
        grants = HeldGrants(home)
        for share in receipt.grants:
            grants.put(grants.get(share.grant_id).charged(share.amount))
    return receipt


def settle(home: TerminalHome, receipt: Receipt) -> Receipt:
    """Infer an unsettled ``receipt`` from what is known of its grants (just refreshed from
    the server): charged if every grant of it lost a use and its share since it was made.
    Only for a receipt the server cannot be asked about (see :func:`settle_charged`)."""
    grants = HeldGrants(home)
    known = {share.grant_id: grants.get(share.grant_id).last_known for share in receipt.grants}
    settled = receipt.settle(receipt.charged_by(known))
    if settled is receipt:  # pending, and not charged yet
        return receipt
    return _keep_settled(home, settled)


def settle_charged(
    home: TerminalHome, receipt: Receipt, payment_id: str, approval_code: str
) -> Receipt:
    """Settle an unsettled ``receipt`` as approved: the server says its means made
    ``payment_id``."""
    return _keep_settled(home, receipt.charged_as(payment_id, approval_code))


def _keep_settled(home: TerminalHome, settled: Receipt) -> Receipt:
    Receipts(home).put(settled)
    if settled.status is ReceiptStatus.APPROVED:
        shift_baselines(home, settled)
    return settled


def shift_baselines(home: TerminalHome, charged: Receipt) -> None:
    """Move the baseline of every other unsettled receipt past ``charged``.

    An unsettled receipt was made from a view of its grants that did not include this
    charge (a tap retried after a lost result, before ``target wallet``); without this, the
    use and amount the retry spent would later be read as the lost tap's charge too.
    """
    receipts = Receipts(home)
    charged_grants = {share.grant_id for share in charged.grants}
    for other in receipts.each():
        if other.receipt_id == charged.receipt_id or other.is_settled:
            continue
        if any(share.grant_id in charged_grants for share in other.grants):
            receipts.put(other.baseline_past(charged))
