"""The wallet over a home written as the target has always written it: the same --json, and
a refresh that replaces what is known of the grants and settles what it can: from the
server's answer per challenge, or (an old receipt, an old server) by inference."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nfcpay.records import ChallengeRecord
from nfcpay.split import plan_explicit
from nfcpay.terminals import bill as bills
from nfcpay.terminals import receipts
from nfcpay.terminals.held import GrantStatus, HeldGrants, Share
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.receipts import SETTLED_MESSAGE, Receipt, Receipts, ReceiptStatus
from nfcpay.terminals.wallet import refresh, wallet
from tests.support.states import GRANT_FILE, RECEIPT_FILE, ServerView

GRANT_ID = GRANT_FILE["grant_id"]
RECEIPT_ID = RECEIPT_FILE["receipt_id"]

#: ``target wallet --offline --json`` over GRANT_FILE and RECEIPT_FILE, as it has always been:
#: each grant is its record without the usage-auth, with what is known of it laid over.
WALLET_JSON = {
    "ok": True,
    "refreshed": False,
    "grants": [
        {
            **{k: v for k, v in GRANT_FILE["record"].items() if k != "usage_auth"},
            "issuing_label": None,  # not learnt yet: the owner is shown by its id
            "remaining_amount": 30000,
            "remaining_uses": 2,
            "status": "active",
            "as_of": "2026-11-26T10:00:00+00:00",
            "received_at": "2026-11-25T09:30:00+00:00",
        }
    ],
    "receipts": [RECEIPT_FILE | {"merchant_name": None}],
}


def view(remaining_amount: int, remaining_uses: int, status: str = "active") -> dict[str, Any]:
    """The server's view of GRANT_ID (``GET /v1/grants``), trimmed to what matters here."""
    return {
        "grant_id": GRANT_ID,
        "issuing_terminal": GRANT_FILE["record"]["issuing_terminal"],
        "issuing_label": "Alice",
        "remaining_amount": remaining_amount,
        "remaining_uses": remaining_uses,
        "status": status,
        "created_at": "2026-11-25T09:29:58Z",
    }


@pytest.fixture
def home(tmp_path: Path) -> TerminalHome:
    home = TerminalHome(tmp_path)
    home.save_identity(Identity("t_k7x2m4q9w3b5n8c6", "target", "phone", "http://x", "KRW"))
    home.put("grants", GRANT_ID, GRANT_FILE)
    home.put("receipts", RECEIPT_ID, RECEIPT_FILE)
    return home


def test_the_wallet_json_of_an_existing_home_keeps_its_keys_and_adds_the_names(
    home: TerminalHome,
) -> None:
    data = wallet(home).to_json()
    assert data == WALLET_JSON
    assert json.dumps(data, sort_keys=True) == json.dumps(WALLET_JSON, sort_keys=True)


def test_a_refresh_takes_the_servers_view_and_settles_the_lost_tap(home: TerminalHome) -> None:
    server = ServerView(view(23_000, 1), {**view(1, 1), "grant_id": "g_not_held"})
    refresh(home, server)  # type: ignore[arg-type]
    known = HeldGrants(home).get(GRANT_ID).last_known
    assert (known.remaining_amount, known.remaining_uses, known.status) == (
        23_000,
        1,
        GrantStatus.ACTIVE,
    )
    assert [h.grant_id for h in HeldGrants(home).each()] == [GRANT_ID]
    receipt = Receipts(home).get(RECEIPT_ID)
    assert (receipt.status, receipt.message) == (ReceiptStatus.APPROVED, SETTLED_MESSAGE)
    [held] = wallet(home).to_json()["grants"]
    assert (held["issuing_terminal"], held["issuing_label"]) == (
        view(0, 0)["issuing_terminal"],
        "Alice",
    )


@pytest.mark.parametrize("status", [s.value for s in GrantStatus])
def test_a_refresh_keeps_every_status_the_server_shows(home: TerminalHome, status: str) -> None:
    refresh(home, ServerView(view(30_000, 2, status)))  # type: ignore[arg-type]
    assert HeldGrants(home).get(GRANT_ID).last_known.status == status
    assert Receipts(home).get(RECEIPT_ID).status is ReceiptStatus.NOT_CHARGED
    stored = json.loads((home.path / "grants" / f"{GRANT_ID}.json").read_text())
    assert stored["last_known"]["status"] == status


def test_a_bill_whose_receipt_settles_as_charged_is_paid(home: TerminalHome) -> None:
    bill = bills.new_bill(
        home,
        home.identity(),
        plan_explicit(7_000, [7_000]),
        bill_id="b_opened",
        mode="exact",
        expires_in=timedelta(hours=1),
    )
    home.put("receipts", RECEIPT_ID, {**RECEIPT_FILE, "bill_id": bill["bill_id"]})
    refresh(home, ServerView(view(23_000, 1)))  # type: ignore[arg-type]
    paid = bills.load(home, bill["bill_id"])
    assert paid["status"] == "paid"
    assert paid["payment"] == {"payment_id": None, "approval_code": None, "receipt_id": RECEIPT_ID}


# --- exact outcomes: the server is asked about each receipt's challenge --------------------

FIRST, SECOND = bytes(range(16)), bytes(range(16, 32))


def lost_tap(home: TerminalHome, receipt_id: str, nonce: bytes) -> Receipt:
    """A 7,000 KRW tap on GRANT_ID whose result never came (``target pay`` lost the link)."""
    challenge = ChallengeRecord(
        merchant_id="m_abc", currency="KRW", amount=7_000, nonce=nonce, purpose="5812"
    )
    receipt = Receipt.new(challenge, [Share(HeldGrants(home).get(GRANT_ID), 7_000)])
    receipt = dataclasses.replace(receipt, receipt_id=receipt_id).link_lost("the link dropped")
    Receipts(home).put(receipt)
    return receipt


