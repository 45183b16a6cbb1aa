"""Durable approvals per second through a REAL payment server, against the same approval
transaction run directly on the database.

    .venv/bin/python scripts/bench_server.py                      # SQLite, 32 and 128 conns
    .venv/bin/python scripts/bench_server.py --concurrency 32 --rate 300 --json
    .venv/bin/python scripts/bench_server.py --db postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python scripts/bench_server.py --profile /tmp/server.svg   # py-spy the server

1. Starts ``nfcpay server run`` (SQLite in a fresh data directory, or a fresh schema of the
   PostgreSQL at ``--db``, dropped afterwards) and registers one owner, target, merchant,
   card and many-use grant per connection, so connections never contend on one row.
2. Pre-signs every payment request (challenge, the target's presentation signature, the
   merchant's request signature, idempotency key) as raw HTTP/1.1 bytes, then drives them
   over kept-alive connections from one asyncio loop. Closed loop (default), once per
   ``--concurrency`` value: each connection sends its next request when the answer to the
   last one is in. Open loop (``--rate N``): N requests per second are offered on a fixed
   schedule whatever the server does, and each latency counts from the request's scheduled
   time (no coordinated omission), over as many connections as it needs. Writing prepared
   bytes and reading one response costs the generator tens of microseconds, so the server is
   what is measured; the generator's own CPU time is printed to prove it.
3. Runs the same approval transaction — ``Runtime.unit(caller, Authorization(…), first=…)``,
   nonce consumption included, exactly what the HTTP route runs — straight on the same
   database with requests prepared beforehand (no HTTP, no request parsing, no signature
   check of the request itself), two ways, and divides the HTTP rate by each:

   * "sequential": one caller, one transaction and one COMMIT per approval — what the
     database can do for a server that commits each request on its own (the old server);
   * "group commit": ``--bare-threads`` callers (32) through the same group-commit
     :class:`Database` the server uses (on PostgreSQL: its connection pool), so the
     database side is as good as the server's and only the HTTP layer is missing.

4. Counts what one approval asks of the database, in a run of its own (``--count-requests``
   sequential approvals, bare): SQL statements and, on PostgreSQL, round trips, from the
   driver's own hooks (:func:`nfcpay.testing.traffic.counted`: SQLite's trace callback,
   libpq's protocol trace). These are deterministic, unlike the timings.
5. Times one Ed25519 verification (:func:`nfcpay.crypto.verify_signature`, as the server
   calls it) in this process right after the HTTP runs, and states the server's CPU per
   approval in those verifications too: the two an approval cannot do without (the
   merchant's request signature, the target's presentation) are the floor, and the ratio
   travels between machines better than milliseconds do.

The server's CPU is its own (user + system time from /proc, all threads). The server's memory
high-water mark (VmHWM from /proc) is read after the load. Every HTTP answer must be an
approval; the ledger audit must be clean afterwards. With ``--json`` the last line is a JSON
list, one object per configuration run.
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
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nfcpay import crypto
from nfcpay.client import new_idempotency_key
from nfcpay.testing.server import (
    PaymentScene,
    ServerProcess,
    build_signed_means,
    payment_scene,
    postgres_schema,
    start_server,
)
from nfcpay.testing.traffic import Traffic, counted

if TYPE_CHECKING:
    from nfcpay.server.runtime import Runtime

AMOUNT = 1
CURRENCY = "KRW"
PATH = "/v1/payments"
WARMUP_REQUESTS_PER_CONNECTION = 10
#: Requests are signed before the run; the server accepts timestamps up to 300 s old.
MAX_SIGNED_AGE_S = 240
#: Bare approvals whose statements and round trips are counted.
COUNTED_APPROVALS = 100


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
    #: CPU seconds the server's work took: the server's processes during an HTTP run; this
    #: process during a bare loop, which runs the same transaction and rules in-process.
    server_cpu_seconds: float | None = None
    #: Closed loop: connections; open loop: the offered rate (requests per second).
    concurrency: int | None = None
    offered_rate: float | None = None

    @property
    def rate(self) -> float:
        return self.approvals / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_ms_per_approval(self) -> float:
        """The server's CPU per approval, in milliseconds (0 when it was not measured)."""
        return 1000 * (self.server_cpu_seconds or 0) / max(self.approvals, 1)

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def record(self, head: bytes, body: bytes, latency: float) -> None:
        self.latencies.append(latency)
        if head.startswith(b"HTTP/1.1 200") and b'"status":"approved"' in body:
            self.approvals += 1
        else:
            self.failures.append(f"{head.split(b' ', 2)[1].decode()} {body[:200]!r}")


