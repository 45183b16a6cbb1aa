"""Durable approvals per second through a REAL payment server, against the same approval
transaction run directly on the database.

    .venv/bin/python scripts/bench_server.py                      # SQLite, 32 connections, 10 s
    .venv/bin/python scripts/bench_server.py --requests 5000 --concurrency 64
    .venv/bin/python scripts/bench_server.py --db postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python scripts/bench_server.py --profile /tmp/server.svg   # py-spy the server

1. Starts ``nfcpay server run`` (SQLite in a fresh data directory, or a fresh schema of the
   PostgreSQL at ``--db``, dropped afterwards) and registers one owner, target, merchant,
   card and many-use grant per connection, so connections never contend on one row.
2. Pre-signs every payment request (challenge, the target's presentation signature, the
   merchant's request signature, idempotency key) as raw HTTP/1.1 bytes, then drives them
   over ``--concurrency`` kept-alive connections from one asyncio loop: each connection sends
   its next request when the answer to the last one is in (closed loop). Writing prepared
   bytes and reading one response costs the generator tens of microseconds, so the server is
   what is measured; the generator's own CPU time is printed to prove it.
3. Runs the same approval transaction — ``Runtime.unit(caller, authorization.authorize)``,
   nonce consumption included, exactly what the HTTP route runs — in a bare loop on the same
   database, with requests prepared beforehand (no HTTP, no request parsing, no signature
   check of the request itself), and prints HTTP rate / direct rate.

Every HTTP answer must be an approval; the ledger audit must be clean afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the test harness starts and drives real server processes

from nfcpay import crypto  # noqa: E402
from nfcpay.client import build_means, new_idempotency_key  # noqa: E402
from tests.support.server import (  # noqa: E402
    PaymentScene,
    ServerProcess,
    payment_scene,
    postgres_schema,
    start_server,
)

AMOUNT = 1
CURRENCY = "KRW"
PATH = "/v1/payments"
WARMUP_REQUESTS_PER_CONNECTION = 10
#: Requests are signed before the run; the server accepts timestamps up to 300 s old.
MAX_SIGNED_AGE_S = 240


@dataclass(frozen=True, slots=True)
class Prepared:
    """One payment request: its JSON body (for the direct loop) and raw HTTP bytes."""

    body: dict[str, Any]
    key: str
    raw: bytes


@dataclass
class Run:
    name: str
    approvals: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    #: CPU seconds the server process used during the run (HTTP runs only).
    server_cpu_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.approvals / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# --- preparation ------------------------------------------------------------------------------


def prepare(scene: PaymentScene, host: str, count: int) -> list[Prepared]:
    """``count`` signed payment requests through ``scene``'s grant, ready to send."""
    shop = scene.merchant
    usage_auth = scene.usage_auth()
    out = []
    for _ in range(count):
        challenge = secrets.token_bytes(16)
        means = build_means(
            scene.target.private_key,
            challenge=challenge,
            merchant_id=str(shop.merchant_id),
            amount=AMOUNT,
            currency=CURRENCY,
            presenting_terminal=scene.target.terminal_id,
            grants=[(scene.grant_id, usage_auth, AMOUNT)],
        )
        body = {
            "amount": AMOUNT,
            "currency": CURRENCY,
            "challenge": crypto.b64e(challenge),
            "means": means,
        }
        payload = json.dumps(body, separators=(",", ":")).encode()
        key = new_idempotency_key()
        headers = shop.client._signed_headers("POST", PATH, payload)
        headers |= {"Content-Type": "application/json", "Idempotency-Key": key}
        head = f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(payload)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        out.append(Prepared(body, key, head.encode() + b"\r\n" + payload))
    return out


def make_scenes(server: ServerProcess, count: int) -> list[PaymentScene]:
    big = 10**12
    return [
        payment_scene(
            server.url,
            source={"kind": "card", "limit": big},
            amount_cap=big,
            max_uses=1_000_000,
        )
        for _ in range(count)
    ]


# --- the HTTP load generator -------------------------------------------------------------------


