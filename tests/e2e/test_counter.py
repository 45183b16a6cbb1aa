"""The README walkthrough and its failure cases, one ``nfcpay`` process per terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nfcpay.testing.server import ServerProcess
from tests.support.cli import (
    Cli,
    SlowProxy,
    finish,
    free_udp_port,
    owner_with_card,
    ready_pair,
    wait_for,
)

pytestmark = pytest.mark.nfc_sim


@pytest.mark.slow
@pytest.mark.parametrize("readers", ["loopback", "rcs380+acr122u", "pn533+acr122u"])
def test_readme_walkthrough(cli: Cli, server: ServerProcess, readers: str) -> None:
    """Every tap: the waiting terminal's reader is the first of ``readers``."""
    if readers != "loopback":
        cli.use_virtual_readers(*readers.split("+"))
    owner_with_card(cli)
    target_id = cli.init("target", "target")
    cli.init("shop", "merchant")

    give, receive = cli.tap(
        (
            "user",
            "user",
            "give",
            "--amount",
            "30,000",
            "--uses",
            "2",
            "--per-use",
            "20,000",
            "--yes",
        ),
        ("target", "target", "receive"),
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    grant_id = give.data["grant"]["grant_id"]
    assert give.data["target_terminal"] == target_id
    assert receive.data["grant"]["grant_id"] == grant_id
    assert receive.data["grant"]["per_use_cap"] == 20_000
    assert "usage_auth" not in receive.data["grant"]

    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "12,000"), ("target", "target", "pay")
    )
    assert (charge.status, pay.status) == (0, 0), (charge, pay)
    assert charge.data["status"] == pay.data["status"] == "approved"
    assert charge.data["delivered"] is True
    assert pay.data["payment_id"] == charge.data["payment_id"]

    wallet = cli.run("target", "target", "wallet")
    [held] = wallet.data["grants"]
    assert (held["remaining_amount"], held["remaining_uses"]) == (18_000, 1)

    payments = cli.run("shop", "merchant", "payments")
    assert [p["payment_id"] for p in payments.data["payments"]] == [charge.data["payment_id"]]
    refund = cli.run("shop", "merchant", "refund", charge.data["payment_id"], "--amount", "2,000")
    assert refund.status == 0 and refund.data["refund"]["amount"] == 2_000

    over, refused = cli.tap(
        ("shop", "merchant", "charge", "--amount", "25,000"),
        ("target", "target", "pay", "--grant", grant_id),
    )
    assert (over.status, refused.status) == (3, 3)
    assert over.data["decline_code"] == "over_per_use_cap"

    grants = cli.run("user", "user", "grants")
    assert grants.data["grants"][0]["remaining_uses"] == 1
    notes = cli.run("user", "user", "notifications")
    assert "grant_used" in {n["kind"] for n in notes.data["notifications"]}
    revoked = cli.run("user", "user", "revoke", grant_id)
    assert revoked.data["grants"][0]["status"] == "revoked"
    assert server.audit() == []


