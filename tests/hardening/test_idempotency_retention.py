"""Idempotency keys expire after the retention period (issue 6): within it a retry replays
the first answer; after it the periodic purge has deleted the key, so the same key is a new
request. Retention is a setting (NFCPAY_SERVER_IDEMPOTENCY_RETENTION, default 24 h).

The server runs on a test clock: :meth:`ServerProcess.advance` moves it past the retention
and the purge task's next round (both follow the server's clock), instead of waiting."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from nfcpay.server.settings import ServerSettings
from nfcpay.testing.server import payment_scene
from tests.support.harness import start_server

#: Also the purge task's interval (min(retention, 60 s)).
RETENTION_S = 60


def _keys(tx: Any) -> list[str]:
    return [row["idem_key"] for row in tx.all("SELECT idem_key FROM idempotency_keys")]


def test_default_retention_is_a_day() -> None:
    assert ServerSettings(data_dir=Path("/nonexistent")).idempotency_retention_s == 86_400


def test_keys_expire_after_the_retention_period(tmp_path: Path) -> None:
    env = {"NFCPAY_SERVER_IDEMPOTENCY_RETENTION": str(RETENTION_S)}
    with start_server(tmp_path / "srv", env=env, test_clock=True) as server:
        scene = payment_scene(server.url, max_uses=5)
        challenge = b"c" * 16
        first = scene.pay(1_000, challenge=challenge, idempotency_key="k-expiring")
        assert first["status"] == "approved"
        replay = scene.pay(1_000, challenge=challenge, idempotency_key="k-expiring")
        assert replay["replayed"] is True and replay["payment_id"] == first["payment_id"]

        server.advance(RETENTION_S / 2)  # within the retention: still the first answer
        replay = scene.pay(1_000, challenge=challenge, idempotency_key="k-expiring")
        assert replay["replayed"] is True and replay["payment_id"] == first["payment_id"]

        # Past the retention and the purge's next round: the task (which polls a test
        # clock) deletes the key within moments; waiting for that is not waiting for time.
        server.advance(RETENTION_S + RETENTION_S)
        deadline = time.monotonic() + 10
        while server.query(_keys) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.query(_keys) == [], "the purge task removes expired keys"

        # Same key, different body: no longer a conflict but a new payment.
        again = scene.pay(2_000, idempotency_key="k-expiring")
        assert again["status"] == "approved" and again["replayed"] is False
        assert again["payment_id"] != first["payment_id"]
        assert server.audit() == []
