"""The merchant terminal: waits for a target's tap, challenges it, asks the server, answers.

Crash safety (issue 4, acceptance 3): before the payment request leaves this terminal, a
*pending receipt* holding the exact request and its idempotency key is written to
``receipts/<receipt id>.json``. Whatever happens next — the server unreachable, the process
killed, the link to the target lost — the receipt either records the server's answer or
can be sent again with the same key by :func:`settle`, which the server answers with the
first decision and never charges twice. The request (usage-auth, signature) is dropped
from the receipt once it is final.

An *open* charge (``amount`` None) sends a challenge without an amount: the target's person
enters it, at most ``max_amount``, and the target signs it (see
:mod:`nfcpay.records.challenge`). The merchant charges exactly the amount signed, and refuses
means over its maximum itself, before the server hears of them.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from nfcpay import crypto
from nfcpay.client import PaymentClient, new_idempotency_key
from nfcpay.errors import (
    AmountRefused,
    ApiError,
    Declined,
    DecodeError,
    ServerUnavailable,
    TransportError,
)
from nfcpay.money import Money, format_minor
from nfcpay.names import labelled
from nfcpay.records import ChallengeRecord, HelloRecord, MeansRecord, ResultRecord, Role
from nfcpay.records.base import UNSUPPORTED_VERSION
from nfcpay.records.presentation import signed_amount
from nfcpay.terminals import exchange
from nfcpay.terminals.clock import now_iso
from nfcpay.terminals.exchange import Status, quiet
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.open_amount import (
    AMOUNT_NEEDED,
    ENTRY_TAPS,
    ENTRY_TIMEOUT,
    asked,
    check_max,
)
from nfcpay.terminals.parties import Parties
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

Json = dict[str, Any]
#: The decline code a target receives when the merchant could not reach the server.
PENDING = "pending"


@dataclass
class Charge:
    """One charge as the merchant knows it; ``status`` approved, declined or pending."""

    receipt_id: str
    idempotency_key: str
    status: str
    amount: int
    currency: str
    purpose: str | None
    presenting_terminal: str | None
    payment_id: str | None = None
    approval_code: str | None = None
    decline_code: str | None = None
    message: str = ""
    delivered: bool | None = None
    replayed: bool = False
    #: The customer's terminal entered the amount (an open charge).
    open_amount: bool = False
    created_at: str = ""
    updated_at: str = ""
    #: The presenting terminal's label, as the server's approval names it.
    presenting_label: str | None = None

    def to_json(self) -> Json:
        return {"ok": self.status == "approved", **asdict(self)}

    def describe(self) -> str:
        money = format_minor(self.amount, self.currency)
        if self.status == "approved":
            payer = labelled(self.presenting_label, str(self.presenting_terminal))
            return (
                f"APPROVED {money} paid by {payer} — payment {self.payment_id}, "
                f"approval {self.approval_code}"
            )
        if self.status == "declined":
            return f"DECLINED {money} — {self.decline_code}: {self.message}"
        return f"PENDING {money} — {self.message}"


def charge(
    home: TerminalHome,
    client: PaymentClient,
    reader: Reader,
    amount: Money | None,
    *,
    max_amount: Money | None = None,
    purpose: str | None = None,
    timeout: float | None = None,
    status: Status = quiet,
) -> Charge:
    """Wait for a target's tap and charge ``amount`` for ``purpose`` (default: the merchant's
    primary category) to the means it presents; with ``amount`` None, whatever amount the
    target enters and signs, at most ``max_amount``.

    A target whose person has still to enter the amount of an open charge ends its first tap
    with "amount needed"; the charge then waits (:data:`ENTRY_TIMEOUT` at least) for the tap
    that brings the amount, up to :data:`ENTRY_TAPS` taps in all."""
    identity = home.require_role("merchant")
    for money in (amount, max_amount):
        if money is not None and (money.currency != identity.currency or money.minor <= 0):
            raise ValueError(f"charge needs a positive amount in {identity.currency}")
    if amount is not None and max_amount is not None:
        raise ValueError("a maximum is for open charges, where the customer enters the amount")
    purpose = purpose or categories(home, client)[0]
    challenge = ChallengeRecord(
        merchant_id=str(identity.merchant_id),
        currency=identity.currency,
        amount=None if amount is None else amount.minor,
        max_amount=None if max_amount is None else max_amount.minor,
        nonce=secrets.token_bytes(16),
        purpose=purpose,
    )
    taps = 1
    while True:
        try:
            return _charge_tap(home, client, reader, challenge, timeout, status)
        except Declined as exc:
            if exc.code != AMOUNT_NEEDED or not challenge.is_open or taps == ENTRY_TAPS:
                raise
        taps += 1
        status("The customer is entering the amount; waiting for their tap with it ...")
        timeout = None if timeout is None else max(timeout, ENTRY_TIMEOUT)


def _charge_tap(
    home: TerminalHome,
    client: PaymentClient,
    reader: Reader,
    challenge: ChallengeRecord,
    timeout: float | None,
    status: Status,
) -> Charge:
    """One tap of :func:`charge`: the challenge out, the means in, the server's answer back
    (a link lost after the answer still returns the charge, undelivered)."""
    receipt: Charge | None = None
    try:
        with exchange.tap(
            reader,
            exchange.PAY_SERVICE,
            offer=True,
            timeout=timeout,
            status=status,
            what=f"charge {asked(challenge, 'the customer enters')}",
        ) as channel:
            receipt = _converse(channel, home, client, challenge, status)
    except TransportError:
        if receipt is None:
            raise
    return receipt


def categories(home: TerminalHome, client: PaymentClient) -> list[str]:
    """This merchant's categories, primary first, as this home knows them (a home made
    before merchants had several asks the server once and keeps the answer)."""
    identity = home.require_role("merchant")
    if identity.categories:
        return identity.categories
    return remember_categories(home, client.merchant_categories()["categories"])


def remember_categories(home: TerminalHome, known: list[str]) -> list[str]:
    """Keep ``known`` as this merchant's categories in its home; returns them."""
    home.save_identity(dataclasses.replace(home.identity(), categories=list(known)))
    return known


