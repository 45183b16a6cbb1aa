"""The terminal flows: grant choice, signed means, pending receipts, settling, and whole
taps between two readers over loopback (two threads, one in-process server)."""

from __future__ import annotations

from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.errors import ConfigError, Declined
from nfcpay.money import Money
from nfcpay.server.schemas import PaymentIn
from nfcpay.server.services import rules
from nfcpay.terminals import merchant, target
from nfcpay.terminals.account import connect
from nfcpay.terminals.held import HeldGrants, Share, choose_shares
from nfcpay.terminals.receipts import Receipt, Receipts, ReceiptStatus
from nfcpay.terminals.user import Rights, always_confirm, confirm_given, give
from nfcpay.terminals.wallet import wallet
from nfcpay.transport.reader import open_reader
from tests.support.cli import free_udp_port
from tests.support.scenes import Scene, both, challenge_for, pending_charge


def test_choose_shares_prefers_small_grants_and_respects_per_use_caps(scene: Scene) -> None:
    small = scene.give(Rights(amount_cap=5_000))
    large = scene.give(Rights(amount_cap=50_000, per_use_cap=10_000))
    shares = choose_shares(scene.target, challenge_for(scene, 12_000))
    assert [(held.grant_id, share) for held, share in shares] == [
        (small, 5_000),
        (large, 7_000),
    ]


def test_choose_shares_refuses_what_the_grants_cannot_cover(scene: Scene) -> None:
    scene.give(Rights(amount_cap=5_000, purposes=("5812",)))
    with pytest.raises(Declined) as caught:
        choose_shares(scene.target, challenge_for(scene, 4_000, purpose="5999"))
    assert caught.value.code == "no_usable_grant"


def test_explicit_grants_are_presented_as_asked(scene: Scene) -> None:
    grant_id = scene.give(Rights(amount_cap=5_000))
    [(held, share)] = choose_shares(scene.target, challenge_for(scene, 9_000), [grant_id])
    assert (held.grant_id, share) == (grant_id, 9_000)
    with pytest.raises(ConfigError):
        choose_shares(scene.target, challenge_for(scene, 1), ["g_unknown"])


def test_signed_means_verify_against_what_the_server_checks(scene: Scene) -> None:
    grant_id = scene.give(Rights(amount_cap=5_000))
    challenge = challenge_for(scene, 3_000)
    shares = choose_shares(scene.target, challenge)
    identity = scene.target.identity()
    means = target.sign_means(scene.target, identity, challenge, shares)
    assert [(g.grant_id, g.amount) for g in means.grants] == [(grant_id, 3_000)]
    request = PaymentIn.model_validate(merchant.payment_request(challenge, means))
    checked = rules.presentation(request, challenge.merchant_id, "5812")
    assert (checked.amount, checked.presenting_terminal) == (3_000, identity.terminal_id)
    public = crypto.public_key_bytes(scene.target.private_key())
    assert crypto.verify_signature(public, means.signature, checked.message())
    assert merchant.api_means(means)["grants"][0]["usage_auth"] == crypto.b64e(
        means.grants[0].usage_auth
    )


def test_server_unreachable_keeps_the_receipt_pending_and_settle_charges_once(
    scene: Scene,
) -> None:
    scene.give(Rights(amount_cap=20_000, max_uses=3))
    receipt = pending_charge(scene, 4_000)
    with connect(scene.merchant, "http://127.0.0.1:9") as dead:
        merchant._authorize(scene.merchant, dead, receipt)
    assert receipt.status == "pending" and "merchant settle" in receipt.message
    assert "request" in scene.merchant.get("receipts", receipt.receipt_id)

    with scene.client(scene.merchant) as client:
        [settled] = merchant.settle(scene.merchant, client)
        assert settled.status == "approved"
        assert "request" not in scene.merchant.get("receipts", receipt.receipt_id)
        assert merchant.settle(scene.merchant, client, receipt.receipt_id)[0] == settled
        assert len(client.list_payments()) == 1
    assert scene.server.audit() == []


def test_wallet_settles_a_receipt_whose_result_never_came(scene: Scene) -> None:
    grant_id = scene.give(Rights(amount_cap=20_000, max_uses=2))
    challenge = challenge_for(scene, 6_000)
    sent = Receipt.new(challenge, [Share(HeldGrants(scene.target).get(grant_id), 6_000)])
    receipt = pending_charge(scene, 6_000, challenge)
    Receipts(scene.target).put(sent.link_lost("the link was lost"))
    with scene.client(scene.merchant) as client:
        merchant._authorize(scene.merchant, client, receipt)  # fills in the answer
    with scene.client(scene.target) as client:
        held = wallet(scene.target, client)
    assert receipt.payment_id is not None
    assert [(r.status, r.payment_id) for r in held.receipts] == [
        (ReceiptStatus.APPROVED, receipt.payment_id)
    ]
    assert held.grants[0].last_known.remaining_amount == 14_000


@pytest.mark.nfc_sim
def test_give_then_pay_over_loopback(scene: Scene) -> None:
    device = f"loopback:{free_udp_port()}"

    def user_gives() -> Any:
        with scene.client(scene.user) as client, open_reader(device) as reader:
            return give(scene.user, client, reader, Rights(amount_cap=15_000), timeout=10)

    def target_receives() -> Any:
        with open_reader(device) as reader:
            return target.receive_grant(scene.target, reader, timeout=10)

    given, held = both(user_gives, target_receives)
    assert given.grant["grant_id"] == held.grant_id
    with scene.client(scene.user) as client:
        given = confirm_given(scene.user, client, given, always_confirm)
    assert given.confirmation == "confirmed"

    def shop_charges() -> Any:
        with scene.client(scene.merchant) as client, open_reader(device) as reader:
            return merchant.charge(scene.merchant, client, reader, Money(9_000, "KRW"), timeout=10)

    def target_pays() -> Any:
        with open_reader(device) as reader:
            return target.pay(scene.target, reader, timeout=10)

    charged, paid = both(shop_charges, target_pays)
    assert charged.status == paid.status == "approved"
    assert charged.delivered is True and paid.receipt.payment_id == charged.payment_id
    known = scene.target.get("grants", held.grant_id)["last_known"]
    assert (known["remaining_amount"], known["remaining_uses"]) == (6_000, 0)