@pytest.mark.slow
def test_issue_ahead_then_give_by_id(cli: Cli) -> None:
    owner_with_card(cli)
    target_id = cli.init("target", "target")
    issued = cli.run(
        "user", "user", "issue", "--to", target_id, "--amount", "5000", "--expires", "1h"
    )
    assert issued.status == 0, issued
    grant_id = issued.data["grant"]["grant_id"]
    give, receive = cli.tap(
        ("user", "user", "give", "--grant", grant_id), ("target", "target", "receive")
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    assert receive.data["grant"]["valid_until"]


def test_tap_timeout_stores_nothing(cli: Cli) -> None:
    cli.init("shop", "merchant")
    device = f"loopback:{free_udp_port()}"
    done = finish(
        cli.start(
            "shop", "merchant", "charge", "--amount", "1000", "--timeout", "0.5", device=device
        )
    )
    assert done.status == 4
    assert done.data == {"ok": False, "error": "exchange_timeout", "message": done.data["message"]}
    assert not (cli.home("shop") / "receipts").exists()


def test_corrupt_home_is_a_clear_config_error(cli: Cli) -> None:
    cli.init("target", "target")
    (cli.home("target") / "terminal.json").write_text("{not json")
    done = cli.run("target", "target", "wallet", "--offline")
    assert done.status == 6
    assert "damaged" in done.data["message"] and "terminal.json" in done.data["message"]


def test_wrong_role_is_refused_before_any_tap(cli: Cli) -> None:
    cli.init("user", "user")
    done = cli.run("user", "merchant", "charge", "--amount", "1000")
    assert done.status == 6
    assert "is a user terminal" in done.data["message"]


@pytest.mark.slow
def test_server_unreachable_then_settle_charges_once(cli: Cli, server: ServerProcess) -> None:
    ready_pair(cli)
    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "7,000"),
        ("target", "target", "pay"),
        waiting_server="http://127.0.0.1:9",
    )
    assert charge.status == 5 and charge.data["status"] == "pending", charge
    assert "merchant settle" in charge.data["message"]
    assert pay.status == 5 and pay.data["status"] == "pending", pay
    receipt_file = cli.home("shop") / "receipts" / f"{charge.data['receipt_id']}.json"
    stored = json.loads(receipt_file.read_text())
    assert stored["request"]["means"]["signature"]

    settled = cli.run("shop", "merchant", "settle")
    assert settled.status == 0, settled
    [first] = settled.data["charges"]
    assert first["status"] == "approved"
    assert first["idempotency_key"] == charge.data["idempotency_key"]
    again = cli.run("shop", "merchant", "settle", charge.data["receipt_id"])
    assert again.data["charges"][0]["payment_id"] == first["payment_id"]
    payments = cli.run("shop", "merchant", "payments")
    assert len(payments.data["payments"]) == 1 and payments.data["pending"] == []

    wallet = cli.run("target", "target", "wallet")
    assert [r["status"] for r in wallet.data["receipts"]] == ["approved"]
    assert wallet.data["grants"][0]["remaining_amount"] == 43_000
    assert server.audit() == []


@pytest.mark.slow
def test_link_lost_between_challenge_and_result(cli: Cli, server: ServerProcess) -> None:
    ready_pair(cli)
    proxy = SlowProxy(server.url, delay=1.5)
    try:
        device = f"loopback:{free_udp_port()}"
        shop = cli.start(
            "shop", "merchant", "charge", "--amount", "9,000", "--timeout", "20",
            device=device, server=proxy.url,
        )  # fmt: skip
        target = cli.start("target", "target", "pay", "--timeout", "20", device=device)
        # the merchant stores its pending receipt once it holds the means, then asks the
        # (slow) server: the target vanishes while the decision is being made
        receipts = cli.home("shop") / "receipts"
        wait_for(lambda: receipts.exists() and any(receipts.iterdir()), what="the means")
        target.kill()
        target.communicate()
        charge = finish(shop)
    finally:
        proxy.close()
    assert charge.status == 0 and charge.data["status"] == "approved", charge
    assert charge.data["delivered"] is False

    wallet = cli.run("target", "target", "wallet")
    [receipt] = wallet.data["receipts"]
    assert receipt["status"] == "approved"
    assert wallet.data["grants"][0]["remaining_amount"] == 41_000


@pytest.mark.slow
@pytest.mark.parametrize("readers", ["loopback", "virtual"])
def test_demo_json_every_step(tmp_path: Path, readers: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nfcpay", "--json", "demo", "--readers", readers],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    data = json.loads(done.stdout)
    assert done.returncode == 0, data
    names = [step["name"] for step in data["steps"]]
    assert names == [
        "terminals", "card", "give", "pay", "pay_again", "give_second", "stranger",
        "owner_notified", "over_cap", "remote", "remote_pay",
    ]  # fmt: skip
    assert all(step["ok"] for step in data["steps"])
    assert data["steps"][6]["observed"]["merchant"]["decline_code"] == "terminal_not_allowed"
    assert data["data_dir"] is None
