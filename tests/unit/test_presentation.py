"""The signed presentation: one value (:class:`nfcpay.crypto.Presentation`), built from the
NFC records the target and merchant hold (:mod:`nfcpay.records.presentation`) and from the
merchant's API request (:func:`nfcpay.server.services.rules.presentation`).

The fixed vectors were signed before the presentation became one value: their bytes and
signatures must never change, or the signatures of terminals already in use stop verifying.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from nfcpay import crypto
from nfcpay.money import MAX_MINOR
from nfcpay.records import ChallengeRecord, MeansRecord, PresentedGrant
from nfcpay.records.means import SplitMode
from nfcpay.records.presentation import presentation, signed
from nfcpay.server.runtime import TerminalKey
from nfcpay.server.schemas import PaymentIn
from nfcpay.server.services import rules
from nfcpay.terminals.merchant import payment_request
from tests.records.strategies import amounts, challenges, currencies, ids, means

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
    **means: Any,
) -> tuple[ChallengeRecord, MeansRecord]:
    """The merchant's challenge and the target's unsigned means paying it."""
    challenge = ChallengeRecord(merchant_id=merchant, currency=currency, amount=amount, nonce=nonce)
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
        "00166e66637061792f70726573656e746174696f6e2f763100000010000102030405060708090a0b0c0d0e"
        "0f000000126d5f723264356b3878337137773462396e36000000053132303030000000034b525700000012"
        "745f6b3778326d347139773362356e386336000000013100000012675f33667a3771326d346b3978773661"
        "3562000000053132303030000000000000000130",
        "cca8b64f60903369642802534d887239a5c41fd37767901ab64bf115b40767498f13cfa89aed035286766a"
        "428e3b53a56b497eff22283c81edfad88ab185ca0d",
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
        "00166e66637061792f70726573656e746174696f6e2f763100000020000102030405060708090a0b0c0d0e"
        "0f101112131415161718191a1b1c1d1e1f000000126d5f723264356b3878337137773462396e3600000006"
        "313030303030000000034b525700000012745f6b3778326d347139773362356e3863360000000132000000"
        "12675f33667a3771326d346b3978773661356200000005323030303000000008675f613162326333000000"
        "0533303030300000000a7372635f77346c6c337400000005353030303000000008625f64696e6e65720000"
        "000972656d61696e646572",
        "07bf80b048196c3b4b4e604ff50f453f3f6100d0d053709b65c95e62dee8f8e1976ebf7a518c492834b7ef"
        "de262edf63cac03579eb0cb58adab0d6aab03da60a",
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
            own_source_id="src_card",
            own_amount=1_000,
            bill_id="b_lunch",
        ),
        "00166e66637061792f70726573656e746174696f6e2f763100000010000102030405060708090a0b0c0d0e"
        "0f000000066d5f73686f7000000004313030300000000345555200000008745f7461726765740000000130"
        "000000087372635f63617264000000043130303000000007625f6c756e6368000000056578616374",
        "1fc50bbe3aa57ff76c164fdc1337bc4dbe47327712fd953fbe5b516e4089556b271818e19f64c3163d0458"
        "957c3e2ba793d2586a84946aea84ace8e7c0966e08",
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
    registered = TerminalKey(crypto.public_key_bytes(KEY), "target", None)
    row = {"merchant_id": "m_any", "category": "5812", "region": "KR-11"}
    for what, challenge, unsigned, message, signature in VECTORS:
        means = dataclasses.replace(unsigned, signature=bytes.fromhex(signature))
        body = as_the_server_reads_it(challenge, means)
        assert rules.presentation(body, challenge.merchant_id).message().hex() == message, what
        attempt = rules.Attempt(body, challenge.merchant_id, row, 0)
        assert rules.signature_rule(attempt, registered) is None, what


@given(
    challenge=challenges,
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
    body = as_the_server_reads_it(challenge, sent)
    assert rules.presentation(body, challenge.merchant_id) == presentation(challenge, sent)


def _shares() -> st.SearchStrategy[tuple[crypto.GrantShare, ...]]:
    share = st.builds(crypto.GrantShare, ids("g"), amounts())
    return st.lists(share, max_size=8, unique_by=lambda s: s.grant_id).map(tuple)


#: A strategy for every signed field.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "nonce": st.binary(min_size=16, max_size=64),
    "merchant_id": ids("m"),
    "amount": amounts(),
    "currency": currencies,
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
