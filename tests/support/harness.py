"""Talking to a test server: the in-process :class:`Api` (settable :class:`Clock`), the
real-process :class:`Harness`, and table snapshots that show a refused request changed nothing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from nfcpay.server.fastpath import PaymentFastPath
from nfcpay.server.runtime import Runtime
from nfcpay.testing import server as servers
from nfcpay.testing.server import (
    InProcessServer,
    PaymentScene,
    ServerProcess,
    Terminal,
    payment_scene,
    postgres_schema,
    register_terminal,
    state_snapshot,
)

Snapshot = dict[str, list[tuple[Any, ...]]]


def full_snapshot(tx: Any) -> Snapshot:
    """:func:`state_snapshot` plus terminals, merchants (and their categories and changes),
    grant bindings and notifications."""
    snap = state_snapshot(tx)
    tables = ("terminals", "merchants", "merchant_categories", "merchant_category_changes")
    for table in (*tables, "grant_terminals", "notifications"):
        snap[table] = sorted(tuple(row) for row in tx.all(f"SELECT * FROM {table}"))
    return snap


def changed_tables(before: Snapshot, after: Snapshot) -> list[str]:
    return sorted(table for table in before if before[table] != after[table])


@dataclass
class Harness:
    """A running server process and the helpers a case needs to talk to it."""

    server: ServerProcess
    http: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def terminal(self, role: str = "user", **kwargs: Any) -> Terminal:
        return register_terminal(self.url, role, http=self.http, **kwargs)

    def scene(self, **kwargs: Any) -> PaymentScene:
        return payment_scene(self.url, http=self.http, **kwargs)

    def snapshot(self) -> Snapshot:
        return self.server.query(full_snapshot)

    def audit(self) -> list[str]:
        return self.server.audit()


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


#: The params of a fixture that runs on each database: SQLite, and PostgreSQL where
#: NFCPAY_TEST_DATABASE_URL names one.
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def database_url(kind: str) -> Iterator[str | None]:
    """No URL for ``"sqlite"`` (the server's data directory holds it); for ``"postgresql"`` a
    fresh schema of NFCPAY_TEST_DATABASE_URL, dropped afterwards (the test is skipped
    without one)."""
    if kind == "sqlite":
        yield None
        return
    base = os.environ.get("NFCPAY_TEST_DATABASE_URL")
    if not base:
        pytest.skip("NFCPAY_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    with postgres_schema(base) as url:
        yield url


def start_server(data_dir: Path, **options: Any) -> ServerProcess:
    """:func:`nfcpay.testing.server.start_server` from this test process's environment (as a
    shell starts a server: its ``NFCPAY_SERVER_*`` settings are still left out)."""
    return servers.start_server(data_dir, environ=os.environ, **options)


def start_servers(count: int, data_dir: Path, db_url: str | None = None) -> list[ServerProcess]:
    """:func:`nfcpay.testing.server.start_servers` from this test process's environment."""
    return servers.start_servers(count, data_dir, db_url, environ=os.environ)


@contextlib.contextmanager
def server_on(kind: str, data_dir: Path, **options: Any) -> Iterator[ServerProcess]:
    """A real server process on database ``kind`` (see :func:`database_url`), stopped after;
    ``options`` go to :func:`start_server`."""
    with database_url(kind) as url, start_server(data_dir, db_url=url, **options) as process:
        yield process


@contextlib.contextmanager
def harness_on(server: ServerProcess) -> Iterator[Harness]:
    """A :class:`Harness` on ``server``; when the module is done, the server's ledger audits
    clean, it is stopped, and its log holds no traceback."""
    try:
        with httpx.Client(timeout=30) as http:
            yield Harness(server, http)
        assert server.audit() == []
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()


def fast_path_of(app: Any) -> PaymentFastPath:
    """The payment fast path in ``app``'s middleware stack (built now, as its first request
    would, if no request came yet)."""
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, PaymentFastPath):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, PaymentFastPath), "the app has no payment fast path"
    return layer