def _converse(
    channel: Channel,
    home: TerminalHome,
    client: PaymentClient,
    challenge: ChallengeRecord,
    status: Status,
) -> Charge:
    hello = exchange.receive(channel, HelloRecord)
    if hello.role is not Role.TARGET:
        message = f"a {hello.role.value} terminal tapped; only a target terminal pays"
        exchange.refuse(channel, "wrong_role", message)
        raise Declined(message, code="wrong_role")
    exchange.send(channel, challenge)
    means = _receive_means(channel, exchange.REPLY_TIMEOUT)
    try:
        request = payment_request(challenge, means)
    except (Declined, AmountRefused) as exc:
        exchange.refuse(channel, exc.code, exc.message)
        raise
    receipt = _pending(home, challenge, means, request)
    status(
        f"Target {Parties(home).labelled(means.presenting_terminal)} presented "
        f"{format_minor(receipt.amount, receipt.currency)}; asking the payment server ..."
    )
    _authorize(home, client, receipt)
    # The result goes out before the answer is saved: one durable write less while the
    # customer waits. A crash in between leaves the pending receipt (request and key), and
    # `merchant settle` gets the same decision back from the server.
    try:
        exchange.send(channel, result_record(receipt))
        receipt.delivered = True
    except TransportError:
        receipt.delivered = False
    _save(home, receipt)
    return receipt


def _receive_means(channel: Channel, timeout: float) -> MeansRecord:
    """The target's means; a means of another version (a target on another nfcpay release)
    is refused with the sentence that says which side to upgrade."""
    try:
        return exchange.receive(channel, MeansRecord, timeout)
    except DecodeError as exc:
        if exc.code == UNSUPPORTED_VERSION:
            exchange.refuse(channel, exc.code, exc.message)
        raise


def payment_request(challenge: ChallengeRecord, means: MeansRecord) -> Json:
    """What the server is asked for ``means`` answering this terminal's ``challenge``.

    Purpose and nonce come from the merchant's own challenge, the amount too unless it is
    open: then it is the amount the target signed (:func:`signed_amount`), refused here
    (AmountRefused ``over_max``) above the challenge's maximum. The means must be in the
    challenge's currency (Declined ``currency_mismatch`` otherwise: the record was changed
    on the way or the target answered another challenge).
    """
    if means.currency != challenge.currency:
        raise Declined(
            f"the means are in {means.currency}; this charge is in {challenge.currency}",
            code="currency_mismatch",
        )
    amount = check_max(signed_amount(challenge, means), challenge)
    return {
        "amount": amount,
        "currency": challenge.currency,
        "purpose": challenge.purpose,
        "challenge": crypto.b64e(challenge.nonce),
        "means": api_means(means),
        "bill_id": means.bill_id,
        "split_mode": means.split_mode.value,
    }


def ask_server(client: PaymentClient, request: Json, idempotency_key: str | None = None) -> Json:
    """Send a :func:`payment_request` to the server; its answer (approved or declined)."""
    return client.authorize_payment(
        amount=request["amount"],
        currency=request["currency"],
        purpose=request["purpose"],
        challenge=crypto.b64d(request["challenge"]),
        means=request["means"],
        bill_id=request.get("bill_id"),
        split_mode=request.get("split_mode", "exact"),
        idempotency_key=idempotency_key,
    )


