"""Storage: versioned migrations and the CHECK constraints that guard the money."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from nfcpay.server.store import migrate, migrations, open_database
from nfcpay.server.store.migrations import MIGRATIONS, current_version
from tests.support.harness import Api


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


def test_merchants_registered_before_several_categories_keep_their_one(
    tmp_path: Path, db_url: str | None
) -> None:
    """Migration 6 gives every existing merchant its one category as its only (primary)
    one, so its payments keep their default purpose."""
    db = open_database(db_url or f"sqlite:///{tmp_path / 'old.sqlite3'}")
    try:
        db.run(migrations._ensure_version_table)
        for version in range(1, 5):
            db.run(functools.partial(migrations._apply, version=version))
        db.run(
            lambda tx: tx.execute(
                "INSERT INTO merchants (merchant_id, name, category, region, "
                "settlement_account, created_at) VALUES ('m_old', 'Old', '5812', 'KR-11', 'A', 0)"
            )
        )
        assert migrate(db) == max(MIGRATIONS)
        rows = db.run(lambda tx: tx.all("SELECT * FROM merchant_categories"))
        assert [(r["merchant_id"], r["ordinal"], r["category"]) for r in rows] == [
            ("m_old", 0, "5812")
        ]
    finally:
        db.close()
