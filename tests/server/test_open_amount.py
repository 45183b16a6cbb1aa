"""An open-amount charge at the server: the target signed the amount it entered, the merchant
asks for exactly that, and it is what is charged; a merchant asking another amount is
declined and nothing changes. The request is built from the NFC records the way the
terminals build it (:mod:`nfcpay.records.presentation`, the merchant's ``payment_request``)."""

from __future__ import annotations

import secrets
from typing import Any

from nfcpay.records import ChallengeRecord, MeansRecord, PresentedGrant
from nfcpay.records.presentation import signed
from nfcpay.terminals.merchant import ask_server, payment_request
from nfcpay.testing.server import PaymentScene
from tests.support.harness import Api


def open_request(scene: PaymentScene, entered: int) -> dict[str, Any]:
    """The merchant's request for the means the target signed for ``entered`` on an open
    challenge (at most 50,000)."""
    challenge = ChallengeRecord(
        merchant_id=str(scene.merchant.merchant_id),
        currency="KRW",
        max_amount=50_000,
        nonce=secrets.token_bytes(16),
        purpose=scene.merchant.primary_category,
    )
    share = PresentedGrant(grant_id=scene.grant_id, amount=entered, usage_auth=scene.usage_auth())
    unsigned = MeansRecord(
        presenting_terminal=scene.target.terminal_id,
        currency="KRW",
        grants=[share],
        signature=bytes(64),
    )
    return payment_request(challenge, signed(challenge, unsigned, scene.target.private_key))


def test_the_amount_the_target_signed_is_what_is_charged(api: Api) -> None:
    scene = api.scene(amount_cap=30_000)
    request = open_request(scene, 12_345)
    assert request["amount"] == 12_345
    answer = ask_server(scene.merchant.client, request)
    assert answer["status"] == "approved", answer
    payment = scene.merchant.client.get_payment(answer["payment_id"])
    assert payment["amount"] == 12_345
    grant = scene.owner.client.get_grant(scene.grant_id)
    assert grant["remaining_amount"] == 30_000 - 12_345
    assert api.audit() == []


def test_a_merchant_asking_another_amount_is_declined_and_nothing_changes(api: Api) -> None:
    scene = api.scene(amount_cap=30_000)
    request = open_request(scene, 12_000)
    before = api.snapshot()
    # The shares re-split to the merchant's amount: they add up, the signature does not.
    [share] = request["means"]["grants"]
    resplit = {**request["means"], "grants": [{**share, "amount": 20_000}]}
    answer = ask_server(scene.merchant.client, {**request, "amount": 20_000, "means": resplit})
    assert (answer["status"], answer["decline_code"]) == ("declined", "bad_signature")
    # The means as signed, another amount asked: the shares do not make it up.
    answer = ask_server(scene.merchant.client, {**request, "amount": 20_000})
    assert (answer["status"], answer["decline_code"]) == ("declined", "shares_do_not_add_up")
    assert api.snapshot() == before
    assert ask_server(scene.merchant.client, request)["status"] == "approved"
    assert api.audit() == []
