"""Acceptance fixtures for issue 2: one REAL ``nfcpay server run`` process per test module,
on a test clock (``harness.server.advance(seconds)`` instead of sleeping).

Every case builds its own terminals, sources and grants, so cases share the process but not
state; :meth:`Harness.snapshot` proves a refused or declined request changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from nfcpay.testing.server import (
    PaymentScene,
    ServerProcess,
    Terminal,
    payment_scene,
    register_terminal,
    start_server,
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


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    server = start_server(tmp_path_factory.mktemp("server"), test_clock=True)
    try:
        with httpx.Client(timeout=30) as http:
            yield Harness(server, http)
    finally:
        server.stop()
    assert "Traceback" not in server.log(), server.log()