async def _connection(
    host: str, port: int, queue: list[Prepared], run: Run, deadline: float
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for prepared in queue:
            if time.perf_counter() >= deadline:
                break
            start = time.perf_counter()
            writer.write(prepared.raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            run.latencies.append(time.perf_counter() - start)
            if head.startswith(b"HTTP/1.1 200") and b'"status":"approved"' in body:
                run.approvals += 1
            else:
                run.failures.append(f"{head.split(b' ', 2)[1].decode()} {body[:200]!r}")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def drive(url: str, queues: list[list[Prepared]], seconds: float | None, name: str) -> Run:
    """Send every queue over its own connection, all at once; stop early after ``seconds``."""
    parts = urlsplit(url)
    run = Run(name)

    async def main() -> None:
        deadline = time.perf_counter() + (seconds if seconds else 1e9)
        await asyncio.gather(
            *(_connection(parts.hostname, parts.port, q, run, deadline) for q in queues)  # type: ignore[arg-type]
        )

    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(main())
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = time.process_time() - cpu
    return run


# --- the direct loop ----------------------------------------------------------------------------


def direct_loop(database_url: str, data_dir: Path, scenes: list[PaymentScene], count: int) -> Run:
    """The route's transaction, ``count`` times in a row, straight on the database."""
    from nfcpay.server.app import create_runtime
    from nfcpay.server.runtime import Caller
    from nfcpay.server.schemas import PaymentIn
    from nfcpay.server.services import authorization, idempotency
    from nfcpay.server.settings import ServerSettings

    settings = ServerSettings(data_dir=data_dir, db_url=None)
    if not database_url.startswith("sqlite:"):
        settings = ServerSettings(data_dir=data_dir, db_url=database_url)
    rt = create_runtime(settings)
    work = []
    for i in range(count):
        scene = scenes[i % len(scenes)]
        (prepared,) = prepare(scene, "direct", 1)
        body = PaymentIn.model_validate(prepared.body)
        digest = idempotency.request_hash(PATH, body.model_dump(mode="json"))
        shop = scene.merchant
        caller = Caller(shop.terminal_id, "merchant", shop.merchant_id, secrets.token_urlsafe(18))
        work.append((caller, body, prepared.key, digest))
    run = Run("direct")
    try:
        cpu, start = time.process_time(), time.perf_counter()
        for caller, body, key, digest in work:
            began = time.perf_counter()
            answer = rt.unit(
                caller,
                lambda tx, c=caller, b=body, k=key, d=digest: authorization.authorize(
                    tx, rt, c, b, k, d
                ),
            )
            run.latencies.append(time.perf_counter() - began)
            if answer["status"] == "approved":
                run.approvals += 1
            else:
                run.failures.append(answer["decline_code"])
        run.seconds = time.perf_counter() - start
        run.cpu_seconds = time.process_time() - cpu
    finally:
        rt.db.close()
    return run


# --- orchestration ------------------------------------------------------------------------------


@contextlib.contextmanager
def database(db: str | None) -> Iterator[str | None]:
    if db is None:
        yield None
    else:
        with postgres_schema(db) as url:
            yield url


@contextlib.contextmanager
def profiler(pid: int, output: str | None) -> Iterator[None]:
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--output", output, "--rate", "200"]
    command += ["--nonblocking", "--gil"]
    if output.endswith(".txt"):
        command += ["--format", "raw"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as spy_p:
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            spy_p.send_signal(2)
            spy_p.wait(30)


def durable_commit_ms(directory: Path, commits: int = 100) -> float:
    """Median time of an empty-ish durable SQLite commit (WAL, synchronous=FULL) in
    ``directory``: the fsync floor under every approval, and it varies a lot on shared VMs."""
    import sqlite3

    path = directory / "fsync-probe.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE probe (n INTEGER)")
        times = []
        for n in range(commits):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO probe VALUES (?)", (n,))
            conn.execute("COMMIT")
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
        for leftover in directory.glob("fsync-probe.sqlite3*"):
            leftover.unlink()
    return statistics.median(times) * 1000


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="nfcpay-bench-"))
    try:
        with database(args.db) as db_url:
            server = start_server(root / "server", db_url=db_url)
            try:
                return measure(args, server)
            finally:
                server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"data kept in {root}")


