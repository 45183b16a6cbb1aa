"""Names, not ids, wherever a person reads (issue 12): every line that names another party
shows its label or merchant name with its short id beside (``shop (m_x6mv…)``), since labels
are self-chosen; --json keeps the ids and adds the names. One ``nfcpay`` process per
terminal against a real server process, over the loopback reader."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, Done, finish, owner_with_card

pytestmark = pytest.mark.nfc_sim


def _tap_as_person(
    cli: Cli, waiting: tuple[str, ...], tapping: tuple[str, ...]
) -> tuple[Done, Done]:
    """A waiting terminal (--json) and a tapping one run for a person: its words are in
    ``stderr`` (where :func:`finish` puts the output of a run without JSON)."""
    waiting_device, tapping_device = cli.readers.devices()
    first = cli.start(*waiting, "--timeout", "20", device=waiting_device)
    second = cli.start(*tapping, "--timeout", "20", device=tapping_device, answers="")
    return finish(first), finish(second)


def _person(cli: Cli, name: str, *args: str) -> str:
    """What ``nfcpay`` says to a person for this command."""
    done = finish(cli.start(name, *args, answers=""))
    assert done.status == 0, done
    return done.stderr


def test_every_party_is_named_with_its_short_id(cli: Cli) -> None:
    user = owner_with_card(cli)
    target = cli.init("target", "target")
    cli.init("shop", "merchant")
    shop = str(cli.run("shop", "terminal", "show").data["merchant_id"])
    named = {"user": f"user ({user[:6]}…)", "target": f"target ({target[:6]}…)"}
    named["shop"] = f"shop ({shop[:6]}…)"

    give, receive = _tap_as_person(
        cli,
        ("user", "user", "give", "--amount", "50000", "--uses", "3", "--yes"),
        ("target", "target", "receive"),
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    grant_id = give.data["grant"]["grant_id"]
    assert f"Grant {grant_id} from {named['user']}" in receive.stderr
    assert give.data["grant"]["allowed"] == [{"terminal_id": target, "label": "target"}]

    charge, pay = _tap_as_person(
        cli, ("shop", "merchant", "charge", "--amount", "12000"), ("target", "target", "pay")
    )
    assert (charge.status, pay.status) == (0, 0), (charge, pay)
    assert f"APPROVED 12,000 KRW at {named['shop']} (approval " in pay.stderr
    assert (charge.data["presenting_terminal"], charge.data["presenting_label"]) == (
        target,
        "target",
    )

    charge, paid = cli.tap(
        ("shop", "merchant", "charge", "--amount", "3000"), ("target", "target", "pay")
    )
    assert (charge.status, paid.status) == (0, 0), (charge, paid)
    assert (paid.data["merchant_id"], paid.data["merchant_name"]) == (shop, "shop")

    # Once they have dealt, each side names the other while the tap is still going.
    waiting_device, tapping_device = cli.readers.devices()
    charging = cli.start("shop", "merchant", "charge", "--amount", "2000", "--timeout", "20",
                         device=waiting_device, answers="")  # fmt: skip
    paying = cli.start("target", "target", "pay", "--timeout", "20", device=tapping_device,
                       answers="")  # fmt: skip
    charged, paid = finish(charging), finish(paying)
    assert (charged.status, paid.status) == (0, 0), (charged, paid)
    assert f"Merchant {named['shop']} asks for 2,000 KRW" in paid.stderr
    assert f"Target {named['target']} presented 2,000 KRW" in charged.stderr

    feed = _person(cli, "user", "user", "notifications")
    assert f"{named['target']} paid 12,000 KRW at {named['shop']} with grant {grant_id}" in feed
    notes = cli.run("user", "user", "notifications").data["notifications"]
    assert {
        (n["terminal_id"], n["terminal_label"], n["merchant_id"], n["merchant_name"])
        for n in notes
        if n["kind"] == "grant_used"
    } == {(target, "target", shop, "shop")}

    wallet = _person(cli, "target", "target", "wallet")
    assert named["user"] in wallet and named["shop"] in wallet
    data = cli.run("target", "target", "wallet").data
    [held] = data["grants"]
    assert (held["issuing_terminal"], held["issuing_label"]) == (user, "user")
    assert {(r["merchant_id"], r["merchant_name"]) for r in data["receipts"]} == {(shop, "shop")}

    assert named["target"] in _person(cli, "user", "user", "grants")
    assert named["target"] in _person(cli, "shop", "merchant", "payments")


def test_a_group_bill_names_its_collector_and_members(cli: Cli) -> None:
    member = owner_with_card(cli)
    collector = cli.init("col", "target")
    waiting, tapping = cli.readers.devices()
    collecting = cli.start(
        "col", "group", "collect", "--total", "20,000", "--members", "1", "--timeout", "40",
        device=waiting,
    )  # fmt: skip
    join = finish(cli.start("user", "group", "join", "--yes", "--timeout", "20", device=tapping,
                            answers=""))  # fmt: skip
    collected = finish(collecting)
    assert (collected.status, join.status) == (0, 0), (collected, join)
    assert f"is granted to col ({collector[:6]}…)" in join.stderr

    bill_id = collected.data["bill"]["bill_id"]
    assert f"user ({member[:6]}…)" in _person(cli, "col", "group", "status", bill_id)
    assert cli.run("col", "group", "status", bill_id).data["bill"]["slots"][0]["member"] == member
