from __future__ import annotations

import pytest

from nfcpay.errors import EncodeError
from nfcpay.records import MeansRecord, PresentedGrant, encode_message
from tests.support.vectors import RecordVectors

G1 = PresentedGrant(grant_id="g_1", amount=700, usage_auth=b"\x22" * 32)
G2 = PresentedGrant(grant_id="g_2", amount=300, usage_auth=b"\x33" * 32)
G1_HEX = f"a3 01 63675f31 02 1902bc 03 5820{'22' * 32}"
G2_HEX = f"a3 01 63675f32 02 19012c 03 5820{'33' * 32}"
SIG = b"\x44" * 64
SIG_HEX = f"06 5840{'44' * 64}"
MEANS = {"presenting_terminal": "t_t", "currency": "KRW", "grants": [G1, G2], "signature": SIG}
HEAD = "01 63745f74 02 634b5257"


class TestMeansVectors(RecordVectors):
    cls = MeansRecord
    valid = [
        (f"02 a4 {HEAD} 03 82 {G1_HEX} {G2_HEX} {SIG_HEX}", MEANS),
        (
            f"02 a6 {HEAD} 03 81 {G1_HEX} 04 657372635f31 05 18c8 {SIG_HEX}",
            MEANS | {"grants": [G1], "own_source_id": "src_1", "own_amount": 200},
        ),
        (
            f"02 a5 {HEAD} 04 657372635f31 05 18c8 {SIG_HEX}",
            MEANS | {"grants": [], "own_source_id": "src_1", "own_amount": 200},
        ),
    ]
    decode_errors = [
        # Version 1 was signed without the purpose: the sender is told to upgrade.
        (
            f"01 a4 {HEAD} 03 82 {G1_HEX} {G2_HEX} {SIG_HEX}",
            "means payload version 1 is not supported: it comes from an older nfcpay than the "
            r"receiver's \(version 2\); upgrade nfcpay on the sending terminal",
        ),
        (
            f"03 a4 {HEAD} 03 82 {G1_HEX} {G2_HEX} {SIG_HEX}",
            "means payload version 3 is not supported: it comes from a newer nfcpay than the "
            r"receiver's \(version 2\); upgrade nfcpay on the receiving terminal",
        ),
        (f"02 a5 {HEAD} 03 81 {G1_HEX} 05 18c8 {SIG_HEX}", "a positive own_amount"),
        (f"02 a4 {HEAD} 03 82 {G1_HEX} {G1_HEX} {SIG_HEX}", "lists the same value twice"),
        (
            f"02 a4 {HEAD} 03 82 {G1_HEX} {G1_HEX.replace('1902bc', '1902bd')} {SIG_HEX}",
            "means lists the same grant twice",
        ),
        (f"02 a6 {HEAD} 03 80 04 657372635f31 05 18c8 {SIG_HEX}", "not in canonical CBOR form"),
        (f"02 a3 {HEAD} {SIG_HEX}", "means has neither grants nor an own share"),
        (f"02 a4 {HEAD} 03 81 01 {SIG_HEX}", r"means.grants\[0\] must be a CBOR map, not int"),
        (
            f"02 a4 {HEAD} 03 81 {G1_HEX.replace('1902bc', '00')} {SIG_HEX}",
            r"means.grant.amount is 0, must be 1\.\.",
        ),
        (
            f"02 a4 {HEAD} 03 81 {G1_HEX.replace('a3', 'a4', 1)} 04 00 {SIG_HEX}",
            r"means.grants\[0\] has an unknown key 4",
        ),
        (f"02 a4 {HEAD} 03 81 81 81 81 01 {SIG_HEX}", "not valid CBOR"),
        (f"02 a4 {HEAD} 03 89 " + G1_HEX * 9 + f" {SIG_HEX}", "9 items, at most 8"),
        (f"02 a4 {HEAD} 03 81 {G1_HEX} 06 5820{'44' * 32}", "signature must be 64 bytes, got 32"),
        (f"02 a3 {HEAD} 03 81 {G1_HEX}", "means is missing signature"),
    ]
    init_errors = [
        (MEANS | {"grants": [G1, G1]}, "same value twice"),
        (MEANS | {"grants": [{"grant_id": "g_1"}]}, r"grants\[0\] must be a Presented"),
        (MEANS | {"grants": []}, "neither grants nor an own share"),
        (MEANS | {"own_source_id": "src_1"}, "own_source_id and a positive own_amount"),
        (MEANS | {"own_amount": 5}, "own_source_id and a positive own_amount"),
        (MEANS | {"signature": SIG[:63]}, "64 bytes, got 63"),
        (MEANS | {"grants": [G1] * 9}, "9 items, at most 8"),
    ]


def test_total_is_the_sum_of_all_shares() -> None:
    means = MeansRecord(**MEANS | {"own_source_id": "src_1", "own_amount": 200})
    assert means.total == 700 + 300 + 200


def test_presented_grant_validates() -> None:
    with pytest.raises(EncodeError, match=r"means\.grant\.usage_auth must be 32 bytes"):
        PresentedGrant(grant_id="g_1", amount=1, usage_auth=b"")


def test_secrets_are_not_in_repr() -> None:
    text = repr(MeansRecord(**MEANS))
    assert "signature" not in text and "usage_auth" not in text and "g_1" in text


def test_largest_means_fits_its_limit() -> None:
    grants = [
        PresentedGrant(grant_id=f"g_{i}" + "a" * 31, amount=10**15, usage_auth=bytes(32))
        for i in range(8)
    ]
    means = MeansRecord(
        presenting_terminal="t_" + "a" * 32,
        currency="KRW",
        grants=grants,
        own_source_id="src_" + "b" * 32,
        own_amount=10**15,
        signature=SIG,
    )
    assert len(means.payload) <= MeansRecord._decode_max_payload_length
    assert len(encode_message([means])) < 1100
