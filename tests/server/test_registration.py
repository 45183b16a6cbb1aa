"""Terminal registration: one terminal per public key, even when two requests race."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from nfcpay import crypto
from nfcpay.errors import Conflict
from nfcpay.server.schemas import TerminalIn
from nfcpay.server.services import terminals
from tests.support.harness import Api


def test_the_same_key_registered_twice_at_once_is_a_clean_conflict(api: Api) -> None:
    """The second registration checks for the key before the first commits, so only the
    unique index can stop it: that must be a 409 ``terminal_exists``, not a 500."""
    public = crypto.public_key_bytes(crypto.generate_terminal_key())
    body = TerminalIn(role="user", label="twin", public_key=crypto.b64e(public))
    db = api.runtime.db
    first_in, release = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}

    def register(name: str, hold: bool) -> None:
        def work(tx: Any) -> dict[str, Any]:
            answer = terminals.register(tx, 0, body, public)
            if hold:
                first_in.set()
                assert release.wait(10)
            return answer

        try:
            outcomes[name] = db.run(work)["terminal_id"]
        except Conflict as exc:
            outcomes[name] = exc.code

    first = threading.Thread(target=register, args=("first", True))
    first.start()
    assert first_in.wait(10)
    second = threading.Thread(target=register, args=("second", False))
    second.start()
    second.join(0.3)  # on PostgreSQL it is now waiting on the unique index
    release.set()
    first.join(10)
    second.join(10)
    assert outcomes["first"].startswith("t_")
    assert outcomes["second"] == "terminal_exists"
    count = db.run(
        lambda tx: tx.scalar("SELECT COUNT(*) AS n FROM terminals WHERE public_key = ?", (public,))
    )
    assert count == 1


def test_registering_a_known_key_is_a_conflict(api: Api) -> None:
    known = api.terminal("user")
    public = crypto.public_key_bytes(known.private_key)
    body = TerminalIn(role="user", label="again", public_key=crypto.b64e(public))
    with pytest.raises(Conflict, match="already registered"):
        api.runtime.db.run(lambda tx: terminals.register(tx, 0, body, public))
