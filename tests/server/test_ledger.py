from __future__ import annotations

import pytest

from nfcpay.server import ledger
from nfcpay.server.services.refunds import allocate
from tests.support.harness import Api


@pytest.mark.parametrize(
    ("amount", "shares", "expected"),
    [
        (100, [(300, 0), (100, 0)], [75, 25]),
        (1, [(1, 0), (1, 0)], [1, 0]),
        (10, [(10, 0)], [10]),
        (5, [(10, 8), (10, 0)], [2, 3]),
        (3, [(1, 0), (1, 0), (1, 0)], [1, 1, 1]),
        (7, [(3, 3), (10, 0)], [0, 7]),
    ],
)
def test_allocate_is_pro_rata_and_bounded(
    amount: int, shares: list[tuple[int, int]], expected: list[int]
) -> None:
    parts = allocate(amount, shares)
    assert parts == expected
    assert sum(parts) == amount
    assert all(0 <= p <= c - r for p, (c, r) in zip(parts, shares, strict=True))


@pytest.mark.parametrize("amount", [0, 11])
def test_allocate_refuses_impossible_amounts(amount: int) -> None:
    with pytest.raises(ValueError):
        allocate(amount, [(10, 0)])


def test_post_refuses_unbalanced_or_zero_legs(api: Api) -> None:
    with pytest.raises(ValueError, match="does not balance"):
        api.runtime.db.run(lambda tx: ledger.post(tx, 0, "t1", "KRW", [("a", -1), ("b", 2)]))
    with pytest.raises(ValueError, match="zero leg"):
        api.runtime.db.run(
            lambda tx: ledger.post(tx, 0, "t1", "KRW", [("a", -1), ("b", 1), ("c", 0)])
        )
    assert api.runtime.db.run(lambda tx: ledger.balance(tx, "a", "KRW")) == 0


def test_audit_finds_tampering(api: Api) -> None:
    scene = api.scene(source={"kind": "wallet", "balance": 1000})
    assert scene.pay(300)["status"] == "approved"
    assert api.audit() == []
    api.runtime.db.run(
        lambda tx: tx.execute(
            "UPDATE funding_sources SET balance = balance + 1 WHERE source_id = ?",
            (scene.source["source_id"],),
        )
    )
    problems = api.audit()
    assert len(problems) == 1
    assert scene.source["source_id"] in problems[0]
