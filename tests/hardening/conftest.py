"""Fixtures for the hardening suite: real ``nfcpay server run`` processes under faults."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.server import postgres_schema


@pytest.fixture
def pg_base_url() -> str:
    """The machine's PostgreSQL (tests skip without NFCPAY_TEST_DATABASE_URL)."""
    url = os.environ.get("NFCPAY_TEST_DATABASE_URL")
    if not url:
        pytest.skip("NFCPAY_TEST_DATABASE_URL is not set (no PostgreSQL for this run)")
    return url


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A fresh schema of its own, dropped afterwards."""
    with postgres_schema(pg_base_url) as url:
        yield url
