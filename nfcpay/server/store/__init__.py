"""Storage: one database interface (:mod:`.base`) over SQLite with group commit
(:mod:`.sqlite`) and PostgreSQL with a connection pool (:mod:`.postgres`), opened by
:func:`open_database`, and the versioned schema both share (:mod:`.migrations`)."""

from __future__ import annotations

from pathlib import Path

from nfcpay.errors import ConfigError
from nfcpay.server.store.base import (
    DEFAULT_TIMEOUT_S,
    Cursor,
    Database,
    RetryableConflict,
    Row,
    Tx,
)
from nfcpay.server.store.migrations import migrate
from nfcpay.server.store.sqlite import SqliteDatabase

__all__ = ["Cursor", "Database", "RetryableConflict", "Row", "Tx", "migrate", "open_database"]


def open_database(
    url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, pool_size: int | None = None
) -> Database:
    """Open ``sqlite:///path`` or ``postgresql://…``; ``timeout_s`` bounds lock and connect
    waits before :class:`~nfcpay.errors.DatabaseUnavailable`; ``pool_size``: PostgreSQL's
    connections (None: :func:`~.postgres.default_pool_size`; SQLite has its one writer)."""
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from nfcpay.server.store.postgres import PostgresDatabase
        except ImportError as exc:
            raise ConfigError(
                "PostgreSQL needs psycopg 3 and psycopg_pool: pip install 'nfcpay[postgres]'"
            ) from exc
        return PostgresDatabase(url, timeout_s=timeout_s, pool_size=pool_size)
    if url.startswith("sqlite:///"):
        return SqliteDatabase(Path(url.removeprefix("sqlite:///")), timeout_s=timeout_s)
    raise ConfigError(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")
