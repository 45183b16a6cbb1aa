"""One realistic instance of every record type, for size figures, demos and tests.

Ids have the shapes nfcpay.crypto.new_id produces (prefix + 16 base32 characters), the card
number is 16 digits and secrets have their real lengths, so the sizes are the sizes a real
exchange sees.

>>> sizes = encoded_sizes()
>>> sizes["grant"] <= 200
True
"""

from __future__ import annotations

from datetime import UTC, datetime

from nfcpay.records.ack import AckRecord
from nfcpay.records.base import NfcpayRecord
from nfcpay.records.challenge import ChallengeRecord
from nfcpay.records.grant import GrantRecord
from nfcpay.records.hello import HelloRecord, Role
from nfcpay.records.means import MeansRecord, PresentedGrant
from nfcpay.records.message import encode_message
from nfcpay.records.result import ResultRecord
from nfcpay.records.split import SplitRequestRecord

_USER = "t_u4h2k8m3q7x5w9b6"
_TARGET = "t_k7x2m4q9w3b5n8c6"
_GRANT = "g_3fz7q2m4k9xw6a5b"
_BILL = "b_q4m7x2k9w3h5n8c6"
_EXPIRY = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


def sample_records() -> dict[str, NfcpayRecord]:
    """Short type name → a realistic record of that type (a single-grant means)."""
    samples: list[NfcpayRecord] = [
        HelloRecord(
            terminal_id=_TARGET,
            role=Role.TARGET,
            key_fingerprint=bytes.fromhex("9f3a5c7e1b2d4f60"),
            nonce=bytes(range(16)),
        ),
        GrantRecord(
            grant_id=_GRANT,
            virtual_card_number="9900770123456789",
            issuing_terminal=_USER,
            allowed_terminal=_TARGET,
            usage_auth=bytes(range(32)),
            currency="KRW",
            amount_cap=50_000,
            remaining_amount=50_000,
            max_uses=3,
            per_use_cap=20_000,
            valid_until=_EXPIRY,
            purposes=("5812", "5814"),
        ),
        AckRecord(accepted=True, ref=_GRANT),
        SplitRequestRecord(
            bill_id=_BILL,
            collector_terminal=_TARGET,
            currency="KRW",
            amount=15_000,
            expires_at=_EXPIRY,
        ),
        ChallengeRecord(
            merchant_id="m_r2d5k8x3q7w4b9n6",
            currency="KRW",
            amount=12_000,
            nonce=bytes(range(32)),
            purpose="5812",
        ),
        MeansRecord(
            presenting_terminal=_TARGET,
            currency="KRW",
            grants=(PresentedGrant(grant_id=_GRANT, amount=12_000, usage_auth=bytes(32)),),
            signature=bytes(64),
        ),
        ResultRecord(
            approved=True,
            currency="KRW",
            amount=12_000,
            payment_id="p_w8c3n6q2k5x9m4b7",
            approval_code="A7K2Q9",
        ),
    ]
    return {record.type_name: record for record in samples}


def encoded_sizes() -> dict[str, int]:
    """Short type name → bytes of the whole NDEF record (header included) of its sample."""
    return {name: len(encode_message([r])) for name, r in sample_records().items()}
