"""How PostgresTx sends statements (nfcpay.server.store.postgres): a pipeline block's statements
go as one message of EXECUTEs of statements prepared on the connection, their parameters
bound client-side; answers read inside a block send the queue so far; an error stops the
rest and the transaction; the prepared statements survive a rollback and outlive nothing
but their connection; and any value survives the client-side binding exactly."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcpay.server.store import Tx
from nfcpay.server.store import postgres as pg
from nfcpay.server.store.postgres import PostgresDatabase
from nfcpay.testing.traffic import counted
from tests.support.harness import database_url

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def db() -> Iterator[PostgresDatabase]:
    """A database on a fresh schema of the test PostgreSQL, one connection (so the prepared
    statements the tests look for are on it)."""
    with database_url("postgresql") as url:
        assert url is not None
        database = PostgresDatabase(url, pool_size=1)
        database.run(lambda tx: tx.execute("CREATE TABLE kv (k TEXT, v BIGINT)"))
        yield database
        database.close()


def prepared_here(tx: Tx) -> list[str]:
    return [row["name"] for row in tx.all("SELECT name FROM pg_prepared_statements")]


def test_a_block_is_one_round_trip_and_its_answers_come_in_order(db: PostgresDatabase) -> None:
    def work(tx: Tx) -> list[object]:
        with tx.pipeline():
            first = tx.send("SELECT ? AS n", (1,))
            inserted = tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("a", 1))
            last = tx.send("SELECT COUNT(*) AS n FROM kv WHERE k = ?", ("a",))
        answer = [first.fetchone()["n"], inserted.rowcount, last.fetchone()["n"]]
        tx.execute("DELETE FROM kv")
        return answer

    db.run(work)  # prepares the statements on the connection
    with counted(db) as traffic:
        assert db.run(work) == [1, 1, 1]
    # BEGIN and the block; the DELETE; COMMIT.
    assert (traffic.statements, traffic.round_trips) == (6, 3)


def test_reading_an_answer_inside_a_block_sends_the_queue_so_far(db: PostgresDatabase) -> None:
    def work(tx: Tx) -> tuple[int, int]:
        with tx.pipeline():
            tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("b", 7))
            seen = tx.send("SELECT v FROM kv WHERE k = ?", ("b",)).fetchone()["v"]
            tx.execute("UPDATE kv SET v = v + 1 WHERE k = ?", ("b",))
        after = tx.scalar("SELECT v FROM kv WHERE k = ?", ("b",))
        tx.execute("DELETE FROM kv")
        return seen, after

    assert db.run(work) == (7, 8)


def test_an_error_stops_the_rest_of_the_block_and_the_transaction(db: PostgresDatabase) -> None:
    def failing(tx: Tx) -> None:
        with tx.pipeline():
            tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("c", 1))
            tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("c", "not a number"))
            tx.execute("INSERT INTO kv (k, v) VALUES (?, ?)", ("c", 3))

    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.run(failing)
    assert db.run(lambda tx: tx.scalar("SELECT COUNT(*) AS n FROM kv WHERE k = ?", ("c",))) == 0


def test_prepared_statements_survive_a_rollback(db: PostgresDatabase) -> None:
    """psycopg's own preparing would send DEALLOCATE ALL after a ROLLBACK (it is off): the
    statements PostgresTx prepared stay, and so does its record of them."""
    statement = "SELECT v FROM kv WHERE k = ? AND v > ?"
    db.run(lambda tx: tx.all(statement, ("d", 0)))

    def rolled_back(tx: Tx) -> None:
        tx.all(statement, ("d", 1))
        raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        db.run(rolled_back)
    names = db.run(prepared_here)
    assert any(name.startswith("nfcpay_") for name in names)
    assert db.run(lambda tx: tx.all(statement, ("d", 2))) == []


def test_what_prepare_does_not_take_is_sent_with_its_values_written_in(
    db: PostgresDatabase,
) -> None:
    (row,) = db.run(lambda tx: tx.all("EXPLAIN (FORMAT JSON) SELECT v FROM kv WHERE k = ?", ("e",)))
    assert "Plan" in str(row)


def test_past_the_cap_statements_are_sent_unprepared(
    db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg, "MAX_PREPARED", 0)
    fresh = "SELECT ? + 1 AS n, 'past the cap' AS why"
    assert db.run(lambda tx: tx.scalar(fresh, (41,))) == 42


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    blob=st.binary(max_size=300),
    number=st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
def test_any_value_survives_the_client_side_binding(
    db: PostgresDatabase, text: str, blob: bytes, number: int
) -> None:
    """Quotes, backslashes, dollar signs, newlines and every byte come back exactly as sent:
    the values are literals that libpq's rules quoted, never SQL."""

    def echo(tx: Tx) -> dict[str, object]:
        with tx.pipeline():
            answer = tx.send(
                "SELECT ?::text AS t, ?::bytea AS b, ?::bigint AS n", (text, blob, number)
            )
        return dict(answer.fetchone())

    row = db.run(echo)
    assert (row["t"], bytes(row["b"]), row["n"]) == (text, blob, number)


def test_a_percent_sign_is_sql_not_a_placeholder(db: PostgresDatabase) -> None:
    """Statements are written with ``?`` marks on every dialect; a ``%`` is SQL (a modulo),
    with parameters or without, prepared or sent as it is."""

    def work(tx: Tx) -> tuple[object, ...]:
        plain = tx.scalar("SELECT 17 % 5 AS n")
        with_values = tx.scalar("SELECT ? % 5 AS n", (17,))
        explained = tx.all("EXPLAIN SELECT ? % 5", (17,))
        return plain, with_values, bool(explained)

    assert db.run(work) == (2, 2, True)
