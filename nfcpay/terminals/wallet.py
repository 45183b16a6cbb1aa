"""The target's wallet: its held grants and receipts, refreshed from the server on request.

:func:`refresh` replaces what is known of each held grant with the server's view, then
asks the server what became of every receipt still ``sent``, ``unknown`` or ``pending``
(by the merchant's challenge it answered) and settles it as charged when the server names
the payment; a receipt without a challenge, or a server too old to be asked, is inferred from
the grants' view instead (see :mod:`nfcpay.terminals.receipts`). A group bill whose receipt
is settled as charged is marked paid. On the way it learns the names of the grants' owners
and of the merchants paid (:mod:`nfcpay.terminals.parties`). :func:`wallet_view` is what
``target wallet`` and ``target receive`` show of a grant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from nfcpay import crypto
from nfcpay.client import SERVER_TOO_OLD, PaymentClient
from nfcpay.errors import ApiError
from nfcpay.terminals import bill as group_bill
from nfcpay.terminals.held import HeldGrant, HeldGrants, LastKnown, allowance_now
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.parties import Parties
from nfcpay.terminals.receipts import Receipt, Receipts, ReceiptStatus, settle, settle_charged

Json = dict[str, Any]


@dataclass(frozen=True)
class Wallet:
    grants: list[HeldGrant]
    receipts: list[Receipt]
    refreshed: bool
    #: The names learnt of the grants' owners and the merchants, by id.
    names: dict[str, str]

    def to_json(self) -> Json:
        """Ids as stored, each party's name beside it (``issuing_label``, ``merchant_name``;
        None while the server has not told it)."""
        return {
            "ok": True,
            "refreshed": self.refreshed,
            "grants": [wallet_view(held, self.names) for held in self.grants],
            "receipts": [
                receipt.to_json() | {"merchant_name": self.names.get(receipt.merchant_id)}
                for receipt in self.receipts
            ],
        }


def wallet_view(held: HeldGrant, names: dict[str, str]) -> Json:
    """A held grant without its usage-auth, for display and --json, with its owner's label
    if learnt (``names``); with an allowance, what is left of it now (all of it once the
    interval last heard of is over)."""
    record = {k: v for k, v in held.record.to_json().items() if k != "usage_auth"}
    view = {
        **record,
        "issuing_label": names.get(held.record.issuing_terminal),
        **held.last_known.to_json(),
        "received_at": held.received_at,
    }
    now = allowance_now(held)
    if now is not None:
        view["allowance_left"], view["allowance_renews_at"] = now
    return view


def wallet(home: TerminalHome, client: PaymentClient | None = None) -> Wallet:
    """Held grants and receipts; with a ``client``, refreshed from the server first."""
    home.require_role("target")
    if client is not None:
        refresh(home, client)
    grants, receipts = HeldGrants(home), Receipts(home)
    names = Parties(home).known()
    return Wallet(list(grants.each()), list(receipts.each()), client is not None, names)


def refresh(home: TerminalHome, client: PaymentClient) -> None:
    """Update what is known of each held grant, then settle receipts it answers; learn the
    names of the grants' owners and of the merchants paid."""
    grants, parties = HeldGrants(home), Parties(home)
    before = {held.grant_id: held for held in grants.each()}
    for view in client.list_grants():
        held = before.get(view["grant_id"])
        if held is not None:
            grants.put(replace(held, last_known=LastKnown.from_server(view)))
            parties.keep(view["issuing_terminal"], view.get("issuing_label"))
    # Each receipt is read when its turn comes: settling one may move later ones' baselines.
    for receipt in Receipts(home).each():
        if receipt.is_settled:
            continue
        settled = settle_from_server(home, client, receipt)
        if settled.status is ReceiptStatus.APPROVED and settled.bill_id:
            group_bill.mark_paid(home, settled.bill_id, settled)
    paid_at = [r.merchant_id for r in Receipts(home).each() if r.status is ReceiptStatus.APPROVED]
    parties.learn(client, paid_at)


def settle_from_server(home: TerminalHome, client: PaymentClient, receipt: Receipt) -> Receipt:
    """The unsettled ``receipt`` as the server answers for its challenge: approved with the
    payment it names, or as it was (no payment so far). Inferred from the grants (just
    refreshed) when it has no challenge or the server cannot be asked."""
    if receipt.challenge is None:
        return settle(home, receipt)
    try:
        payment = client.presentation_outcome(receipt.merchant_id, crypto.b64d(receipt.challenge))
    except ApiError as exc:
        if exc.code != SERVER_TOO_OLD:
            raise
        return settle(home, receipt)
    if payment is None:
        return receipt
    return settle_charged(home, receipt, payment["payment_id"], payment["approval_code"])
