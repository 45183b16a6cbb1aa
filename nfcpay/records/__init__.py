"""The NDEF wire format: nfcpay's NFC Forum external-type records, registered with ndeflib.

One module per record type; :mod:`nfcpay.records.message` encodes and decodes whole
messages. Importing this package registers every record type with ndeflib.
"""

from __future__ import annotations

from nfcpay.records.ack import AckRecord
from nfcpay.records.base import DOMAIN, VERSION, NfcpayRecord
from nfcpay.records.challenge import ChallengeRecord
from nfcpay.records.grant import GrantRecord
from nfcpay.records.hello import HelloRecord, Role
from nfcpay.records.means import MeansRecord, PresentedGrant
from nfcpay.records.message import (
    MAX_MESSAGE_SIZE,
    MAX_RECORDS,
    decode_message,
    decode_one,
    encode_message,
)
from nfcpay.records.result import ResultRecord
from nfcpay.records.split import SplitRequestRecord

#: Every nfcpay record class, keyed by its short type name (``grant`` for nfcpay.org:grant).
RECORD_CLASSES: dict[str, type[NfcpayRecord]] = {
    cls.type_name: cls
    for cls in (
        HelloRecord,
        GrantRecord,
        AckRecord,
        SplitRequestRecord,
        ChallengeRecord,
        MeansRecord,
        ResultRecord,
    )
}

__all__ = [
    "DOMAIN",
    "MAX_MESSAGE_SIZE",
    "MAX_RECORDS",
    "RECORD_CLASSES",
    "VERSION",
    "AckRecord",
    "ChallengeRecord",
    "GrantRecord",
    "HelloRecord",
    "MeansRecord",
    "NfcpayRecord",
    "PresentedGrant",
    "ResultRecord",
    "Role",
    "SplitRequestRecord",
    "decode_message",
    "decode_one",
    "encode_message",
]
