"""Server test fixtures: every storage-dependent test runs on SQLite and, when
NFCPAY_TEST_DATABASE_URL is set, again on PostgreSQL in a fresh schema of its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nfcpay.server.runtime import Runtime
from nfcpay.testing.server import (
    InProcessServer,
    PaymentScene,
    Terminal,
    payment_scene,
    postgres_schema,
    register_terminal,
    state_snapshot,
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite in the data dir, else a PostgreSQL URL with a fresh schema."""
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get("NFCPAY_TEST_DATABASE_URL")
    if not base:
        pytest.skip("NFCPAY_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    with postgres_schema(base) as url:
        yield url


class Clock:
    """A settable clock for the server runtime (request signatures allow ±300 s)."""

    #: It jumps, so a wait on it (:func:`nfcpay.server.runtime.sleep_on`) re-reads it this often.
    poll_s = 0.001

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Api:
    """The app in-process (nfcpay.testing.server.InProcessServer) with a settable clock."""

    server: InProcessServer
    clock: Clock

    @property
    def runtime(self) -> Runtime:
        return self.server.runtime

    @property
    def http(self) -> httpx.Client:
        """A raw httpx client on the app, for hand-made (e.g. badly signed) requests."""
        return self.server.http

    def terminal(self, role: str = "user", **kwargs: Any) -> Terminal:
        return register_terminal(self.server.url, role, http=self.server.http, **kwargs)

    def scene(self, **kwargs: Any) -> PaymentScene:
        return payment_scene(self.server.url, http=self.server.http, **kwargs)

    def audit(self) -> list[str]:
        return self.server.audit()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return self.server.query(state_snapshot)


@pytest.fixture
def api(tmp_path: Path, db_url: str | None) -> Iterator[Api]:
    with InProcessServer(tmp_path / "server", db_url=db_url) as server:
        clock = Clock()
        server.runtime.clock = clock
        yield Api(server, clock)
