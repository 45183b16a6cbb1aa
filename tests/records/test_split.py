from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from nfcpay.records import SplitRequestRecord
from tests.support.vectors import RecordVectors

PLUS_ONE = timezone(timedelta(hours=1))
MINUS_ONE = timezone(timedelta(hours=-1))
SPLIT = {
    "bill_id": "b_1",
    "collector_terminal": "t_c",
    "currency": "KRW",
    "amount": 5000,
    "expires_at": datetime(2026, 1, 1, tzinfo=UTC),
}
SPLIT_HEX = "01 a5 01 63625f31 02 63745f63 03 634b5257 04 191388 05 1a6955b900"


class TestSplitVectors(RecordVectors):
    cls = SplitRequestRecord
    valid = [
        (SPLIT_HEX, SPLIT),
        (SPLIT_HEX.replace("191388", "01"), SPLIT | {"amount": 1}),
    ]
    decode_errors = [
        (SPLIT_HEX[:-14].replace("a5", "a4", 1), "split is missing expires_at"),
        (SPLIT_HEX.replace("1a6955b900", "00"), "expires_at is 0 unix seconds"),
        (SPLIT_HEX.replace("1a6955b900", "1b0000000200000000"), "expires_at is 8589934592"),
        (SPLIT_HEX.replace("1a6955b900", "3a6955b900"), "expires_at is -1767225601"),
        (SPLIT_HEX.replace("1a6955b900", "c11a6955b900"), "not valid CBOR"),
        (SPLIT_HEX.replace("1a6955b900", "fb41da5576e4000000"), "must be unix seconds, not float"),
        (SPLIT_HEX.replace("191388", "1b00038d7ea4c68001"), r"amount is 1000000000000001"),
        (SPLIT_HEX.replace("191388", "c24101"), "not valid CBOR"),
    ]
    init_errors = [
        (SPLIT | {"expires_at": None}, "expires_at must be a datetime, not null"),
        (SPLIT | {"amount": 1.5}, "not float"),
        (SPLIT | {"collector_terminal": "t_"}, "an id like t_…"),
        (SPLIT | {"expires_at": datetime.min.replace(tzinfo=PLUS_ONE)}, "out of range"),
        (SPLIT | {"expires_at": datetime.max.replace(tzinfo=MINUS_ONE)}, "out of range"),
        (SPLIT | {"expires_at": datetime(1970, 1, 1, tzinfo=UTC)}, "out of range"),
        (SPLIT | {"expires_at": datetime(2243, 1, 1, tzinfo=UTC)}, "out of range"),
    ]