def measure(args: argparse.Namespace, server: ServerProcess) -> int:
    conns = args.concurrency
    host = urlsplit(server.url).netloc
    scenes = make_scenes(server, conns)

    def batch(per_connection: int) -> list[list[Prepared]]:
        return [prepare(scene, host, per_connection) for scene in scenes]

    warm = drive(server.url, batch(WARMUP_REQUESTS_PER_CONNECTION), None, "warm-up")
    if args.requests:
        per_connection, seconds = math.ceil(args.requests / conns), None
    else:  # enough pre-signed requests for the duration at twice the warm-up rate
        per_connection = math.ceil(max(warm.rate, 50) * 2 * args.duration / conns) + 1
        seconds = args.duration
    queues = batch(per_connection)
    with profiler(server.process.pid, args.profile):
        used = process_cpu_seconds(server.process.pid)
        http = drive(server.url, queues, seconds, f"HTTP, {conns} connections")
        http.server_cpu_seconds = process_cpu_seconds(server.process.pid) - used
    direct_count = args.direct_requests or max(200, min(http.approvals, 5_000))
    direct = direct_loop(server.database_url, server.data_dir, scenes, direct_count)
    problems = server.audit()
    fsync_ms = durable_commit_ms(server.data_dir)
    report(args, server, http, direct, problems, fsync_ms)
    failed = warm.failures or http.failures or direct.failures or problems
    return 1 if failed else 0


def report(
    args: argparse.Namespace,
    server: ServerProcess,
    http: Run,
    direct: Run,
    problems: list[str],
    fsync_ms: float,
) -> None:
    backend = "PostgreSQL" if server.db_url else "SQLite (WAL, synchronous=FULL)"
    ratio = http.rate / direct.rate if direct.rate else math.nan
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"nfcpay server benchmark: {backend}, 1 server process, {os.cpu_count()} CPUs")
    print(f"durable SQLite commit here: {fsync_ms:.2f} ms (median); load average {load}")
    print(f"{'run':<26}{'approvals':>10}{'seconds':>9}{'appr/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'client CPU':>11}{'server CPU':>11}")  # fmt: skip
    for run in (http, direct):
        server_cpu = "-" if run.server_cpu_seconds is None else run.server_cpu_seconds / run.seconds
        print(
            f"{run.name:<26}{run.approvals:>10}{run.seconds:>9.2f}{run.rate:>9.1f}"
            f"{run.percentile(0.50):>8.2f}{run.percentile(0.99):>8.2f}"
            f"{run.cpu_seconds / run.seconds:>11.0%}"
            f"{server_cpu if isinstance(server_cpu, str) else f'{server_cpu:.0%}':>11}"
        )
    print(f"{'ratio HTTP / direct':<26}{'':>10}{'':>9}{ratio:>9.2f}")
    failures = http.failures + direct.failures
    print(f"failures: {len(failures)}; ledger audit: {'clean' if not problems else problems[:3]}")
    for failure in failures[:5]:
        print(f"  {failure}")
    if args.json:
        print(json.dumps({
            "backend": backend, "concurrency": args.concurrency, "http_rate": http.rate,
            "http_p50_ms": http.percentile(0.5), "http_p99_ms": http.percentile(0.99),
            "direct_rate": direct.rate, "ratio": ratio, "failures": len(failures),
        }))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="postgresql://… (a fresh schema is made and dropped)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections (32)")
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--duration", type=float, default=10.0, help="seconds of load (10)")
    how_long.add_argument("--requests", type=int, help="total requests instead of a duration")
    parser.add_argument("--direct-requests", type=int, help="direct-loop approvals")
    parser.add_argument("--profile", help="py-spy the server during the HTTP run (.svg/.txt)")
    parser.add_argument("--json", action="store_true", help="also print a JSON summary line")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    if not args.requests and args.duration > MAX_SIGNED_AGE_S:
        parser.error(f"--duration above {MAX_SIGNED_AGE_S} s: pre-signed requests would go stale")
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
