"""Who tapped is confirmed after the tap (hardening hole 5): a grant issued to whoever tapped
pays only once its owner, shown the tapping terminal's registered label and key fingerprint,
confirms it. Two terminals tap over the loopback reader (threads), one in-process server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nfcpay.crypto import format_fingerprint
from nfcpay.errors import ApiError, Declined
from nfcpay.money import Money
from nfcpay.records import HelloRecord, Role
from nfcpay.terminals import exchange, merchant, target
from nfcpay.terminals.account import init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.user import Confirmation, Given, Rights, confirm_given, give
from nfcpay.transport.reader import open_reader
from tests.support.cli import free_udp_port
from tests.support.scenes import Scene, SharedTransport, both

pytestmark = pytest.mark.nfc_sim


def stranger(scene: Scene, tmp_path: Path, label: str) -> TerminalHome:
    """A target terminal someone else registered, under a label of their choosing."""
    home = TerminalHome(tmp_path / "relay")
    init_terminal(
        home,
        role="target",
        label=label,
        server_url=scene.server.url,
        transport=SharedTransport(scene.server.transport),
    )
    return home


def give_in_a_tap(scene: Scene, taker: TerminalHome) -> tuple[Given, Any]:
    """The owner waits with a new grant; ``taker`` taps and keeps what it gets."""
    device = f"loopback:{free_udp_port()}"

    def user_gives() -> Given:
        with scene.client(scene.user) as client, open_reader(device) as reader:
            return give(scene.user, client, reader, Rights(amount_cap=15_000), timeout=10)

    def taker_receives() -> Any:
        with open_reader(device) as reader:
            return target.receive_grant(taker, reader, timeout=10)

    return both(user_gives, taker_receives)


def pay_in_a_tap(scene: Scene, payer: TerminalHome, amount: int = 5_000) -> merchant.Charge:
    device = f"loopback:{free_udp_port()}"

    def shop_charges() -> merchant.Charge:
        with scene.client(scene.merchant) as client, open_reader(device) as reader:
            return merchant.charge(scene.merchant, client, reader, Money(amount, "KRW"), timeout=10)

    def payer_pays() -> Any:
        with open_reader(device) as reader:
            return target.pay(payer, reader, timeout=10)

    charged, _ = both(shop_charges, payer_pays)
    return charged


def owner_comparing_with(screen: TerminalHome, shown: list[Given]) -> Callable[[Given], Any]:
    """The owner: says yes only if the fingerprint shown is the one on ``screen``."""
    on_screen = format_fingerprint(exchange.own_fingerprint(screen))

    def ask(given: Given) -> Confirmation:
        shown.append(given)
        assert given.tapped is not None
        if given.tapped.shown_fingerprint == on_screen:
            return Confirmation.CONFIRMED
        return Confirmation.DECLINED

    return ask


def test_a_relay_by_the_friends_name_is_seen_by_its_fingerprint_and_gets_nothing(
    scene: Scene, tmp_path: Path
) -> None:
    """The relay's terminal bears the friend's label; only its fingerprint differs from the
    one on the friend's screen. The owner declines: the grant is revoked, the relay's
    payment declined."""
    friend_label = scene.target.identity().label
    relay = stranger(scene, tmp_path, label=friend_label)
    given, held = give_in_a_tap(scene, relay)
    assert given.confirmation is Confirmation.PENDING
    assert held.grant_id == given.grant["grant_id"]

    shown: list[Given] = []
    ask = owner_comparing_with(scene.target, shown)
    with scene.client(scene.user) as client:
        settled = confirm_given(scene.user, client, given, ask)
    [asked] = shown
    assert asked.tapped is not None
    assert (asked.tapped.label, asked.tapped.terminal_id) == (
        friend_label,
        relay.identity().terminal_id,
    )
    assert asked.tapped.shown_fingerprint == format_fingerprint(exchange.own_fingerprint(relay))
    assert settled.confirmation is Confirmation.DECLINED
    assert settled.grant["status"] == "revoked"
    assert settled.to_json()["ok"] is False

    charged = pay_in_a_tap(scene, relay)
    assert (charged.status, charged.decline_code) == ("declined", "grant_revoked")


def test_the_friend_is_confirmed_after_the_tap_and_pays_only_then(scene: Scene) -> None:
    given, _ = give_in_a_tap(scene, scene.target)
    assert given.grant["status"] == "unconfirmed"

    charged = pay_in_a_tap(scene, scene.target)
    assert (charged.status, charged.decline_code) == ("declined", "grant_not_confirmed")

    shown: list[Given] = []
    ask = owner_comparing_with(scene.target, shown)
    with scene.client(scene.user) as client:
        settled = confirm_given(scene.user, client, given, ask)
    assert settled.confirmation is Confirmation.CONFIRMED
    assert settled.to_json()["tapped"]["key_fingerprint"] == format_fingerprint(
        exchange.own_fingerprint(scene.target)
    )
    assert scene.user.get("grants", given.grant["grant_id"])["grant"]["status"] == "active"
    assert pay_in_a_tap(scene, scene.target).status == "approved"


def test_ctrl_c_at_the_question_revokes_the_grant(scene: Scene) -> None:
    given, _ = give_in_a_tap(scene, scene.target)

    def interrupted(_: Given) -> Confirmation:
        raise KeyboardInterrupt

    with scene.client(scene.user) as client:
        with pytest.raises(KeyboardInterrupt):
            confirm_given(scene.user, client, given, interrupted)
        assert client.get_grant(given.grant["grant_id"])["status"] == "revoked"


def test_a_hello_claiming_another_terminals_fingerprint_is_refused(
    scene: Scene, tmp_path: Path
) -> None:
    """A relay taps with its own id but the friend's fingerprint (it cannot have the
    friend's key): the server refuses to issue, the relay is told, nothing is issued."""
    relay = stranger(scene, tmp_path, label="relay")
    device = f"loopback:{free_udp_port()}"

    def user_gives() -> Any:
        with scene.client(scene.user) as client, open_reader(device) as reader:
            return give(scene.user, client, reader, Rights(amount_cap=15_000), timeout=10)

    def relay_taps() -> Any:
        forged = HelloRecord(
            terminal_id=relay.identity().terminal_id,
            role=Role.TARGET,
            key_fingerprint=exchange.own_fingerprint(scene.target),
        )
        with (
            open_reader(device) as reader,
            exchange.tap(
                reader,
                exchange.GIVE_SERVICE,
                offer=False,
                timeout=10,
                status=exchange.quiet,
                what="",
            ) as channel,
        ):
            exchange.send(channel, forged)
            return exchange.receive(channel, HelloRecord, exchange.RESULT_TIMEOUT)

    def outcome(work: Callable[[], Any]) -> Callable[[], Any]:
        def run() -> Any:
            try:
                return work()
            except (ApiError, Declined) as exc:
                return exc

        return run

    refused, told = both(outcome(user_gives), outcome(relay_taps))
    assert isinstance(refused, ApiError) and refused.code == "key_fingerprint_mismatch"
    assert isinstance(told, Declined) and told.code == "issue_failed"
    assert "not its registered key's" in told.message
    with scene.client(scene.user) as client:
        assert client.list_grants() == []


def test_a_server_that_cannot_hold_a_grant_for_confirmation_is_named_to_upgrade() -> None:
    """An older server refuses the unknown ``tap_fingerprint`` field (422): the owner is
    told to upgrade it, not shown a validation error about a field they never typed."""
    from nfcpay.terminals.user import _older_server

    old = ApiError("tap_fingerprint: Extra inputs are not permitted", status=422,
                   code="validation_error", field="tap_fingerprint")  # fmt: skip
    told = _older_server(old)
    assert told.code == "upgrade_server" and "upgrade nfcpay on the server" in told.message
    other = ApiError("rights.amount_cap: too big", status=422, field="rights.amount_cap")
    assert _older_server(other) is other
