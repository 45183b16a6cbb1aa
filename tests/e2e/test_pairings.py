"""Every pairing of emulated readers, every tap flow, as separate ``nfcpay`` processes.

For each (waiting reader, tapping reader) — the ACR122U, the SCL3711 (PN533) and the
RC-S380, each an emulated chip behind nfcpy's own driver — and each flow, the flow either
completes or, where physics forbids it (two poll-only ACR122Us cannot link), fails within
its tap timeout with a message that names the way out (``--carrier tag``).
"""

from __future__ import annotations

import itertools

import pytest

from nfcpay.testing.server import ServerProcess
from tests.support.cli import Cli, finish, owner_with_card

pytestmark = [pytest.mark.nfc_sim, pytest.mark.slow]

CHIPS = ("acr122u", "pn533", "rcs380")
POLL_ONLY = {"acr122u"}
PAIRS = list(itertools.product(CHIPS, CHIPS))


def linkable(waiting: str, tapping: str) -> bool:
    """One of the two readers must listen; the ACR122U cannot."""
    return not (waiting in POLL_ONLY and tapping in POLL_ONLY)


def tap_once(cli: Cli, waiting: tuple[str, ...], tapping: tuple[str, ...], pair: tuple[str, str]):
    cli.use_virtual_readers(*pair)
    timeout = "20" if linkable(*pair) else "2"
    waiting_device, tapping_device = cli.readers.devices()
    first = cli.start(*waiting, "--timeout", timeout, device=waiting_device)
    second = cli.start(*tapping, "--timeout", timeout, device=tapping_device)
    return finish(first), finish(second)


def assert_linked_or_told(pair: tuple[str, str], waited, tapped) -> bool:
    """True when the flow completed; else both sides said how to get round it."""
    if linkable(*pair):
        assert (waited.status, tapped.status) == (0, 0), (pair, waited, tapped)
        return True
    for done in (waited, tapped):
        assert done.status != 0, (pair, done)
        [why] = done.data.get("events", [done.data])[-1:]  # a collector lists its taps
        assert why["message"].startswith("no listening peer came"), (pair, done)
        assert "--carrier tag" in why["message"], (pair, done)
    return False


def test_give_and_receive_on_every_pairing(cli: Cli) -> None:
    owner_with_card(cli)
    cli.init("target", "target")
    received = 0
    for pair in PAIRS:
        give, receive = tap_once(
            cli,
            ("user", "user", "give", "--amount", "1,000", "--yes"),
            ("target", "target", "receive"),
            pair,
        )
        if assert_linked_or_told(pair, give, receive):
            received += 1
            assert receive.data["grant"]["grant_id"] == give.data["grant"]["grant_id"], pair
    wallet = cli.run("target", "target", "wallet")
    assert len(wallet.data["grants"]) == received == len(PAIRS) - 1


def test_charge_and_pay_on_every_pairing(cli: Cli, server: ServerProcess) -> None:
    owner_with_card(cli)
    cli.init("target", "target")
    cli.init("shop", "merchant")
    give, receive = cli.tap(
        ("user", "user", "give", "--amount", "50,000", "--uses", "20", "--yes"),
        ("target", "target", "receive"),
    )
    assert (give.status, receive.status) == (0, 0)
    approved = 0
    for pair in PAIRS:
        charge, pay = tap_once(
            cli,
            ("shop", "merchant", "charge", "--amount", "1,000"),
            ("target", "target", "pay"),
            pair,
        )
        if assert_linked_or_told(pair, charge, pay):
            approved += 1
            assert charge.data["status"] == pay.data["status"] == "approved", pair
    assert len(cli.run("shop", "merchant", "payments").data["payments"]) == approved == 8
    assert server.audit() == []


def test_collect_and_join_on_every_pairing(cli: Cli) -> None:
    cli.init("col", "target")
    assert cli.run("col", "user", "add-wallet", "--balance", "500,000").status == 0
    cli.init("ann", "user")
    card = ("--number", "4111111111111111", "--expiry", "12/39", "--limit", "300,000")
    assert cli.run("ann", "user", "add-card", *card).status == 0
    for pair in PAIRS:
        collect, join = tap_once(
            cli,
            ("col", "group", "collect", "--total", "20,000", "--members", "1"),
            ("ann", "group", "join", "--yes"),
            pair,
        )
        if assert_linked_or_told(pair, collect, join):
            assert collect.data["bill"]["status"] == "ready", (pair, collect)


def test_two_acr122us_hand_a_grant_over_through_a_sticker(cli: Cli) -> None:
    """Neither reader can listen: the grant, bound ahead with --to, goes on an NTAG215."""
    owner_with_card(cli)
    target_id = cli.init("target", "target")
    stranger_id = cli.init("stranger", "target")
    cli.use_virtual_readers("acr122u", "acr122u")
    writer, reader = cli.readers.devices()
    placed = cli.run("user", "field", "place", "ntag215", "--field", cli.readers.field)
    assert placed.status == 0, placed

    def give(to: str):
        return finish(cli.start("user", "user", "give", "--carrier", "tag", "--to", to,
                                "--amount", "3,000", "--timeout", "10", device=writer))  # fmt: skip

    def take(name: str):
        return finish(cli.start(name, "target", "receive", "--carrier", "tag", "--timeout", "5",
                                device=reader))  # fmt: skip

    for_stranger = give(stranger_id)
    assert for_stranger.status == 0, for_stranger
    refused = take("target")  # not ours: refused, and left on the sticker for its owner
    assert refused.status == 3 and refused.data["error"] == "terminal_not_allowed", refused
    assert take("stranger").status == 0

    given = give(target_id)
    assert given.status == 0 and given.data["target_terminal"] == target_id, given
    received = take("target")
    assert received.status == 0, received
    assert received.data["grant"]["grant_id"] == given.data["grant"]["grant_id"]
    again = take("target")  # the sticker was wiped when it was read
    assert again.status == 4 and "taken and wiped" in again.data["message"], again

    unbound = finish(cli.start("user", "user", "give", "--carrier", "tag", "--amount", "1,000",
                               "--timeout", "5", device=writer))  # fmt: skip
    assert unbound.status == 6 and "--to" in unbound.data["message"], unbound


