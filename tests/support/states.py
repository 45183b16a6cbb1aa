"""The target's stored state for tests: files as the target has always written them, and
hypothesis strategies for held grants and receipts."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from nfcpay import client, crypto
from nfcpay.errors import ApiError
from nfcpay.terminals.held import GrantStatus, HeldGrant, LastKnown
from nfcpay.terminals.receipts import Receipt, ReceiptShare, ReceiptStatus
from tests.support.strategies import amounts, currencies, grants, ids, texts, times, tokens

#: A held grant's file as the target has always written it (``target receive``, after
#: one payment of 20,000 KRW): ``grants/g_3fz7q2m4k9xw6a5b.json``.
GRANT_FILE: dict[str, Any] = {
    "grant_id": "g_3fz7q2m4k9xw6a5b",
    "record": {
        "grant_id": "g_3fz7q2m4k9xw6a5b",
        "virtual_card_number": "9900770123456789",
        "issuing_terminal": "t_u4h2k8m3q7x5w9b6",
        "allowed_terminal": "t_k7x2m4q9w3b5n8c6",
        "usage_auth": "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "currency": "KRW",
        "amount_cap": 50000,
        "remaining_amount": 50000,
        "max_uses": 3,
        "per_use_cap": 20000,
        "valid_until": "2026-12-31T23:59:59Z",
        "purposes": ["5812", "5814"],
        "regions": [],
        "merchants": [],
        "bill_id": None,
    },
    "received_at": "2026-11-25T09:30:00+00:00",
    "last_known": {
        "remaining_amount": 30000,
        "remaining_uses": 2,
        "status": "active",
        "as_of": "2026-11-26T10:00:00+00:00",
    },
}

#: A receipt's file as the target has always written it (``target pay``, link lost before
#: the result): ``receipts/rc_kiqjhczorq75nzea.json``.
RECEIPT_FILE: dict[str, Any] = {
    "receipt_id": "rc_kiqjhczorq75nzea",
    "status": "unknown",
    "merchant_id": "m_abc",
    "amount": 7000,
    "currency": "KRW",
    "purpose": "5812",
    "grants": [
        {
            "grant_id": "g_3fz7q2m4k9xw6a5b",
            "amount": 7000,
            "remaining_uses_before": 2,
            "remaining_amount_before": 30000,
        }
    ],
    "bill_id": None,
    "own_source_id": None,
    "own_amount": 0,
    "payment_id": None,
    "approval_code": None,
    "decline_code": None,
    "message": "no answer from the merchant's reader",
    "created_at": "2026-11-26T10:05:00+00:00",
    "updated_at": "2026-11-26T10:05:03+00:00",
}


class ServerView:
    """Stands in for the payment client in ``refresh``: ``GET /v1/grants`` answers ``views``;
    ``GET /v1/presentations`` answers the payment :meth:`charge` recorded for a challenge, or
    None (no payment so far); with ``too_old`` it has no such route."""

    def __init__(self, *views: dict[str, Any], too_old: bool = False) -> None:
        self.views = list(views)
        self.payments: dict[tuple[str, bytes], dict[str, Any]] = {}
        self.too_old = too_old
        self.asked: list[tuple[str, bytes]] = []

    def list_grants(self) -> list[dict[str, Any]]:
        return self.views

    def charge(self, merchant_id: str, challenge: bytes, payment_id: str, code: str) -> None:
        self.payments[merchant_id, challenge] = {"payment_id": payment_id, "approval_code": code}

    def merchant_profile(self, merchant_id: str) -> dict[str, Any]:
        """A merchant this terminal paid (its name: ``Shop m_…``); any other is unknown."""
        if merchant_id not in {merchant for merchant, _ in self.payments}:
            raise ApiError(f"no terminal {merchant_id}", code="terminal_not_found", status=404)
        return {"merchant_id": merchant_id, "merchant_name": f"Shop {merchant_id}"}

    def presentation_outcome(self, merchant_id: str, challenge: bytes) -> dict[str, Any] | None:
        self.asked.append((merchant_id, challenge))
        if self.too_old:
            raise ApiError("upgrade nfcpay on the server", code=client.SERVER_TOO_OLD, status=404)
        return self.payments.get((merchant_id, challenge))


stamps = times.map(lambda t: t.isoformat())
counts = st.integers(0, 1_000_000)

last_known = st.builds(
    LastKnown,
    remaining_amount=amounts(0),
    remaining_uses=counts,
    status=st.sampled_from(GrantStatus),
    as_of=stamps,
)
held_grants = st.builds(HeldGrant, record=grants(), received_at=stamps, last_known=last_known)

receipt_shares = st.builds(
    ReceiptShare,
    grant_id=ids("g"),
    amount=amounts(),
    remaining_uses_before=counts,
    remaining_amount_before=amounts(0),
)


def receipts(
    status: st.SearchStrategy[ReceiptStatus] | None = None,
    shares: st.SearchStrategy[tuple[ReceiptShare, ...]] | None = None,
) -> st.SearchStrategy[Receipt]:
    return st.builds(
        Receipt,
        receipt_id=ids("rc"),
        status=st.sampled_from(ReceiptStatus) if status is None else status,
        merchant_id=ids("m"),
        amount=amounts(),
        currency=currencies,
        purpose=st.none() | tokens,
        grants=st.lists(receipt_shares, max_size=4).map(tuple) if shares is None else shares,
        bill_id=st.none() | ids("b"),
        own_source_id=st.none() | ids("src"),
        own_amount=amounts(0),
        payment_id=st.none() | ids("p"),
        approval_code=st.none() | tokens,
        decline_code=st.none() | tokens,
        message=texts,
        created_at=stamps,
        updated_at=stamps,
        challenge=st.none() | st.binary(min_size=16, max_size=32).map(crypto.b64e),
    )
