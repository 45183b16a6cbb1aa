"""GET /v1/presentations/{merchant}/{challenge}: what became of the means a terminal
presented, on SQLite and PostgreSQL. Only the two parties to the payment see it; for anyone
else, and for a challenge no payment used, the answer is the same 404."""

from __future__ import annotations

import secrets

import pytest

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.server.store.migrations import MIGRATIONS
from nfcpay.testing.server import PaymentScene, Terminal
from tests.support.harness import Api

#: The keys of a payment as the merchant sees it (GET /v1/payments/{id}): what it has always
#: seen, and the names of the two parties beside their ids.
PAYMENT_KEYS = {
    "payment_id",
    "status",
    "approval_code",
    "amount",
    "currency",
    "merchant_id",
    "merchant_name",
    "presenting_terminal",
    "presenting_label",
    "purpose",
    "bill_id",
    "refunded",
    "created_at",
    "shares",
}


def paid(scene: PaymentScene, amount: int = 7_000) -> tuple[bytes, dict[str, object]]:
    challenge = secrets.token_bytes(16)
    answer = scene.pay(amount, challenge=challenge)
    assert answer["status"] == "approved", answer
    return challenge, answer


def outcome(terminal: Terminal, scene: PaymentScene, challenge: bytes) -> object:
    return terminal.client.presentation_outcome(str(scene.merchant.merchant_id), challenge)


def no_payment_yet(terminal: Terminal, merchant_id: str, challenge: bytes) -> ApiError:
    """The raw 404 (the client turns it into None for its caller)."""
    with pytest.raises(ApiError) as raised:
        terminal.client._call("GET", f"/v1/presentations/{merchant_id}/{crypto.b64e(challenge)}")
    return raised.value


def test_the_presenting_terminal_reads_the_payment_its_means_made(api: Api) -> None:
    scene = api.scene()
    challenge, answer = paid(scene)
    payment = outcome(scene.target, scene, challenge)
    merchants = scene.merchant.client.get_payment(str(answer["payment_id"]))
    assert payment == merchants  # the merchant's own view, nothing more
    assert set(merchants) == PAYMENT_KEYS
    assert (merchants["merchant_name"], merchants["presenting_label"]) == (
        "Test Bistro",
        scene.target.info["label"],
    )
    assert {k: v for k, v in answer.items() if k != "replayed"} == merchants  # as approved
    assert merchants["shares"] == [{"grant_id": scene.grant_id, "amount": 7_000}]
    assert outcome(scene.merchant, scene, challenge) == merchants  # the other party


def test_no_payment_so_far_for_a_challenge_unused_or_only_declined(api: Api) -> None:
    scene = api.scene(amount_cap=5_000)
    assert outcome(scene.target, scene, secrets.token_bytes(16)) is None
    declined_challenge = secrets.token_bytes(16)
    assert scene.pay(6_000, challenge=declined_challenge)["status"] == "declined"
    before = api.snapshot()
    assert outcome(scene.target, scene, declined_challenge) is None
    assert api.snapshot() == before
    # The same means sent again later (e.g. `merchant settle`) can still make a payment.
    approved = scene.pay(5_000, challenge=declined_challenge)
    assert outcome(scene.target, scene, declined_challenge) == scene.merchant.client.get_payment(
        approved["payment_id"]
    )


def test_no_one_else_learns_that_a_payment_exists(api: Api) -> None:
    """Another target, the grant's owner and another merchant get exactly the 404 of a
    challenge no payment used."""
    scene = api.scene()
    challenge, _ = paid(scene)
    unused = secrets.token_bytes(16)
    merchant_id = str(scene.merchant.merchant_id)
    others = [api.terminal("target"), scene.owner, api.terminal("merchant")]
    for other in others:
        assert outcome(other, scene, challenge) is None
        used, never = (
            no_payment_yet(other, merchant_id, challenge),
            no_payment_yet(other, merchant_id, unused),
        )
        assert (used.status, used.code) == (never.status, never.code) == (404, "no_payment_yet")
        assert used.message.replace(crypto.b64e(challenge), "C") == never.message.replace(
            crypto.b64e(unused), "C"
        )
    # Another merchant's challenge with the same bytes is another challenge.
    elsewhere = api.scene()
    assert outcome(scene.target, elsewhere, challenge) is None


def test_the_merchants_view_is_unchanged(api: Api) -> None:
    """Merchants list and read payments as before; a target still cannot list or read them
    by id (it asks by the challenge it answered)."""
    scene = api.scene()
    _, answer = paid(scene)
    [listed] = scene.merchant.client.list_payments()
    assert set(listed) == PAYMENT_KEYS and listed["payment_id"] == answer["payment_id"]
    with pytest.raises(ApiError) as raised:
        scene.target.client.get_payment(str(answer["payment_id"]))
    assert raised.value.status == 403


@pytest.mark.parametrize(
    ("challenge", "why"),
    [("not*base64", "challenge is not base64url"), ("AAAA", "challenge must be 16 to 64 bytes")],
)
def test_a_malformed_challenge_is_refused_by_name(api: Api, challenge: str, why: str) -> None:
    scene = api.scene()
    with pytest.raises(ApiError) as raised:
        scene.target.client._call(
            "GET", f"/v1/presentations/{scene.merchant.merchant_id}/{challenge}"
        )
    assert (raised.value.status, raised.value.field, raised.value.message) == (
        422,
        "challenge",
        why,
    )


def test_an_unsigned_request_is_refused(api: Api) -> None:
    scene = api.scene()
    challenge, _ = paid(scene)
    path = f"/v1/presentations/{scene.merchant.merchant_id}/{crypto.b64e(challenge)}"
    assert api.http.get(f"{api.server.url}{path}").status_code == 401


def test_challenges_used_before_the_migration_are_matched_to_their_payment(api: Api) -> None:
    """Migration 5's backfill, on rows as an older server left them (no payment named): a
    payment is found by its merchant and instant; two of one merchant at the same instant
    stay unmatched, and are answered "no payment so far" rather than guessed."""
    scene = api.scene(max_uses=3)
    alone, first = paid(scene)
    api.clock.advance(1)
    twin_a, _ = paid(scene)
    twin_b, _ = paid(scene)  # the test clock stands still: the same instant as twin_a
    backfill = MIGRATIONS[5][1]
    api.runtime.db.run(lambda tx: tx.execute("UPDATE challenges SET payment_id = NULL"))
    api.runtime.db.run(lambda tx: tx.execute(backfill))
    assert outcome(scene.target, scene, alone) == scene.merchant.client.get_payment(
        str(first["payment_id"])
    )
    assert outcome(scene.target, scene, twin_a) is None
    assert outcome(scene.target, scene, twin_b) is None
