"""Terminal homes registered with an in-process server (the real app and SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.terminals.account import init_terminal
from nfcpay.terminals.home import TerminalHome
from nfcpay.testing.server import DEFAULT_MERCHANT, InProcessServer
from tests.support.scenes import Scene, SharedTransport


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    with InProcessServer(tmp_path / "server") as server:
        homes = {}
        for role in ("user", "target", "merchant"):
            home = TerminalHome(tmp_path / role)
            init_terminal(
                home,
                role=role,
                label=role,
                server_url=server.url,
                merchant=DEFAULT_MERCHANT if role == "merchant" else None,
                transport=SharedTransport(server.transport),
            )
            homes[role] = home
        scene = Scene(server, homes["user"], homes["target"], homes["merchant"])
        with scene.client(scene.user) as client:
            client.add_card("4111111111111111", "12/39", 100_000, "KRW")
        yield scene