def test_two_acr122us_split_a_bill_through_a_sticker(cli: Cli) -> None:
    """The bill's request and each member's share take turns on one NTAG215: every visit
    checks what the sticker holds before it writes, so nobody overwrites a share."""
    cli.init("col", "target")
    card = ("--number", "4111111111111111", "--expiry", "12/39", "--limit", "300,000")
    members = {name: cli.init(name, "user") for name in ("ann", "bob")}
    for name in members:
        assert cli.run(name, "user", "add-card", *card).status == 0
    cli.use_virtual_readers("acr122u", "acr122u")
    collector_reader, member_reader = cli.readers.devices()
    assert cli.run("col", "field", "place", "ntag215", "--field", cli.readers.field).status == 0

    def collect(*args: str):
        return finish(cli.start("col", "group", "collect", "--carrier", "tag", *args,
                                "--timeout", "5", device=collector_reader))  # fmt: skip

    def join(name: str, *args: str, answers: str | None = None):
        return finish(cli.start(name, "group", "join", "--carrier", "tag", *args, "--timeout",
                                "5", device=member_reader, answers=answers))  # fmt: skip

    blank = join("ann", "--yes")
    assert blank.status != 0 and blank.data["error"] == "no_request", blank
    first = collect("--total", "30,000", "--members", "2")
    assert first.status == 0 and first.data["events"][0]["amount"] == 10_000, first
    bill_id = first.data["bill"]["bill_id"]

    ann = join("ann", "--yes")
    assert ann.status == 0 and ann.data["bill_id"] == bill_id, ann
    assert ann.data["collector_terminal"] == first.data["bill"]["collector_terminal"]
    waiting = join("bob", "--yes")  # ann's share is on the sticker: bob must not overwrite it
    assert waiting.status != 0 and waiting.data["error"] == "share_waiting", waiting

    took = collect("--bill", bill_id)
    assert took.status == 0 and took.data["events"][0]["member"] == members["ann"], took
    not_yet = collect("--bill", bill_id)
    assert not_yet.status != 0 and not_yet.data["events"][0]["code"] == "no_share_yet"

    bob = join("bob", answers="y\n")  # asked with the sticker read, paid on its next visit
    assert bob.status == 0, bob
    assert "Pay 10,000 KRW of bill" in bob.stderr and "Joined bill" in bob.stderr, bob
    done = collect("--bill", bill_id)
    assert done.status == 0 and done.data["bill"]["status"] == "ready", done
    joined = {slot["member"] for slot in done.data["bill"]["slots"]}
    assert joined == set(members.values())
    wiped = join("ann", "--yes")  # a complete bill leaves the sticker blank
    assert wiped.status != 0 and wiped.data["error"] == "no_request", wiped


@pytest.mark.parametrize("waiting", ["pn533", "rcs380"])
def test_an_acr122u_pays_through_the_type3_mailbox_of_a_listening_reader(
    cli: Cli, server: ServerProcess, waiting: str
) -> None:
    """--carrier tt3: the waiting reader plays a FeliCa card (the SCL3711 through its CIU's
    64-byte FIFO) that the ACR122U reads and writes, for the hand-off and the payments, an
    open charge among them."""
    owner_with_card(cli)
    cli.init("target", "target")
    cli.init("shop", "merchant")
    cli.use_virtual_readers(waiting, "acr122u")
    tt3 = ("--carrier", "tt3")
    give, receive = cli.tap(
        ("user", "user", "give", "--amount", "9,000", "--uses", "2", "--yes", *tt3),
        ("target", "target", "receive", *tt3),
    )
    assert (give.status, receive.status) == (0, 0), (give, receive)
    charge, pay = cli.tap(
        ("shop", "merchant", "charge", "--amount", "4,000", *tt3), ("target", "target", "pay", *tt3)
    )
    assert charge.data["status"] == pay.data["status"] == "approved", (charge, pay)

    # An open charge through the mailbox: the first tap shows it, the amount is typed with
    # the readers apart, the second tap pays it.
    waiting_device, tapping = cli.readers.devices()
    shop = cli.start(
        "shop", "merchant", "charge", "--open", *tt3, "--timeout", "30", device=waiting_device
    )
    person = cli.start("target", "target", "pay", *tt3, "--timeout", "30", device=tapping,
                       answers="3,000\n")  # fmt: skip
    charged, paid = finish(shop), finish(person)
    assert (charged.status, paid.status) == (0, 0), (charged, paid)
    assert (charged.data["amount"], charged.data["open_amount"]) == (3_000, True)
    assert "Tap the merchant's reader again to pay 3,000 KRW" in paid.stderr
    assert server.audit() == []
