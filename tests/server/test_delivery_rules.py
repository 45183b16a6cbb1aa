"""The pure check of a hand-off record an owner sends through the server
(:func:`nfcpay.server.services.deliveries.record_problem`): the record must be the named
grant's, from its owner, bound to the named target, with that target's usage-auth."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nfcpay.records import GrantRecord
from nfcpay.server.services.deliveries import record_problem

OWNER, TARGET, OTHER = "t_owner000000000", "t_target00000000", "t_other000000000"
AUTH = bytes(range(32))
GRANT = {
    "grant_id": "g_grant000000000",
    "issuing_terminal": OWNER,
    "virtual_card_number": "9900770123456789",
    "currency": "KRW",
}
RECORD = GrantRecord(
    grant_id=GRANT["grant_id"],
    virtual_card_number=GRANT["virtual_card_number"],
    issuing_terminal=OWNER,
    allowed_terminal=TARGET,
    usage_auth=AUTH,
    currency="KRW",
    amount_cap=30_000,
    remaining_amount=30_000,
)


def test_the_grants_own_record_for_the_named_target_passes() -> None:
    assert record_problem(RECORD, GRANT, TARGET, AUTH) is None


@pytest.mark.parametrize(
    ("changes", "to", "problem"),
    [
        ({"grant_id": "g_another0000000"}, TARGET, "carries grant g_another0000000, not"),
        ({"issuing_terminal": OTHER}, TARGET, f"names {OTHER} as its issuer"),
        ({}, OTHER, f"bound to {TARGET}, not to {OTHER}"),
        ({"virtual_card_number": "9900770000000000"}, TARGET, "virtual card number or currency"),
        ({"currency": "USD"}, TARGET, "virtual card number or currency"),
        (
            {"usage_auth": bytes(32)},
            TARGET,
            f"usage-auth is not grant g_grant000000000's for {TARGET}",
        ),
    ],
)
def test_anything_else_is_named(changes: dict[str, object], to: str, problem: str) -> None:
    found = record_problem(replace(RECORD, **changes), GRANT, to, AUTH)
    assert found is not None and problem in found
