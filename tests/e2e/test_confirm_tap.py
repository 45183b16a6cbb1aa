"""``user give`` confirms who tapped after the tap (hardening hole 5), one ``nfcpay`` process
per terminal over the loopback reader, against a real server process on a test clock
(SQLite, and PostgreSQL when NFCPAY_TEST_DATABASE_URL is set).

A relay registers a target terminal of its own under the friend's label and taps in the
friend's place: the owner sees the label she expects and a key fingerprint that is not the
one on the friend's screen, says no, and the relay holds a revoked grant.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.crypto import format_fingerprint
from nfcpay.server.services.grants import CONFIRM_WINDOW_S
from nfcpay.testing.server import ServerProcess
from tests.support.cli import Cli, Done, finish, owner_with_card
from tests.support.harness import DATABASES, server_on

pytestmark = pytest.mark.nfc_sim


@pytest.fixture(scope="module", params=DATABASES)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """This module's server, on a test clock (``server.advance``), on each database."""
    with server_on(request.param, tmp_path_factory.mktemp("server"), test_clock=True) as p:
        yield p


def register(cli: Cli, name: str, label: str) -> tuple[str, str]:
    """A target terminal labelled ``label``: its id and its fingerprint as screens show it."""
    done = cli.run(name, "terminal", "init", "--role", "target", "--label", label)
    assert done.status == 0, done
    return done.data["terminal_id"], format_fingerprint(bytes.fromhex(done.data["key_fingerprint"]))


def give_to(cli: Cli, taker: str, **person: object) -> tuple[Done, Done]:
    """The owner waits to give 30,000 KRW (as a person unless ``person`` is empty: --json,
    nothing typed); ``taker`` taps with `target receive`."""
    waiting, tapping = cli.readers.devices()
    give = cli.start(
        "user", "user", "give", "--amount", "30,000", "--timeout", "20", device=waiting, **person
    )
    receive = finish(cli.start(taker, "target", "receive", "--timeout", "20", device=tapping))
    return finish(give), receive


def pay(cli: Cli, payer: str, amount: str = "5,000") -> tuple[Done, Done]:
    return cli.tap(("shop", "merchant", "charge", "--amount", amount), (payer, "target", "pay"))


def test_a_relay_under_the_friends_label_is_told_apart_by_its_fingerprint(cli: Cli) -> None:
    owner_with_card(cli)
    cli.init("shop", "merchant")
    _, bob_fingerprint = register(cli, "bob", "Bob")
    relay_id, relay_fingerprint = register(cli, "relay", "Bob")

    give, receive = give_to(cli, "relay", answers="n\n")
    assert receive.status == 0, receive
    assert receive.data["key_fingerprint"] == relay_fingerprint  # the relay's own screen
    grant_id = receive.data["grant"]["grant_id"]
    assert give.status == 3, give
    assert f"Terminal Bob ({relay_id}) tapped, key fingerprint {relay_fingerprint}." in give.stderr
    assert bob_fingerprint not in give.stderr
    assert "labels are chosen by their owners" in give.stderr
    said = f"Not confirmed: grant {grant_id} is revoked; Bob ({relay_id[:6]}…) cannot pay with it."
    assert said in give.stderr

    charge, paid = pay(cli, "relay")
    assert (charge.status, paid.status) == (3, 3), (charge, paid)
    assert charge.data["decline_code"] == "grant_revoked"
    grants = cli.run("user", "user", "grants")
    assert [g["status"] for g in grants.data["grants"]] == ["revoked"]


def test_the_friend_is_confirmed_by_fingerprint_and_pays(cli: Cli) -> None:
    owner_with_card(cli)
    cli.init("shop", "merchant")
    bob_id, bob_fingerprint = register(cli, "bob", "Bob")

    give, receive = give_to(cli, "bob", answers="y\n")
    assert (give.status, receive.status) == (0, 0), (give, receive)
    assert f"Terminal Bob ({bob_id}) tapped, key fingerprint {bob_fingerprint}." in give.stderr
    assert f"Handed over to Bob ({bob_id[:6]}…), confirmed." in give.stderr
    charge, paid = pay(cli, "bob")
    assert charge.data["status"] == paid.data["status"] == "approved", (charge, paid)


def test_a_script_without_yes_confirms_nothing_and_says_so_in_json(cli: Cli) -> None:
    owner_with_card(cli)
    bob_id, bob_fingerprint = register(cli, "bob", "Bob")
    give, receive = give_to(cli, "bob")  # --json, nobody typing
    assert receive.status == 0, receive
    assert give.status == 3, give
    assert give.data["ok"] is False
    assert give.data["confirmation"] == "declined"
    assert give.data["tapped"] == {
        "terminal_id": bob_id,
        "label": "Bob",
        "key_fingerprint": bob_fingerprint,
    }
    assert give.data["grant"]["status"] == "revoked"

    scripted, _ = cli.tap(
        ("user", "user", "give", "--amount", "1,000", "--yes"), ("bob", "target", "receive")
    )
    assert scripted.status == 0, scripted
    assert (scripted.data["confirmation"], scripted.data["grant"]["status"]) == (
        "confirmed",
        "active",
    )
    assert scripted.data["tapped"]["key_fingerprint"] == bob_fingerprint


def test_an_owner_who_never_answers_leaves_a_grant_that_pays_nothing_and_lapses(
    cli: Cli, server: ServerProcess, tmp_path: Path
) -> None:
    """The owner's terminal dies at the question: the grant stays unconfirmed (Bob's wallet
    says it waits for the owner), is declined, and counts as revoked once the server's
    window has passed."""
    owner_with_card(cli)
    cli.init("shop", "merchant")
    register(cli, "bob", "Bob")
    waiting, tapping = cli.readers.devices()
    give = cli.start(
        "user", "user", "give", "--amount", "30,000", "--timeout", "20", device=waiting,
        silent_person=True,
    )  # fmt: skip
    receive = finish(cli.start("bob", "target", "receive", "--timeout", "20", device=tapping))
    assert receive.status == 0, receive
    give.kill()
    finish(give)

    wallet = finish(cli.start("bob", "target", "wallet", answers=""))
    assert "waiting for the owner's confirmation" in wallet.stderr, wallet
    charge, _ = pay(cli, "bob")
    assert charge.data["decline_code"] == "grant_not_confirmed", charge

    server.advance(CONFIRM_WINDOW_S + 1)
    charge, _ = pay(cli, "bob")
    assert charge.data["decline_code"] == "grant_revoked", charge
    assert "did not confirm the terminal that tapped" in charge.data["message"]
    grants = cli.run("user", "user", "grants")
    assert [g["status"] for g in grants.data["grants"]] == ["revoked"]
