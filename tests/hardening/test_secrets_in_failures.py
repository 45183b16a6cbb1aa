"""Secrets under failure (issue 6): when the database breaks in the middle of requests —
tables gone (500 with a crash trace in the log), file locked (503) — no card number, auth
code, usage-auth value or terminal private key appears in the server's log (debug level),
its crash traces or any error body."""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from nfcpay import crypto
from nfcpay.errors import ApiError
from nfcpay.testing.server import Terminal, payment_scene
from tests.support.harness import start_server
from tests.support.network import no_retry

CARD = "5500005555555559"
SECOND_CARD = "4012888888881881"


def spellings(secret: bytes | str) -> set[bytes]:
    if isinstance(secret, str):
        return {secret.encode()}
    b64 = base64.b64encode(secret)
    return {secret, crypto.b64e(secret).encode(), b64, b64.rstrip(b"="), secret.hex().encode()}


def private_spellings(terminal: Terminal) -> set[bytes]:
    raw = terminal.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return spellings(raw)


def test_no_secret_in_logs_or_errors_when_the_database_breaks(tmp_path: Path) -> None:
    env = {"NFCPAY_VERBOSE": "2", "NFCPAY_SERVER_DB_TIMEOUT": "0.5"}
    with start_server(tmp_path / "srv", env=env) as server:
        scene = payment_scene(server.url, source={"kind": "card", "number": CARD}, max_uses=10)
        assert scene.pay(1_000)["status"] == "approved"
        db_path = server.database_url.removeprefix("sqlite:///")
        errors: list[ApiError] = []

        def failing(call: Callable[[], object]) -> None:
            with pytest.raises(ApiError) as caught:
                call()
            errors.append(caught.value)

        merchant = no_retry(scene.merchant, server.url)
        owner = no_retry(scene.owner, server.url)
        scene.merchant.client = merchant

        # 1. Tables vanish under the running server: internal errors with crash traces.
        with sqlite3.connect(db_path) as admin:
            admin.execute("ALTER TABLE ledger_entries RENAME TO ledger_entries_gone")
            admin.execute("ALTER TABLE funding_sources RENAME TO funding_sources_gone")
        failing(lambda: scene.pay(2_000))
        failing(lambda: owner.add_card(SECOND_CARD, "12/39", 10_000, "KRW"))
        assert {e.status for e in errors} == {500}
        with sqlite3.connect(db_path) as admin:
            admin.execute("ALTER TABLE ledger_entries_gone RENAME TO ledger_entries")
            admin.execute("ALTER TABLE funding_sources_gone RENAME TO funding_sources")

        # 2. The file is locked by another process: 503 with the secrets in the request.
        locker = sqlite3.connect(db_path)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            failing(lambda: scene.pay(3_000))
            failing(lambda: owner.add_card(SECOND_CARD, "12/39", 10_000, "KRW"))
        finally:
            locker.rollback()
            locker.close()
        assert [e.status for e in errors[2:]] == [503, 503]

        # The server recovered; nothing half-written by the failures.
        assert scene.pay(4_000)["status"] == "approved"
        assert server.audit() == []

        log = server.log().encode()
        assert b"Traceback" in log, "the 500s must have left crash traces to scan"
        secrets_ = (
            spellings(CARD)
            | spellings(SECOND_CARD)
            | spellings(scene.auth_code)
            | spellings(scene.usage_auth())
            | private_spellings(scene.owner)
            | private_spellings(scene.target)
            | private_spellings(scene.merchant)
        )
        texts = [log] + [e.message.encode() for e in errors]
        leaks = [s for s in secrets_ for text in texts if s in text]
        assert leaks == [], f"secrets leaked: {leaks!r}"