# --- preparation ------------------------------------------------------------------------------


def prepare(scene: PaymentScene, host: str, count: int) -> list[Prepared]:
    """``count`` signed payment requests through ``scene``'s grant, ready to send."""
    shop = scene.merchant
    usage_auth = scene.usage_auth()
    out = []
    for _ in range(count):
        challenge = secrets.token_bytes(16)
        means = build_signed_means(
            scene.target,
            merchant=shop,
            challenge=challenge,
            amount=AMOUNT,
            currency=CURRENCY,
            purpose=shop.primary_category,
            grants=[(scene.grant_id, usage_auth, AMOUNT)],
        )
        body = {  # as `merchant charge` sends it, purpose included
            "amount": AMOUNT,
            "currency": CURRENCY,
            "challenge": crypto.b64e(challenge),
            "purpose": shop.primary_category,
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


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[bytes, bytes]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head, await reader.readexactly(length)


@contextlib.asynccontextmanager
async def _connected(host: str, port: int) -> Any:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _closed_loop_connection(
    host: str, port: int, queue: list[Prepared], run: Run, deadline: float
) -> None:
    async with _connected(host, port) as (reader, writer):
        for prepared in queue:
            if time.perf_counter() >= deadline:
                break
            start = time.perf_counter()
            head, body = await _exchange(reader, writer, prepared.raw)
            run.record(head, body, time.perf_counter() - start)


def _timed(run: Run, main: Callable[[], Any]) -> Run:
    cpu, start = time.process_time(), time.perf_counter()
    asyncio.run(main())
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = time.process_time() - cpu
    return run


def drive(url: str, queues: list[list[Prepared]], seconds: float | None, name: str) -> Run:
    """Closed loop: send every queue over its own connection, all at once; stop early after
    ``seconds``."""
    parts = urlsplit(url)
    run = Run(name, concurrency=len(queues))

    async def main() -> None:
        deadline = time.perf_counter() + (seconds if seconds else 1e9)
        await asyncio.gather(
            *(
                _closed_loop_connection(parts.hostname, parts.port, q, run, deadline)  # type: ignore[arg-type]
                for q in queues
            )
        )

    return _timed(run, main)


def drive_open(url: str, requests: list[Prepared], rate: float, connections: int) -> Run:
    """Open loop: request i is due at start + i / rate. An idle connection sends the next
    due request; if none is idle the request waits, and its latency (counted from when it
    was due) shows it. Throughput is then what was offered, unless the server falls behind."""
    parts = urlsplit(url)
    run = Run(f"HTTP, open loop {rate:g}/s", offered_rate=rate)

    async def main() -> None:
        start = time.perf_counter() + 0.05
        pending = iter(enumerate(requests))

        async def connection() -> None:
            async with _connected(parts.hostname, parts.port) as (reader, writer):  # type: ignore[arg-type]
                for i, prepared in pending:
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    head, body = await _exchange(reader, writer, prepared.raw)
                    run.record(head, body, time.perf_counter() - due)

        await asyncio.gather(*(connection() for _ in range(connections)))

    return _timed(run, main)


# --- the bare loops -----------------------------------------------------------------------------


def bare_approvals(
    rt: Runtime, scenes: list[PaymentScene], n: int
) -> list[Callable[[], dict[str, Any]]]:
    """``n`` approvals ready to run on ``rt`` in this process, each a call that runs what the
    payment route runs (nonce included) and returns its answer, spread over ``scenes``."""
    from nfcpay.server.runtime import Caller
    from nfcpay.server.schemas import PaymentIn
    from nfcpay.server.services import authorization, idempotency

    work: list[Callable[[], dict[str, Any]]] = []
    for i in range(n):
        scene = scenes[i % len(scenes)]
        (prepared,) = prepare(scene, "direct", 1)
        body = PaymentIn.model_validate(prepared.body)
        digest = idempotency.request_hash(PATH, body.model_dump(mode="json"))
        shop = scene.merchant
        nonce = secrets.token_urlsafe(18)
        caller = Caller(shop.terminal_id, "merchant", shop.merchant_id, nonce)
        unit = authorization.Authorization(rt, caller, body, prepared.key, digest)
        work.append(lambda c=caller, u=unit: rt.unit(c, u, first=u.send))
    return work


def direct_loops(
    database_url: str,
    data_dir: Path,
    scenes: list[PaymentScene],
    count: int,
    threads: int,
    counted_count: int,
) -> tuple[Run, Run, Traffic]:
    """The route's transaction straight on the database, ``count`` times sequentially, then
    ``count`` times from ``threads`` threads at once (group commit / the pool); and what
    ``counted_count`` more sequential ones sent to the database."""
    from nfcpay.server.app import create_runtime
    from nfcpay.server.settings import ServerSettings

    settings = ServerSettings(data_dir=data_dir, db_url=None)
    if not database_url.startswith("sqlite:"):
        settings = ServerSettings(data_dir=data_dir, db_url=database_url)
    rt = create_runtime(settings)

    def run_all(run: Run, work: list[Callable[[], dict[str, Any]]]) -> None:
        for one in work:
            began = time.perf_counter()
            answer = one()
            run.latencies.append(time.perf_counter() - began)
            if answer["status"] == "approved":
                run.approvals += 1
            else:
                run.failures.append(answer["decline_code"])

    try:
        sequential = Run("bare loop, sequential", concurrency=1)
        work = bare_approvals(rt, scenes, count)
        cpu, start = time.process_time(), time.perf_counter()
        run_all(sequential, work)
        sequential.seconds = time.perf_counter() - start
        sequential.cpu_seconds = sequential.server_cpu_seconds = time.process_time() - cpu

        grouped = Run(f"bare loop, {threads} threads", concurrency=threads)
        work = bare_approvals(rt, scenes, count)
        shares = [work[i::threads] for i in range(threads)]
        workers = [threading.Thread(target=run_all, args=(grouped, share)) for share in shares]
        cpu, start = time.process_time(), time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        grouped.seconds = time.perf_counter() - start
        grouped.cpu_seconds = grouped.server_cpu_seconds = time.process_time() - cpu

        tally = Run("counted", concurrency=1)
        work = bare_approvals(rt, scenes, counted_count)
        with counted(rt.db) as traffic:
            run_all(tally, work)
        if tally.failures:
            sequential.failures += tally.failures
    finally:
        rt.db.close()
    return sequential, grouped, traffic


def ed25519_verify_ms(batches: int = 5, per_batch: int = 400) -> tuple[float, float]:
    """CPU time of one Ed25519 verification here (median of ``batches``): as the server
    checks one (:func:`crypto.verify_signature`, libsodium), and with OpenSSL through
    ``cryptography`` (the unit issue 14's targets were first measured in)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    message = secrets.token_bytes(200)
    signature = key.sign(message)
    openssl = key.public_key()

    def server_check() -> None:
        if not crypto.verify_signature(public, signature, message):
            raise AssertionError("a good signature did not verify")

    def openssl_check() -> None:
        openssl.verify(signature, message)  # raises on a bad signature

    def median_ms(check: Callable[[], None]) -> float:
        times = []
        for _ in range(batches):
            cpu = time.process_time()
            for _ in range(per_batch):
                check()
            times.append((time.process_time() - cpu) / per_batch)
        return statistics.median(times) * 1000

    return median_ms(server_check), median_ms(openssl_check)


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
    # Every thread that is running, not only the one holding the GIL: the Ed25519 checks and
    # SQLite's own work release the GIL, and a GIL-only profile would hide them.
    command = [spy, "record", "--pid", str(pid), "--output", output, "--rate", "500"]
    command += ["--nonblocking", "--subprocesses"]  # the workers of --workers too
    if output.endswith(".txt"):
        command += ["--format", "raw"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as spy_p:
        time.sleep(1.0)  # py-spy attaches
        try:
            yield
        finally:
            spy_p.send_signal(2)
            spy_p.wait(30)


#: Where an approval's time goes: a sample counts for the first landmark whose text is in
#: one of its frames (True) or in the running frame itself (False).
PROFILE_LANDMARKS = {
    "Ed25519 verifications": ("verify_signature (", True),
    "SQL statements (sqlite3 / psycopg, incl. their C work)": ("Tx.", True),
    "the database layer itself (SQLite: COMMIT's fsync, a wait)": ("Database.", False),
}


def profile_summary(path: Path, top: int = 15) -> str:
    """The top costs in a raw py-spy profile: landmark shares, then the frames that were
    running (self time), as shares of all samples."""
    own: dict[str, int] = {}
    landmarks = dict.fromkeys(PROFILE_LANDMARKS, 0)
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        leaf = frames[-1].rsplit(":", 1)[0] + ")" if ":" in frames[-1] else frames[-1]
        own[leaf] = own.get(leaf, 0) + samples
        for name, (marker, anywhere) in PROFILE_LANDMARKS.items():
            if marker in leaf or (anywhere and any(marker in frame for frame in frames)):
                landmarks[name] += samples
                break
    lines = [f"profile {path}: {total} samples of running threads"]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {name}" for name, n in landmarks.items()]
    lines.append("  running (self), top frames:")
    ranked = sorted(own.items(), key=lambda item: -item[1])[:top]
    lines += [f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in ranked]
    return "\n".join(lines)


def durable_commit_ms(directory: Path, commits: int = 100) -> tuple[float, float]:
    """Median and 99th percentile time of an empty-ish durable SQLite commit (WAL,
    synchronous=FULL) in ``directory``: the fsync floor under every approval, and the tail
    under every p99; both vary a lot on shared VMs."""
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
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    return statistics.median(times) * 1000, p99 * 1000


def server_cpu_seconds(server: ServerProcess) -> float:
    """User + system CPU time of the server's processes (its workers' too), all threads
    (Linux /proc)."""
    ticks = 0
    for pid in server.processes():
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def bench(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="nfcpay-bench-"))
    try:
        with database(args.db) as db_url:
            workers = ["--workers", str(args.workers)] if args.workers > 1 else []
            server = start_server(root / "server", environ=os.environ, db_url=db_url, args=workers)
            try:
                return measure(args, server)
            finally:
                server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"data kept in {root}")


def memory_high_water_mb(server: ServerProcess) -> float:
    """VmHWM, the most resident memory a process ever had, summed over the server's processes
    (its workers' too; Linux /proc)."""
    total = 0.0
    for pid in server.processes():
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        found = [int(line.split()[1]) / 1024 for line in lines if line.startswith("VmHWM:")]
        total += found[0] if found else math.nan
    return total


def measure(args: argparse.Namespace, server: ServerProcess) -> int:
    host = urlsplit(server.url).netloc
    pid = server.process.pid
    open_loop = args.rate or args.rate_share
    widest = max([*args.concurrency, args.open_connections if open_loop else 0])
    scenes = make_scenes(server, widest)

    def batch(connections: int, per_connection: int) -> list[list[Prepared]]:
        return [prepare(scene, host, per_connection) for scene in scenes[:connections]]

    warm = drive(server.url, batch(widest, WARMUP_REQUESTS_PER_CONNECTION), None, "warm-up")
    runs: list[Run] = []
    with profiler(pid, args.profile):
        for conns in args.concurrency:
            if args.requests:
                per_connection, seconds = math.ceil(args.requests / conns), None
            else:  # enough pre-signed requests for the duration at thrice the warm-up rate
                per_connection = math.ceil(max(warm.rate, 50) * 3 * args.duration / conns) + 1
                seconds = args.duration
            queues = batch(conns, per_connection)
            used = server_cpu_seconds(server)
            run = drive(server.url, queues, seconds, f"HTTP, {conns} connections")
            run.server_cpu_seconds = server_cpu_seconds(server) - used
            runs.append(run)
        rate = args.rate
        if args.rate_share:  # a share of the best closed-loop rate just measured
            rate = round(args.rate_share * max(run.rate for run in runs), 1)
        if rate:
            count = math.ceil(rate * args.duration)
            queues = batch(args.open_connections, math.ceil(count / args.open_connections))
            # Interleave the scenes so consecutive requests use different grants.
            flat = [q[i] for i in range(len(queues[0])) for q in queues if i < len(q)][:count]
            used = server_cpu_seconds(server)
            run = drive_open(server.url, flat, rate, args.open_connections)
            run.server_cpu_seconds = server_cpu_seconds(server) - used
            runs.append(run)
    verify_ms, openssl_verify_ms = ed25519_verify_ms()
    rss_mb = memory_high_water_mb(server)
    done = max(run.approvals for run in runs)
    direct_count = args.direct_requests or max(200, min(done, 3_000))
    sequential, grouped, traffic = direct_loops(
        server.database_url,
        server.data_dir,
        scenes,
        direct_count,
        args.bare_threads,
        args.count_requests,
    )
    problems = server.audit()
    fsync_ms = durable_commit_ms(server.data_dir)
    summary = report(
        server,
        runs,
        (sequential, grouped),
        problems,
        fsync_ms,
        rss_mb,
        Costs(traffic, args.count_requests, verify_ms, openssl_verify_ms),
        args.workers,
    )
    if args.profile and args.profile.endswith(".txt"):
        print(profile_summary(Path(args.profile)))
    if args.json:
        print(json.dumps(summary))
    failed = warm.failures or problems or any(r.failures for r in [*runs, sequential, grouped])
    return 1 if failed else 0


@dataclass(frozen=True)
class Costs:
    """What one approval costs besides time: database traffic over ``approvals`` counted
    bare approvals, and the CPU time of one Ed25519 verification here, as the server checks
    one (libsodium) and with OpenSSL."""

    traffic: Traffic
    approvals: int
    verify_ms: float
    openssl_verify_ms: float

    def in_verifications(self, cpu_ms: float) -> float:
        return cpu_ms / self.verify_ms

    def in_openssl_verifications(self, cpu_ms: float) -> float:
        return cpu_ms / self.openssl_verify_ms

    def describe(self) -> str:
        statements, trips = self.traffic.per(self.approvals)
        rt = "none (in-process)" if trips is None else f"{trips:.2f}"
        return (
            f"per approval ({self.approvals} bare ones, sequential, counted at the driver): "
            f"{statements:.2f} SQL statements, round trips {rt}; one Ed25519 verification "
            f"here: {self.verify_ms:.3f} ms CPU as the server checks it (libsodium), "
            f"{self.openssl_verify_ms:.3f} ms with OpenSSL"
        )


def report(
    server: ServerProcess,
    runs: list[Run],
    bare: tuple[Run, Run],
    problems: list[str],
    fsync_ms: tuple[float, float],
    rss_mb: float,
    costs: Costs,
    workers: int,
) -> list[dict[str, Any]]:
    sequential, grouped = bare
    backend = "PostgreSQL" if server.db_url else "SQLite (WAL, synchronous=FULL)"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    processes = f"{workers} server worker processes" if workers > 1 else "1 server process"
    print(f"nfcpay server benchmark: {backend}, {processes}, {os.cpu_count()} CPUs")
    print(
        f"durable SQLite commit here: {fsync_ms[0]:.2f} ms median, {fsync_ms[1]:.2f} ms p99; "
        f"load average {load}"
    )
    print(f"{'run':<28}{'approvals':>10}{'seconds':>9}{'appr/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'client CPU':>11}{'server CPU':>11}{'ms CPU/appr':>12}{'in Ed25519':>11}"
          f"{'in OpenSSL':>11}")  # fmt: skip
    for run in (*runs, sequential, grouped):
        if run.server_cpu_seconds is None:
            server_cpu, per_approval, verifications, openssl = "-", "-", "-", "-"
        else:
            server_cpu = f"{run.server_cpu_seconds / run.seconds:.0%}"
            cpu_ms = run.server_cpu_ms_per_approval
            per_approval = f"{cpu_ms:.2f}"
            verifications = f"{costs.in_verifications(cpu_ms):.1f}"
            openssl = f"{costs.in_openssl_verifications(cpu_ms):.1f}"
        print(
            f"{run.name:<28}{run.approvals:>10}{run.seconds:>9.2f}{run.rate:>9.1f}"
            f"{run.percentile(0.50):>8.2f}{run.percentile(0.99):>8.2f}"
            f"{run.cpu_seconds / run.seconds:>11.0%}{server_cpu:>11}{per_approval:>12}"
            f"{verifications:>11}{openssl:>11}"
        )
    print(costs.describe())
    statements, trips = costs.traffic.per(costs.approvals)
    summary = []
    for run in runs:
        cpu_ms = run.server_cpu_ms_per_approval
        vs_sequential = run.rate / sequential.rate if sequential.rate else math.nan
        vs_grouped = run.rate / grouped.rate if grouped.rate else math.nan
        if run.offered_rate:  # the rate is what was offered: a ratio would mean nothing
            vs_sequential = vs_grouped = math.nan
        else:
            print(
                f"{run.name}: HTTP / bare sequential {vs_sequential:.2f}, "
                f"HTTP / bare {grouped.concurrency}-thread group commit {vs_grouped:.2f}"
            )
        summary.append({
            "db": "postgresql" if server.db_url else "sqlite",
            "mode": "open" if run.offered_rate else "closed",
            "concurrency": run.concurrency,
            "server_workers": workers,
            "offered_per_s": run.offered_rate,
            "approvals": run.approvals,
            "approvals_per_s": round(run.rate, 1),
            "p50_ms": round(run.percentile(0.50), 2),
            "p99_ms": round(run.percentile(0.99), 2),
            "server_cpu_ms_per_approval": round(cpu_ms, 3),
            "server_cpu_ed25519_per_approval": round(costs.in_verifications(cpu_ms), 2),
            "server_cpu_openssl_ed25519_per_approval": round(
                costs.in_openssl_verifications(cpu_ms), 2
            ),
            "ed25519_verify_ms": round(costs.verify_ms, 4),
            "openssl_ed25519_verify_ms": round(costs.openssl_verify_ms, 4),
            "sql_statements_per_approval": round(statements, 2),
            "round_trips_per_approval": None if trips is None else round(trips, 2),
            "bare_loop_sequential_per_s": round(sequential.rate, 1),
            "bare_loop_group_commit_per_s": round(grouped.rate, 1),
            "bare_loop_group_commit_threads": grouped.concurrency,
            "bare_loop_group_commit_cpu_ms_per_approval": round(
                grouped.server_cpu_ms_per_approval, 3
            ),
            "ratio_vs_sequential": None if math.isnan(vs_sequential) else round(vs_sequential, 3),
            "ratio_vs_group_commit": None if math.isnan(vs_grouped) else round(vs_grouped, 3),
            "rss_high_water_mb": round(rss_mb, 1),
            "durable_commit_p50_ms": round(fsync_ms[0], 2),
            "durable_commit_p99_ms": round(fsync_ms[1], 2),
            "failures": len(run.failures),
        })  # fmt: skip
    print(f"server memory high-water mark (VmHWM): {rss_mb:.1f} MB")
    failures = [f for run in (*runs, sequential, grouped) for f in run.failures]
    print(f"failures: {len(failures)}; ledger audit: {'clean' if not problems else problems[:3]}")
    for failure in failures[:5]:
        print(f"  {failure}")
    return summary


def _counts(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("give positive connection counts, e.g. 32,128")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="postgresql://… (a fresh schema is made and dropped)")
    parser.add_argument(
        "--concurrency",
        type=_counts,
        default=[32, 128],
        help="closed-loop runs: connections of each, comma-separated (32,128)",
    )
    offered = parser.add_mutually_exclusive_group()
    offered.add_argument("--rate", type=float, help="also an open-loop run offering N requests/s")
    offered.add_argument(
        "--rate-share",
        type=float,
        help="also an open-loop run offering this share of the best closed-loop rate (0.8)",
    )
    parser.add_argument(
        "--open-connections", type=int, default=64, help="connections of the open loop (64)"
    )
    how_long = parser.add_mutually_exclusive_group()
    how_long.add_argument("--duration", type=float, default=10.0, help="seconds per run (10)")
    how_long.add_argument("--requests", type=int, help="total requests instead of a duration")
    parser.add_argument("--direct-requests", type=int, help="approvals per bare loop")
    parser.add_argument(
        "--bare-threads", type=int, default=32, help="threads of the group-commit bare loop (32)"
    )
    parser.add_argument(
        "--count-requests",
        type=int,
        default=COUNTED_APPROVALS,
        help=f"bare approvals whose database traffic is counted ({COUNTED_APPROVALS})",
    )
    parser.add_argument(
        "--profile",
        help="py-spy the server during the HTTP runs (.svg, or .txt: raw, and its top costs)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (nfcpay server run --workers)"
    )
    parser.add_argument("--json", action="store_true", help="end with a JSON summary line")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    if not args.requests and args.duration > MAX_SIGNED_AGE_S:
        parser.error(f"--duration above {MAX_SIGNED_AGE_S} s: pre-signed requests would go stale")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    if args.rate_share is not None and not 0 < args.rate_share <= 1:
        parser.error("--rate-share must be above 0 and at most 1")
    return bench(args)


if __name__ == "__main__":
    raise SystemExit(main())
