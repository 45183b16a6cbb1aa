"""The SQLite database and its WAL files are for the server's user only (mode 0600), whatever
the umask, and an existing database open to others is made private when it is opened."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from nfcpay.server.settings import init_data_dir
from nfcpay.server.store.sqlite import SqliteDatabase

FILES = ("nfcpay.sqlite3", "nfcpay.sqlite3-wal", "nfcpay.sqlite3-shm")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common 022 umask, under which files are made readable by everyone by default."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def write_something(db: SqliteDatabase) -> None:
    db.run(lambda tx: tx.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    db.run(lambda tx: tx.execute("INSERT INTO t VALUES (1)"))


@pytest.mark.usefixtures("usual_umask")
def test_a_new_database_and_its_wal_files_are_created_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    init_data_dir(data_dir)
    db = SqliteDatabase(data_dir / FILES[0])
    try:
        write_something(db)
        assert {name: oct(mode(data_dir / name)) for name in FILES} == dict.fromkeys(FILES, "0o600")
    finally:
        db.close()
    assert oct(mode(data_dir)) == "0o700"


@pytest.mark.usefixtures("usual_umask")
def test_an_existing_database_open_to_others_is_made_private_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILES[0]
    db = SqliteDatabase(path)
    write_something(db)
    db.close()
    for name in FILES:  # as a server before this rule left them (an empty WAL is valid)
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="nfcpay.server.store.sqlite"):
        db = SqliteDatabase(path)
    try:
        assert db.run(lambda tx: tx.scalar("SELECT count(*) FROM t")) == 1, "data kept"
    finally:
        db.close()
    for name in FILES:
        if (tmp_path / name).exists():
            assert oct(mode(tmp_path / name)) == "0o600", name
    warnings = [record.getMessage() for record in caplog.records]
    assert any(
        f"{path} was open to other users (mode 644); made it private (mode 600)" in message
        for message in warnings
    ), warnings