@pytest.mark.parametrize("charged", ["first", "second", "both", "neither"])
def test_two_lost_taps_on_one_grant_settle_each_as_the_server_charged_it(
    home: TerminalHome, charged: str
) -> None:
    """Two taps with the same grant, both links lost before the result, made from the same
    view of the grant. The grant's view after one charge fits either tap (inference settled
    the first in file order as charged, whichever was); the server's answer per challenge
    settles each as it was: charged with its payment, or left open (no payment so far)."""
    home.delete("receipts", RECEIPT_ID)
    first = lost_tap(home, "rc_1first", FIRST)
    second = lost_tap(home, "rc_2second", SECOND)
    taps = {"first": (first, FIRST), "second": (second, SECOND)}
    paid = [name for name in taps if charged in (name, "both")]
    server = ServerView(view(30_000 - 7_000 * len(paid), 2 - len(paid)))
    for name in paid:
        server.charge("m_abc", taps[name][1], f"p_{name}", f"{name[:3].upper()}123")

    refresh(home, server)  # type: ignore[arg-type]

    for name, (before, _) in taps.items():
        after = Receipts(home).get(before.receipt_id)
        if name in paid:
            assert after.status is ReceiptStatus.APPROVED, name
            assert (after.payment_id, after.approval_code) == (
                f"p_{name}",
                f"{name[:3].upper()}123",
            )
            assert after.message == receipts.EXACT_MESSAGE
        else:  # the merchant may still send these means: not settled either way
            # (only its baseline moved past the other's charge, which inference would read)
            assert dataclasses.replace(after, grants=before.grants) == before, name
    assert sorted(server.asked) == sorted(("m_abc", nonce) for _, nonce in taps.values())


def test_no_payment_so_far_leaves_a_receipt_as_it_was_whatever_the_grants_show(
    home: TerminalHome,
) -> None:
    """The grants show a use gone (another payment with the grant), but the server has no
    payment for this receipt's challenge: the receipt, pending or unknown, is not touched."""
    home.delete("receipts", RECEIPT_ID)
    lost = lost_tap(home, "rc_lost", FIRST)
    pending = dataclasses.replace(
        lost_tap(home, "rc_pending", SECOND), status=ReceiptStatus.PENDING
    )
    Receipts(home).put(pending)
    files = {
        r: (home.path / "receipts" / f"{r}.json").read_bytes() for r in ("rc_lost", "rc_pending")
    }
    refresh(home, ServerView(view(23_000, 1)))  # type: ignore[arg-type]
    assert [Receipts(home).get(r) for r in ("rc_lost", "rc_pending")] == [lost, pending]
    assert files == {
        r: (home.path / "receipts" / f"{r}.json").read_bytes() for r in ("rc_lost", "rc_pending")
    }


def test_a_pending_receipt_the_server_charged_is_approved_with_its_payment(
    home: TerminalHome,
) -> None:
    home.delete("receipts", RECEIPT_ID)
    receipt = dataclasses.replace(lost_tap(home, "rc_pending", FIRST), status=ReceiptStatus.PENDING)
    Receipts(home).put(receipt)
    server = ServerView(view(23_000, 1))
    server.charge("m_abc", FIRST, "p_settled", "A1B2C3")
    refresh(home, server)  # type: ignore[arg-type]
    settled = Receipts(home).get("rc_pending")
    assert (settled.status, settled.payment_id) == (ReceiptStatus.APPROVED, "p_settled")


def test_an_old_receipt_or_an_old_server_falls_back_to_inference_and_says_so(
    home: TerminalHome,
) -> None:
    """RECEIPT_FILE has no challenge: the server is not asked about it. A receipt with one,
    against a server that cannot be asked (no such route), is inferred too."""
    server = ServerView(view(23_000, 1))
    refresh(home, server)  # type: ignore[arg-type]
    assert server.asked == []
    assert Receipts(home).get(RECEIPT_ID).message == SETTLED_MESSAGE

    home.delete("receipts", RECEIPT_ID)
    lost_tap(home, "rc_new", FIRST)
    too_old = ServerView(view(16_000, 0), too_old=True)
    refresh(home, too_old)  # type: ignore[arg-type]
    settled = Receipts(home).get("rc_new")
    assert too_old.asked == [("m_abc", FIRST)]
    assert (settled.status, settled.message) == (ReceiptStatus.APPROVED, SETTLED_MESSAGE)


def test_a_bill_settled_from_the_servers_payment_is_paid_with_it(home: TerminalHome) -> None:
    bill = bills.new_bill(
        home,
        home.identity(),
        plan_explicit(7_000, [7_000]),
        bill_id="b_3fz7q2m4k9xw6a5b",
        mode="exact",
        expires_in=timedelta(hours=1),
    )
    home.delete("receipts", RECEIPT_ID)
    receipt = lost_tap(home, "rc_bill", FIRST)
    Receipts(home).put(dataclasses.replace(receipt, bill_id=bill["bill_id"]))
    server = ServerView(view(23_000, 1))
    server.charge("m_abc", FIRST, "p_bill", "B1L1P4")
    refresh(home, server)  # type: ignore[arg-type]
    paid = bills.load(home, bill["bill_id"])
    assert paid["payment"] == {
        "payment_id": "p_bill",
        "approval_code": "B1L1P4",
        "receipt_id": "rc_bill",
    }
