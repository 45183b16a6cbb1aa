"""An allowance from the command line: declared zone, ``user issue --per``, the grant handed
over in a tap, and the target's wallet showing what is left of the interval."""

from __future__ import annotations

import pytest

from nfcpay.testing.server import zone_at_noon
from tests.support.cli import Cli, finish

pytestmark = pytest.mark.nfc_sim

CARD = ("--number", "4111 1111 1111 1111", "--expiry", "12/39", "--limit", "500,000")


def test_a_daily_allowance_from_issue_to_the_wallet(cli: Cli) -> None:
    zone = zone_at_noon()
    made = cli.run(
        "user", "terminal", "init", "--role", "user", "--label", "u", "--time-zone", zone
    )
    assert (made.status, made.data["time_zone"]) == (0, zone), made
    assert cli.run("user", "user", "add-card", *CARD).status == 0
    target_id = cli.init("target", "target")
    merchant = cli.init("shop", "merchant")
    assert merchant

    too_much = cli.run(
        "user", "user", "issue", "--to", target_id, "--amount", "10,000", "--per", "day:10,001"
    )
    assert (too_much.status, too_much.data["field"]) == (2, "--per"), too_much
    issued = cli.run(
        "user", "user", "issue", "--to", target_id, "--amount", "100,000", "--per", "day:10,000"
    )
    assert issued.status == 0, issued
    rights = issued.data["grant"]["rights"]
    assert rights["allowance"] == {"period": "day", "amount": 10_000, "time_zone": zone}
    assert rights["max_uses"] == 1_000_000, "an allowance needs no use count"

    grant_id = issued.data["grant"]["grant_id"]
    give, receive = cli.tap(
        ("user", "user", "give", "--grant", grant_id), ("target", "target", "receive")
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    held = receive.data["grant"]
    assert (held["allowance_period"], held["allowance_amount"], held["time_zone"]) == (
        "day",
        10_000,
        zone,
    )

    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "7,000"), ("target", "target", "pay")
    )
    assert (charge.status, pay.status) == (0, 0), (charge, pay)
    shown = cli.run("target", "target", "wallet")
    assert shown.status == 0, shown
    [grant] = shown.data["grants"]
    assert grant["allowance_left"] == 3_000
    assert grant["allowance_renews_at"].endswith("Z")

    owner_view = finish(cli.start("user", "user", "grants", answers=""))
    assert owner_view.status == 0, owner_view
    assert "3,000 KRW of 10,000 KRW a day" in owner_view.stderr