def _pending(
    home: TerminalHome, challenge: ChallengeRecord, means: MeansRecord, request: Json
) -> Charge:
    """Write the pending receipt with the exact request, before the server hears of it."""
    receipt = Charge(
        receipt_id=crypto.new_id("rc"),
        idempotency_key=new_idempotency_key(),
        status="pending",
        amount=request["amount"],
        open_amount=challenge.is_open,
        currency=challenge.currency,
        purpose=challenge.purpose,
        presenting_terminal=means.presenting_terminal,
        message="not yet sent to the payment server",
        created_at=now_iso(),
        updated_at=now_iso(),
    )
    _save(home, receipt, request)
    return receipt


def api_means(means: MeansRecord) -> Json:
    """The API's ``means`` object for a means record received over NFC."""
    out: Json = {
        "version": means.version,
        "presenting_terminal": means.presenting_terminal,
        "grants": [
            {"grant_id": g.grant_id, "usage_auth": crypto.b64e(g.usage_auth), "amount": g.amount}
            for g in means.grants
        ],
        "signature": crypto.b64e(means.signature),
    }
    if means.own_source_id is not None:
        out["own_source_id"] = means.own_source_id
        out["own_amount"] = means.own_amount
    return out


def _authorize(home: TerminalHome, client: PaymentClient, receipt: Charge) -> None:
    """Send the stored request with the receipt's idempotency key; fill in the answer (the
    caller saves it)."""
    try:
        answer = ask_server(client, _request_of(home, receipt), receipt.idempotency_key)
    except ServerUnavailable as exc:
        receipt.message = (
            f"{exc.message}; the charge is not settled — run `nfcpay merchant settle "
            f"{receipt.receipt_id}` when the server is back (it cannot charge twice)"
        )
        receipt.updated_at = now_iso()
        return
    except ApiError as exc:
        answer = {"status": "declined", "decline_code": exc.code, "message": exc.message}
    receipt.status = str(answer["status"])
    receipt.payment_id = answer.get("payment_id")
    receipt.approval_code = answer.get("approval_code")
    receipt.presenting_label = answer.get("presenting_label")
    receipt.decline_code = answer.get("decline_code")
    receipt.message = answer.get("message") or ""
    receipt.replayed = bool(answer.get("replayed"))
    receipt.updated_at = now_iso()


def result_record(receipt: Charge) -> ResultRecord:
    """What the target is told: the decision, or that it is still pending."""
    if receipt.status == "approved":
        return ResultRecord(
            approved=True,
            currency=receipt.currency,
            amount=receipt.amount,
            payment_id=receipt.payment_id,
            approval_code=receipt.approval_code,
        )
    return ResultRecord(
        approved=False,
        currency=receipt.currency,
        amount=receipt.amount,
        decline_code=receipt.decline_code if receipt.status == "declined" else PENDING,
        message=(receipt.message or "")[:200],
    )


def _save(home: TerminalHome, receipt: Charge, request: Json | None = None) -> None:
    """Store the receipt; a pending one keeps its request for :func:`settle`. The payer's
    label the server gave is kept too: the merchant names that terminal from now on."""
    if receipt.presenting_terminal is not None:
        Parties(home).keep(receipt.presenting_terminal, receipt.presenting_label)
    data = asdict(receipt)
    if receipt.status == "pending":
        data["request"] = request if request is not None else _request_of(home, receipt)
    home.put("receipts", receipt.receipt_id, data)


def _request_of(home: TerminalHome, receipt: Charge) -> Json:
    request: Json = home.get("receipts", receipt.receipt_id)["request"]
    return request


def load(home: TerminalHome, receipt_id: str) -> Charge:
    data = dict(home.get("receipts", receipt_id))
    data.pop("request", None)
    return Charge(**data)


def receipts(home: TerminalHome) -> list[Charge]:
    home.require_role("merchant")
    return [load(home, item["receipt_id"]) for item in home.items("receipts")]


def settle(
    home: TerminalHome, client: PaymentClient, receipt_id: str | None = None
) -> list[Charge]:
    """Send pending requests again with their own idempotency keys (never a double charge)."""
    home.require_role("merchant")
    chosen = [load(home, receipt_id)] if receipt_id else receipts(home)
    settled = []
    for receipt in chosen:
        if receipt.status == "pending":
            _authorize(home, client, receipt)
            _save(home, receipt)
        settled.append(receipt)
    return settled
