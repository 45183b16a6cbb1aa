"""Where one approval's CPU and disk writes go, on SQLite: the payment route's transaction run
bare in this process (as ``bench_server.py``'s bare loops run it), with the work measured
piece by piece.

    .venv/bin/python scripts/approval_anatomy.py                # 1000 alone, 1000 grouped
    .venv/bin/python scripts/approval_anatomy.py --approvals 200 --json

Two runs of ``--approvals`` approvals each: one at a time (every approval commits alone, as
at a quiet counter) and from ``--threads`` callers at once (group commit, as under load).
For each, per approval:

* CPU, split three ways (each thread's own CPU time, ``time.thread_time``):

  - every SQL statement the work sends, by kind (the driver's call: binding, SQLite's C
    work, the rows);
  - the rest of the unit of work: the rules, the rows built, the answer, the presentation's
    signature check, in Python around the statements, and the unit's SAVEPOINT and RELEASE;
  - the batch around the units: BEGIN, COMMIT (its WAL writes and fsync) and bookkeeping,
    shared by the approvals of one batch;

* the pages written to the write-ahead log, by the B-tree (table or index) they belong to
  (read from the WAL's frame headers and SQLite's ``dbstat``; checkpoints are held off
  during the runs so that every frame is counted).

Every figure is also stated in Ed25519 verifications timed in the same run, OpenSSL's (the
unit of issue 14's targets). The statement and batch figures are what a decision about
"fewer rows per approval" weighs; they move with the machine, their proportions much less.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_server import bare_approvals, ed25519_verify_ms, make_scenes

from nfcpay.server.app import create_runtime
from nfcpay.server.settings import ServerSettings
from nfcpay.server.store import base, sqlite
from nfcpay.testing.server import start_server

#: A WAL frame: a 24-byte header (the page number first) and one page.
WAL_HEADER, FRAME_HEADER = 32, 24
#: Statements are told apart by their first words (verb and table).
STATEMENT_WORDS = 3


@dataclass
class Tally:
    """What one run measured, summed over its approvals."""

    name: str
    approvals: int = 0
    batches: int = 0
    statement_cpu: collections.Counter[str] = field(default_factory=collections.Counter)
    unit_cpu: float = 0.0
    batch_cpu: float = 0.0
    pages: list[int] = field(default_factory=list)

    def per_approval_us(self, seconds: float) -> float:
        return 1e6 * seconds / max(self.approvals, 1)


class Meter:
    """Times the writer's statements, units and batches, and reads the WAL frames each batch
    appends. Installed around :class:`SqliteDatabase` and :class:`Tx` for the runs only."""

    def __init__(self, wal: Path) -> None:
        self.wal = wal
        self.tally: Tally | None = None
        #: Where the WAL ended after the last batch: where the next batch's frames begin.
        self._wal_end = 0

    def measure(self, tally: Tally) -> None:
        """Count what follows into ``tally``."""
        self._wal_end = self.wal.stat().st_size if self.wal.exists() else 0
        self.tally = tally

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        originals = [
            (base.Tx, "execute", self._statement),
            (sqlite.SqliteDatabase, "_run_unit", self._unit),
            (sqlite.SqliteDatabase, "_run_batch", self._batch),
        ]
        saved = [(owner, name, getattr(owner, name)) for owner, name, _ in originals]
        for (owner, name, record), (_, _, call) in zip(originals, saved, strict=True):
            setattr(owner, name, _timed(call, record))
        try:
            yield
        finally:
            for owner, name, call in saved:
                setattr(owner, name, call)

    def _statement(self, seconds: float, args: tuple[Any, ...]) -> None:
        if self.tally is not None:
            sql = args[1]
            self.tally.statement_cpu[" ".join(sql.split("(")[0].split()[:STATEMENT_WORDS])] += (
                seconds
            )

    def _unit(self, seconds: float, args: tuple[Any, ...]) -> None:
        if self.tally is not None:
            self.tally.unit_cpu += seconds

    def _batch(self, seconds: float, args: tuple[Any, ...]) -> None:
        if self.tally is not None:
            self.tally.batch_cpu += seconds
            self.tally.batches += 1
            self.tally.pages += self.frames_since(self._wal_end)
        self._wal_end = self.wal.stat().st_size

    def frames_since(self, offset: int) -> list[int]:
        """The page numbers of the WAL frames written after byte ``offset``."""
        with self.wal.open("rb") as wal:
            page_size = struct.unpack(">I", wal.read(WAL_HEADER)[8:12])[0]
            wal.seek(max(offset, WAL_HEADER))
            data = wal.read()
        frame = FRAME_HEADER + page_size
        return [
            struct.unpack(">I", data[at : at + 4])[0]
            for at in range(0, len(data) - frame + 1, frame)
        ]


def _timed(
    call: Callable[..., Any], record: Callable[[float, tuple[Any, ...]], None]
) -> Callable[..., Any]:
    """``call``, which also hands ``record`` the calling thread's CPU time and its arguments."""

    def timed(*args: Any) -> Any:
        started = time.thread_time()
        try:
            return call(*args)
        finally:
            record(time.thread_time() - started, args)

    return timed


