"""Storage: versioned migrations and the CHECK constraints that guard the money."""

from __future__ import annotations

import pytest

from nfcpay.server.store import migrate
from nfcpay.server.store.migrations import MIGRATIONS, current_version
from tests.server.conftest import Api


def test_migrations_are_versioned_and_idempotent(api: Api) -> None:
    db = api.runtime.db
    assert db.run(current_version) == max(MIGRATIONS)
    assert migrate(db) == max(MIGRATIONS)
    assert db.run(lambda tx: tx.scalar("SELECT COUNT(*) AS n FROM schema_version")) == len(
        MIGRATIONS
    )


@pytest.mark.parametrize(
    ("source", "update"),
    [
        ({"kind": "wallet", "balance": 100}, "UPDATE funding_sources SET balance = -1"),
        ({"kind": "card", "limit": 100}, "UPDATE funding_sources SET outstanding = 101"),
        ({"kind": "card"}, "UPDATE grants SET remaining_amount = -1"),
        ({"kind": "card"}, "UPDATE grants SET remaining_uses = remaining_uses + 1"),
    ],
)
def test_check_constraints_refuse_impossible_money(
    api: Api, source: dict[str, object], update: str
) -> None:
    api.scene(source=source)
    before = api.snapshot()
    with pytest.raises(Exception, match=r"(?i)check|constraint"):
        api.runtime.db.run(lambda tx: tx.execute(update))
    assert api.snapshot() == before
