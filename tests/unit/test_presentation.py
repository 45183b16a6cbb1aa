"""The signed presentation: one value (:class:`nfcpay.crypto.Presentation`), built from the
NFC records the target and merchant hold (:mod:`nfcpay.records.presentation`) and from the
merchant's API request (:func:`nfcpay.server.services.rules.presentation`).

The fixed vectors are layout version 2 (:data:`nfcpay.crypto.PRESENTATION_VERSION`), the
first to sign the purpose: their bytes and signatures must never change, or the signatures
of terminals already in use stop verifying. A change of layout is a new version, which
terminals and the server of the old one refuse with "upgrade nfcpay".
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from nfcpay import crypto
from nfcpay.errors import AmountRefused
from nfcpay.money import MAX_MINOR
from nfcpay.records import ChallengeRecord, MeansRecord, PresentedGrant
from nfcpay.records.means import SplitMode
from nfcpay.records.presentation import presentation, signed, signed_amount
from nfcpay.server.runtime import TerminalKey
from nfcpay.server.schemas import PaymentIn
from nfcpay.server.services import rules
from nfcpay.terminals.merchant import payment_request
from tests.support.strategies import (
    amounts,
    challenges,
    currencies,
    ids,
    means,
    open_challenges,
    tokens,
)

#: The key the vectors were signed with (Ed25519 signatures are deterministic).
KEY = crypto.private_key_from_bytes(bytes(range(32)))
MERCHANT = "m_r2d5k8x3q7w4b9n6"
TARGET = "t_k7x2m4q9w3b5n8c6"


def _payment(
    amount: int,
    nonce: bytes,
    grants: list[tuple[str, int]],
    *,
    merchant: str = MERCHANT,
    terminal: str = TARGET,
    currency: str = "KRW",
    purpose: str = "5812",
    **means: Any,
) -> tuple[ChallengeRecord, MeansRecord]:
    """The merchant's challenge and the target's unsigned means paying it."""
    challenge = ChallengeRecord(
        merchant_id=merchant, currency=currency, amount=amount, nonce=nonce, purpose=purpose
    )
    shares = [PresentedGrant(grant_id=g, amount=a, usage_auth=bytes(32)) for g, a in grants]
    unsigned = MeansRecord(
        presenting_terminal=terminal,
        currency=currency,
        grants=shares,
        signature=bytes(64),
        **means,
    )
    return challenge, unsigned


#: (what, the merchant's challenge, the target's means, the signed bytes, the signature).
VECTORS: list[tuple[str, ChallengeRecord, MeansRecord, str, str]] = [
    (
        "one grant",
        *_payment(12_000, bytes(range(16)), [("g_3fz7q2m4k9xw6a5b", 12_000)]),
        "00166e66637061792f70726573656e746174696f6e2f763200000010000102030405060708090a0b0c0d0e"
        "0f000000126d5f723264356b3878337137773462396e36000000053132303030000000034b525700000004"
        "3538313200000012745f6b3778326d347139773362356e386336000000013100000012675f33667a377132"
        "6d346b3978773661356200000005313230303000000000000000013000000000000000056578616374",
        "cb913e3e62c4b5b904f2f5f661a3f22b1339ba8bdd7c75c6fe7ed60a3433b97dcb282b95aa2829fe9c1e1a"
        "854ea58439c2b0b13ffb8479fc06cec015fe444e03",
    ),
    (
        "group bill, remainder",
        *_payment(
            100_000,
            bytes(range(32)),
            [("g_3fz7q2m4k9xw6a5b", 20_000), ("g_a1b2c3", 30_000)],
            own_source_id="src_w4ll3t",
            own_amount=50_000,
            bill_id="b_dinner",
            split_mode=SplitMode.REMAINDER,
        ),
        "00166e66637061792f70726573656e746174696f6e2f763200000020000102030405060708090a0b0c0d0e"
        "0f101112131415161718191a1b1c1d1e1f000000126d5f723264356b3878337137773462396e3600000006"
        "313030303030000000034b5257000000043538313200000012745f6b3778326d347139773362356e386336"
        "000000013200000012675f33667a3771326d346b3978773661356200000005323030303000000008675f61"
        "31623263330000000533303030300000000a7372635f77346c6c337400000005353030303000000008625f"
        "64696e6e65720000000972656d61696e646572",
        "e28a45610e3607733bd623a7b96fa145a3390e5c877559b1883f17e5f133378d1dfd4472ce03185c8d0e96"
        "69682583517acc4f2cf503a8a8eb78469d56fc540c",
    ),
    (
        "own share only, bill, exact",
        *_payment(
            1_000,
            bytes(range(16)),
            [],
            merchant="m_shop",
            terminal="t_target",
            currency="EUR",
            purpose="5411",
            own_source_id="src_card",
            own_amount=1_000,
            bill_id="b_lunch",
        ),
        "00166e66637061792f70726573656e746174696f6e2f763200000010000102030405060708090a0b0c0d0e"
        "0f000000066d5f73686f70000000043130303000000003455552000000043534313100000008745f746172"
        "6765740000000130000000087372635f63617264000000043130303000000007625f6c756e636800000005"
        "6578616374",
        "570e20f0569ac066c5693f9db1e70442148e2e2e14412ebae7db54c5cb7c0a2124a320022582e39944d99b"
        "78b2f798c4ed530c365552af330f128436b46d7202",
    ),
]


def as_the_server_reads_it(challenge: ChallengeRecord, means: MeansRecord) -> PaymentIn:
    """The merchant's request for ``means`` answering ``challenge``, sent as JSON and parsed
    as the server parses it."""
    return PaymentIn.model_validate(json.loads(json.dumps(payment_request(challenge, means))))


def test_the_vectors_keep_their_bytes_and_signatures() -> None:
    for what, challenge, unsigned, message, signature in VECTORS:
        assert presentation(challenge, unsigned).message().hex() == message, what
        means = signed(challenge, unsigned, KEY)
        assert means.signature.hex() == signature, what


def test_the_server_accepts_the_vectors_signatures() -> None:
    registered = TerminalKey(crypto.public_key_bytes(KEY), "target", None, "Bob")
    row = {"merchant_id": "m_any", "region": "KR-11"}
    for what, challenge, unsigned, message, signature in VECTORS:
        means = dataclasses.replace(unsigned, signature=bytes.fromhex(signature))
        body = as_the_server_reads_it(challenge, means)
        purpose = str(challenge.purpose)
        presented = rules.presentation(body, challenge.merchant_id, purpose)
        assert presented.message().hex() == message, what
        attempt = rules.Attempt(body, challenge.merchant_id, row, 0, (purpose,))
        assert rules.signature_rule(attempt, registered) is None, what
        # The merchant claims another of its categories after the target signed: no match.
        claimed = body.model_copy(update={"purpose": "7995"})
        attempt = rules.Attempt(claimed, challenge.merchant_id, row, 0, (purpose, "7995"))
        assert rules.signature_rule(attempt, registered) is not None, what


def test_a_challenge_without_a_purpose_cannot_be_presented() -> None:
    """A merchant on nfcpay before version 2 names no purpose: nothing is signed for it."""
    _, challenge, unsigned, _, _ = VECTORS[0]
    with pytest.raises(ValueError, match="without a purpose"):
        presentation(dataclasses.replace(challenge, purpose=None), unsigned)


@given(
    challenge=challenges.filter(lambda challenge: challenge.purpose is not None),
    drawn=means(),
    bill_id=st.none() | ids("b"),
    split_mode=st.sampled_from(SplitMode),
)
def test_records_and_the_request_give_the_same_presentation(
    challenge: ChallengeRecord, drawn: MeansRecord, bill_id: str | None, split_mode: SplitMode
) -> None:
    """What the target signs from the records is what the server checks from the merchant's
    request for the same payment."""
    sent = dataclasses.replace(
        drawn, currency=challenge.currency, bill_id=bill_id, split_mode=split_mode
    )
    if challenge.is_open:  # the means' total is the amount: one the merchant takes
        challenge = dataclasses.replace(challenge, max_amount=None)
        assume(sent.total <= MAX_MINOR)
    body = as_the_server_reads_it(challenge, sent)
    server = rules.presentation(body, challenge.merchant_id, str(body.purpose))
    assert server == presentation(challenge, sent)


def opened(challenge: ChallengeRecord, max_amount: int | None = None) -> ChallengeRecord:
    """``challenge`` as an open one: no amount, the target enters it."""
    return dataclasses.replace(challenge, amount=None, max_amount=max_amount)


def test_an_open_challenge_signs_the_entered_amount_in_the_same_layout() -> None:
    """The amount was always signed: for an open challenge it is the means' total, and the
    bytes are those of a fixed challenge for that amount (layout version 2 unchanged)."""
    for what, challenge, unsigned, message, signature in VECTORS:
        if unsigned.split_mode is SplitMode.REMAINDER or unsigned.bill_id is not None:
            continue  # a group bill is never paid open
        donation = opened(challenge)
        assert signed_amount(donation, unsigned) == unsigned.total == challenge.amount, what
        assert presentation(donation, unsigned).message().hex() == message, what
        assert signed(donation, unsigned, KEY).signature.hex() == signature, what


#: Grant shares of an open payment: at most 8, adding up to at most MAX_MINOR.
open_shares = st.lists(
    st.builds(
        PresentedGrant,
        grant_id=ids("g"),
        amount=st.integers(1, MAX_MINOR // 8),
        usage_auth=st.binary(min_size=32, max_size=32),
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda share: share.grant_id,
)


@given(challenge=open_challenges, shares=open_shares, other=amounts(), data=st.data())
def test_the_server_verifies_exactly_the_amount_the_target_entered(
    challenge: ChallengeRecord,
    shares: list[PresentedGrant],
    other: int,
    data: st.DataObject,
) -> None:
    """The merchant asks for the signed amount; re-splitting the shares to another amount
    (so the shares still add up) fails the signature."""
    total = sum(share.amount for share in shares)
    most = data.draw(st.none() | st.integers(total, MAX_MINOR), label="max_amount")
    challenge = dataclasses.replace(challenge, purpose=challenge.purpose or "5812", max_amount=most)
    unsigned = MeansRecord(
        presenting_terminal=TARGET, currency=challenge.currency, grants=shares, signature=bytes(64)
    )
    sent = signed(challenge, unsigned, KEY)
    body = as_the_server_reads_it(challenge, sent)
    assert body.amount == total
    registered = TerminalKey(crypto.public_key_bytes(KEY), "target", None, "Bob")
    row = {"merchant_id": challenge.merchant_id, "region": "KR-11"}
    purpose = str(challenge.purpose)
    attempt = rules.Attempt(body, challenge.merchant_id, row, 0, (purpose,))
    assert rules.signature_rule(attempt, registered) is None
    assume(other != total)
    resplit = [body.means.grants[0].model_copy(update={"amount": other})]
    changed = body.model_copy(
        update={"amount": other, "means": body.means.model_copy(update={"grants": resplit})}
    )
    failure = rules.signature_rule(
        rules.Attempt(changed, challenge.merchant_id, row, 0, (purpose,)), registered
    )
    assert failure is not None and failure.code == "bad_signature"


def test_the_merchant_refuses_an_entered_amount_over_its_maximum() -> None:
    _, challenge, unsigned, _, _ = VECTORS[0]
    assert payment_request(opened(challenge, 12_000), unsigned)["amount"] == 12_000
    with pytest.raises(AmountRefused) as caught:
        payment_request(opened(challenge, 11_999), unsigned)
    assert caught.value.code == "over_max"
    assert caught.value.message == (
        f"12,000 KRW is more than merchant {MERCHANT} accepts for this charge (at most 11,999 KRW)"
    )


def _shares() -> st.SearchStrategy[tuple[crypto.GrantShare, ...]]:
    share = st.builds(crypto.GrantShare, ids("g"), amounts())
    return st.lists(share, max_size=8, unique_by=lambda s: s.grant_id).map(tuple)


#: A strategy for every signed field.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "nonce": st.binary(min_size=16, max_size=64),
    "merchant_id": ids("m"),
    "amount": amounts(),
    "currency": currencies,
    "purpose": tokens,
    "presenting_terminal": ids("t"),
    "grants": _shares(),
    "own_source_id": st.none() | ids("src"),
    "own_amount": st.integers(0, MAX_MINOR),
    "bill_id": st.none() | ids("b"),
    "split_mode": st.sampled_from([mode.value for mode in SplitMode]),
}
presentations = st.builds(crypto.Presentation, **FIELDS)


def test_the_strategies_cover_every_signed_field() -> None:
    assert set(FIELDS) == {field.name for field in dataclasses.fields(crypto.Presentation)}


@given(presented=presentations, field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_changing_any_one_signed_field_changes_the_bytes(
    presented: crypto.Presentation, field: str, data: st.DataObject
) -> None:
    value = data.draw(FIELDS[field], label=field)
    assume(value != getattr(presented, field))
    changed = dataclasses.replace(presented, **{field: value})
    assert changed.message() != presented.message()