def run(work: list[Callable[[], dict[str, Any]]], threads: int) -> None:
    """Run ``work`` from ``threads`` callers at once (1: one after another)."""
    shares = [work[i::threads] for i in range(threads)]

    def call_all(calls: list[Callable[[], dict[str, Any]]]) -> None:
        for call in calls:
            answer = call()
            if answer["status"] != "approved":
                raise SystemExit(f"an approval was declined: {answer['decline_code']}")

    callers = [threading.Thread(target=call_all, args=(share,)) for share in shares]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()


def page_owners(database: Path) -> dict[int, str]:
    """Page number → the table or index whose B-tree holds it (``dbstat``)."""
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return {page: name for name, page in conn.execute("SELECT name, pageno FROM dbstat")}


def report(tally: Tally, owners: dict[int, str], verify_ms: float) -> dict[str, Any]:
    """Print one run's anatomy; return its figures for ``--json``."""
    per = tally.per_approval_us
    statements = sum(tally.statement_cpu.values())
    total = tally.batch_cpu  # the units run inside their batch
    in_units_not_sql = tally.unit_cpu - statements
    around_units = tally.batch_cpu - tally.unit_cpu
    trees = collections.Counter(owners.get(page, "(a page freed since)") for page in tally.pages)
    frames = len(tally.pages) / max(tally.approvals, 1)
    verifications = per(total) / 1000 / verify_ms

    print(
        f"\n{tally.name}: {tally.approvals} approvals in {tally.batches} batches "
        f"({tally.approvals / max(tally.batches, 1):.1f} per batch)"
    )
    print(f"  writer CPU per approval {per(total):7.1f} µs = {verifications:.1f} verifications")
    print(f"    SQL statements        {per(statements):7.1f} µs")
    for kind, seconds in tally.statement_cpu.most_common():
        print(f"      {per(seconds):7.1f} µs  {kind}")
    rest = per(in_units_not_sql)
    print(f"    rest of the unit      {rest:7.1f} µs (rules, rows, answer, savepoint)")
    print(f"    around the units      {per(around_units):7.1f} µs (BEGIN, COMMIT and fsync)")
    print(f"  WAL frames per approval {frames:.1f}, over {len(trees)} B-trees:")
    for name, count in trees.most_common():
        print(f"      {count / max(tally.approvals, 1):5.2f}  {name}")
    return {
        "approvals": tally.approvals,
        "per_batch": round(tally.approvals / max(tally.batches, 1), 2),
        "writer_cpu_us": round(per(total), 1),
        "writer_cpu_openssl_ed25519": round(verifications, 2),
        "statements_us": round(per(statements), 1),
        "unit_rest_us": round(per(in_units_not_sql), 1),
        "around_units_us": round(per(around_units), 1),
        "wal_frames": round(frames, 2),
        "btrees_written": len(trees),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--approvals", type=int, default=1000, help="approvals per run")
    parser.add_argument("--threads", type=int, default=32, help="callers of the grouped run")
    parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nfcpay-anatomy-"))
    try:
        data_dir = root / "server"
        server = start_server(data_dir, environ=os.environ)  # to register the scenes
        try:
            scenes = make_scenes(server, args.threads)
        finally:
            server.stop()
        rt = create_runtime(ServerSettings(data_dir=data_dir))
        assert isinstance(rt.db, sqlite.SqliteDatabase)
        database = rt.db.path
        meter = Meter(database.with_name(database.name + "-wal"))
        tallies = [Tally("one at a time"), Tally(f"{args.threads} callers (group commit)")]
        try:
            rt.db.run(lambda tx: tx.execute("PRAGMA wal_autocheckpoint=0"))
            run(bare_approvals(rt, scenes, args.threads), args.threads)  # warm the caches
            with meter.installed():
                for tally, threads in zip(tallies, (1, args.threads), strict=True):
                    work = bare_approvals(rt, scenes, args.approvals)
                    meter.measure(tally)
                    run(work, threads)
                    meter.tally = None
                    tally.approvals = args.approvals
            owners = page_owners(database)
        finally:
            rt.db.close()
        _, openssl_verify_ms = ed25519_verify_ms()
        print(f"one Ed25519 verification with OpenSSL here: {openssl_verify_ms:.3f} ms")
        summary = {
            "alone": report(tallies[0], owners, openssl_verify_ms),
            "grouped": report(tallies[1], owners, openssl_verify_ms),
            "openssl_ed25519_verify_ms": round(openssl_verify_ms, 4),
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
