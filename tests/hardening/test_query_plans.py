"""Server cost stays flat as data grows: the hot path never scans a table (issue 6).

The hot paths run through the real app against a database that already holds tens of
thousands of grants, payments, ledger entries, notifications, idempotency keys, challenges
and nonces (:mod:`nfcpay.testing.query_plans`); the test fails, printing every plan, if any
statement they send reads a whole table or a whole index.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nfcpay.testing.query_plans import (
    TEST_ROWS,
    Statement,
    explain,
    hot_path_plans,
    hot_path_scene,
    populate,
    report,
)
from nfcpay.testing.server import InProcessServer


def _check_no_full_scans(tmp_path: Path, db_url: str | None) -> None:
    with InProcessServer(tmp_path / "server", db_url=db_url) as server:
        scene, expiring = hot_path_scene(server)
        populate(server.runtime.db, TEST_ROWS)
        # The detector itself must see a scan where there is one.
        (probe,) = explain(
            server.runtime.db, [Statement("SELECT payment_id FROM payments WHERE purpose = '5812'")]
        )
        assert probe.full_scans, probe.describe()
        plans = hot_path_plans(server, scene, expiring)
    scans = [plan for plan in plans if plan.full_scans]
    assert not scans, (
        f"{len(scans)} of {len(plans)} hot-path statements scan a growing table:\n\n"
        f"{report(scans)}\n\n--- every plan ---\n\n{report(plans)}"
    )


@pytest.mark.slow
def test_hot_path_reads_by_index_on_sqlite(tmp_path: Path) -> None:
    _check_no_full_scans(tmp_path, None)


@pytest.mark.slow
@pytest.mark.postgres
def test_hot_path_reads_by_index_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    _check_no_full_scans(tmp_path, pg_url)
