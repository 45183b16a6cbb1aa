"""Fixtures for the hardening suite: real ``nfcpay server run`` processes under faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nfcpay.testing.server import postgres_schema


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh schema of its own in the machine's PostgreSQL, dropped afterwards."""
    with postgres_schema(postgres_url) as url:
        yield url
