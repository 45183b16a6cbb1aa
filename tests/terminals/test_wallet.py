"""The wallet over a home written as the target has always written it: the same --json, and
a refresh that replaces what is known of the grants and settles what it can."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from nfcpay.split import plan_explicit
from nfcpay.terminals import bill as bills
from nfcpay.terminals.held import GrantStatus, HeldGrants
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.terminals.receipts import SETTLED_MESSAGE, Receipts, ReceiptStatus
from nfcpay.terminals.wallet import refresh, wallet
from tests.terminals.states import GRANT_FILE, RECEIPT_FILE, ServerView

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
            "remaining_amount": 30000,
            "remaining_uses": 2,
            "status": "active",
            "as_of": "2026-11-26T10:00:00+00:00",
            "received_at": "2026-11-25T09:30:00+00:00",
        }
    ],
    "receipts": [RECEIPT_FILE],
}


def view(remaining_amount: int, remaining_uses: int, status: str = "active") -> dict[str, Any]:
    """The server's view of GRANT_ID (``GET /v1/grants``), trimmed to what matters here."""
    return {
        "grant_id": GRANT_ID,
        "issuing_terminal": GRANT_FILE["record"]["issuing_terminal"],
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


def test_the_wallet_json_of_an_existing_home_is_unchanged(home: TerminalHome) -> None:
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
