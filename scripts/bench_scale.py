"""Approval latency on an empty database against one holding a million grants and payments.

    .venv/bin/python scripts/bench_scale.py                          # SQLite, 1,000,000 rows
    .venv/bin/python scripts/bench_scale.py --rows 200000 --approvals 1000
    .venv/bin/python scripts/bench_scale.py --db postgresql://postgres@127.0.0.1:5432/nfcpay_scale
    .venv/bin/python scripts/bench_scale.py --json                   # + one JSON summary line

Issue 6 ("scale-out"): with 1,000,000 grants and 1,000,000 past payments, approval p99 must
stay within 1.5x of an empty database. The script:

1. opens two databases with the real app in this process (SQLite files in a temporary
   directory, or two fresh schemas of the PostgreSQL at ``--db``, dropped afterwards), and
   registers an owner, card, many-use grant, target and merchant in each over the API;
2. fills the second one by bulk SQL (:func:`nfcpay.testing.query_plans.populate`:
   ``--rows`` grants and past payments with their shares, ledger legs, notifications,
   idempotency keys, challenges and nonces; ANALYZE on PostgreSQL) and reports how long each
   table took;
3. runs ``--approvals`` approvals on each through the server's own transaction —
   ``Runtime.unit(caller, Authorization(…), first=…)``, nonce included, the direct path of
   ``bench_server.py`` — alternating blocks between the two databases so that load from
   other processes hits both alike, and prints p50/p99 of each and the p99 ratio;
4. prints the plan of every statement the hot paths run on the full database (approvals,
   declines, refund, grant issue, notification reads; see ``tests/support/
   query_plans.py``) and any full scans.

Exits 1 if an approval failed, a plan scans a growing table, or the p99 ratio is over target.
Timings on a shared machine are noisy: compare ratios from one run, not absolute figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_server import PATH, Run, prepare

from nfcpay.server.runtime import Caller
from nfcpay.server.schemas import PaymentIn
from nfcpay.server.services import authorization, idempotency
from nfcpay.testing.query_plans import (
    hot_path_plans,
    hot_path_scene,
    populate,
    report,
)
from nfcpay.testing.server import (
    InProcessServer,
    PaymentScene,
    payment_scene,
    postgres_schema,
)

TARGET_P99_RATIO = 1.5
#: Approvals per database before measuring (connection, statement and page caches warm up).
WARMUP = 50
#: Approvals per turn when alternating between the databases.
BLOCK = 50


@dataclass
class Side:
    """One database, its in-process server and the approvals prepared for it."""

    name: str
    server: InProcessServer
    scene: PaymentScene
    work: list[tuple[Caller, PaymentIn, str, bytes]] = field(default_factory=list)
    run: Run = field(init=False)

    def __post_init__(self) -> None:
        self.run = Run(self.name)

    def prepare(self, count: int) -> None:
        """``count`` signed approvals through this side's grant (as bench_server's loop)."""
        shop = self.scene.merchant
        for prepared in prepare(self.scene, "direct", count):
            body = PaymentIn.model_validate(prepared.body)
            digest = idempotency.request_hash(PATH, body.model_dump(mode="json"))
            caller = Caller(
                shop.terminal_id, "merchant", shop.merchant_id, secrets.token_urlsafe(18)
            )
            self.work.append((caller, body, prepared.key, digest))

    def approve(self, count: int, *, measure: bool = True) -> None:
        rt = self.server.runtime
        for _ in range(count):
            caller, body, key, digest = self.work.pop()
            began = time.perf_counter()
            work = authorization.Authorization(rt, caller, body, key, digest)
            answer = rt.unit(caller, work, first=work.send)
            took = time.perf_counter() - began
            if answer["status"] != "approved":
                self.run.failures.append(answer["decline_code"])
            elif measure:
                self.run.approvals += 1
                self.run.latencies.append(took)
                self.run.seconds += took


@contextlib.contextmanager
def database(base_url: str | None) -> Iterator[str | None]:
    if base_url is None:
        yield None
    else:
        with postgres_schema(base_url) as url:
            yield url


def open_side(name: str, root: Path, db_url: str | None) -> Side:
    server = InProcessServer(root / name, db_url=db_url)
    scene = payment_scene(
        server.url,
        transport=server.transport,
        source={"kind": "card", "limit": 10**12},
        amount_cap=10**12,
        max_uses=10**6,
    )
    return Side(name, server, scene)


def generate(side: Side, rows: int) -> float:
    """Fill ``side`` with ``rows`` grants and payments; returns the seconds it took."""
    print(f"generating {rows:,} grants and {rows:,} payments (+ their rows) …", flush=True)

    def progress(table: str, count: int, seconds: float) -> None:
        rate = f"{count / seconds:>10,.0f} rows/s" if count else ""
        print(f"  {table:<18}{count:>10,} rows {seconds:>7.1f} s {rate}", flush=True)

    began = time.perf_counter()
    populate(side.server.runtime.db, rows, progress=progress)
    took = time.perf_counter() - began
    print(f"  total {took:.1f} s", flush=True)
    return took


def measure(empty: Side, full: Side, approvals: int) -> None:
    for side in (empty, full):
        side.prepare(approvals + WARMUP)
        side.approve(WARMUP, measure=False)
    done = 0
    while done < approvals:
        step = min(BLOCK, approvals - done)
        order = (empty, full) if (done // BLOCK) % 2 == 0 else (full, empty)
        for side in order:
            side.approve(step)
        done += step


def print_table(dialect: str, rows: int, generated_s: float, empty: Side, full: Side) -> float:
    ratio = full.run.percentile(0.99) / empty.run.percentile(0.99)
    print(f"\napproval latency, {dialect}: server transaction in this process (no HTTP)")
    print(f"{'database':<30}{'approvals':>10}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for label, side in (("empty", empty), (f"full ({rows:,} grants+payments)", full)):
        run = side.run
        mean = run.seconds / run.approvals * 1000 if run.approvals else math.nan
        print(
            f"{label:<30}{run.approvals:>10}{mean:>9.2f}"
            f"{run.percentile(0.5):>9.2f}{run.percentile(0.99):>9.2f}"
        )
    p50_ratio = full.run.percentile(0.5) / empty.run.percentile(0.5)
    verdict = "within" if ratio <= TARGET_P99_RATIO else "OVER"
    print(f"p50 ratio full/empty {p50_ratio:.2f}; p99 ratio {ratio:.2f} ({verdict} target "
          f"{TARGET_P99_RATIO}); data generated in {generated_s:.1f} s")  # fmt: skip
    return ratio


def bench(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="nfcpay-scale-"))
    sides: list[Side] = []
    try:
        with database(args.db) as empty_url, database(args.db) as full_url:
            empty = open_side("empty", root, empty_url)
            sides.append(empty)
            full = open_side("full", root, full_url)
            sides.append(full)
            dialect = full.server.runtime.db.dialect
            generated_s = generate(full, args.rows)
            measure(empty, full, args.approvals)
            ratio = print_table(dialect, args.rows, generated_s, empty, full)
            scene, expiring = hot_path_scene(full.server)
            plans = hot_path_plans(full.server, scene, expiring)
            scans = [plan for plan in plans if plan.full_scans]
            print(f"\nhot-path query plans on the full database ({len(plans)} statements):\n")
            print(report(plans))
            print(f"\nfull scans of growing tables: {len(scans)}")
            print(report(scans))
            failures = empty.run.failures + full.run.failures
            print(f"declined approvals: {len(failures)} {failures[:5]}")
            if args.json:
                print(json.dumps(summary(dialect, args, generated_s, empty, full, ratio, scans)))
            over = ratio > TARGET_P99_RATIO
            return 1 if failures or scans or over else 0
    finally:
        for side in sides:
            side.server.close()
        if args.keep:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def summary(
    dialect: str,
    args: argparse.Namespace,
    generated_s: float,
    empty: Side,
    full: Side,
    ratio: float,
    scans: list[Any],
) -> dict[str, Any]:
    return {
        "db": dialect,
        "rows": args.rows,
        "approvals": args.approvals,
        "generate_s": round(generated_s, 1),
        "empty_p50_ms": round(empty.run.percentile(0.5), 3),
        "empty_p99_ms": round(empty.run.percentile(0.99), 3),
        "full_p50_ms": round(full.run.percentile(0.5), 3),
        "full_p99_ms": round(full.run.percentile(0.99), 3),
        "p99_ratio": round(ratio, 3),
        "full_scans": len(scans),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="postgresql://… (two fresh schemas, dropped afterwards)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="grants and payments (1e6)")
    parser.add_argument("--approvals", type=int, default=2000, help="per database (2000)")
    parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite files")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.approvals < 1:
        parser.error("--rows and --approvals must be positive")
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
