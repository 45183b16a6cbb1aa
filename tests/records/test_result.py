from __future__ import annotations

from nfcpay.records import ResultRecord
from tests.support.vectors import RecordVectors

APPROVED = {
    "approved": True,
    "currency": "KRW",
    "amount": 12_000,
    "payment_id": "p_1",
    "approval_code": "A1",
}
APPROVED_HEX = "01 a5 01 f5 02 634b5257 03 192ee0 04 63705f31 05 624131"
DECLINED = {
    "approved": False,
    "currency": "KRW",
    "amount": 12_000,
    "decline_code": "no_uses_left",
    "message": "sorry",
}
DECLINED_HEX = "01 a5 01 f4 02 634b5257 03 192ee0 06 6c6e6f5f757365735f6c656674 07 65736f727279"


class TestResultVectors(RecordVectors):
    cls = ResultRecord
    valid = [
        (APPROVED_HEX, APPROVED),
        (DECLINED_HEX, DECLINED),
        (
            "01 a4 01 f4 02 634b5257 03 00 06 6462757379",
            {"approved": False, "currency": "KRW", "amount": 0, "decline_code": "busy"},
        ),
        (
            "01 a5 01 f4 02 634b5257 03 00 06 6462757379 07 66ed959ceab880",
            {
                "approved": False,
                "currency": "KRW",
                "amount": 0,
                "decline_code": "busy",
                "message": "한글",
            },
        ),
    ]
    decode_errors = [
        ("01 a4 01 f5 02 634b5257 03 192ee0 05 624131", "approval needs payment_id"),
        (APPROVED_HEX.replace("a5", "a6", 1) + " 06 6462757379", "approval has no decline_code"),
        (DECLINED_HEX.replace("a5", "a6", 1) + " 05 624131", "decline has no payment_id"),
        ("01 a3 01 f4 02 634b5257 03 00", "decline needs decline_code"),
        (APPROVED_HEX.replace("01 f5", "01 01"), "approved must be true or false, not int"),
        (DECLINED_HEX.replace("65736f727279", "6507736f7272"), "message must be printable text"),
        (DECLINED_HEX.replace("65736f727279", "63e2808b"), r"printable text, got U\+200B"),
        (DECLINED_HEX.replace("65736f727279", "60"), "not in canonical CBOR form"),
        (DECLINED_HEX.replace("65736f727279", "62c328"), "not valid CBOR"),
        (DECLINED_HEX.replace("65736f727279", "78c9" + "61" * 201), "201 characters, at most 200"),
    ]
    init_errors = [
        (APPROVED | {"payment_id": None}, "needs payment_id and approval_code"),
        (DECLINED | {"decline_code": None}, "needs decline_code"),
        (DECLINED | {"message": None}, "message must be printable text, not null"),
        (DECLINED | {"message": "a\nb"}, "printable text"),
        (APPROVED | {"approved": 1}, "true or false, not int"),
    ]
