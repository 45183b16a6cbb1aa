"""Concurrent signed authorizations through real ``nfcpay server run`` processes, with the
test playing the merchants (threads) and their round-robin load balancer, while something
goes wrong underneath: the crash test kills server processes (``test_crash_kill9``), the
failover test kills the PostgreSQL primary (``test_failover``).

Each request has a fixed Idempotency-Key and body. A merchant whose answer was lost (no
connection, a 5xx, a 503) puts the request back in line and sends it again, the same key and
body, to the next live process, until it has an answer. :func:`verify` then checks that the
database holds exactly the approvals merchants were given (none lost, none charged twice),
that the ledger audit is clean, that grants and funding sources add up, and that approvals
replay unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nfcpay.client import PaymentClient
from nfcpay.errors import ApiError, ServerUnavailable
from nfcpay.testing.server import PaymentScene, ServerProcess, Terminal, payment_scene
from tests.support.harness import start_server, start_servers
from tests.support.network import no_retry

THREADS = 32
AMOUNTS = (100, 2_000)
#: How long the whole load may take before the test gives up (it takes seconds).
LOAD_DEADLINE_S = 120.0
#: A merchant whose answer was lost pauses up to this long (jittered) before asking again.
RETRY_PAUSE_S = 0.05
#: Approved requests re-sent with their keys at the end.
REPLAY_SAMPLE = 60
#: What the grants below earn once they run out; any other decline is a bug.
EXPECTED_DECLINES = {
    "over_remaining_cap",
    "no_uses_left",
    "insufficient_balance",
    "over_per_use_cap",
}


@dataclass
class Request:
    """One payment a merchant asks for: fixed key and body, so every retry is the same."""

    key: str
    scene: PaymentScene
    amount: int
    challenge: bytes
    means: dict[str, Any]
    answer: dict[str, Any] | None = None
    lost: int = 0
    last_error: str | None = None
    #: When the latest attempt was sent and when the answer came (time.monotonic()).
    sent_at: float = 0.0
    answered_at: float | None = None
    #: The URL of the server process that answered.
    answered_by: str | None = None

    def send(self, client: PaymentClient) -> dict[str, Any]:
        return client.authorize_payment(
            amount=self.amount,
            currency=self.scene.currency,
            challenge=self.challenge,
            means=self.means,
            idempotency_key=self.key,
        )


class Cluster:
    """The server processes on one database, with the test as their round-robin load
    balancer: :meth:`client` picks the next live process; :meth:`kill` kills -9 and restarts
    in the background, as a supervisor would, while the others keep serving."""

    def __init__(self, data_dir: Path, db_url: str | None, processes: int) -> None:
        self._data_dir, self._db_url = data_dir, db_url
        self._live: list[ServerProcess | None] = list(start_servers(processes, data_dir, db_url))
        self._turn = itertools.count()
        self._changed = threading.Condition()
        self._clients: dict[tuple[str, str], PaymentClient] = {}
        self._restarts: list[threading.Thread] = []
        self._failure: BaseException | None = None

    def live(self) -> list[int]:
        """The indices of the processes up now; waits while none is."""
        with self._changed:
            while not (up := [i for i, s in enumerate(self._live) if s is not None]):
                if self._failure is not None:
                    raise RuntimeError("the server did not start after kill -9") from self._failure
                self._changed.wait(1.0)
            return up

    def server(self) -> ServerProcess:
        """The next live process (round-robin)."""
        with self._changed:
            up = self.live()
            server = self._live[up[next(self._turn) % len(up)]]
        assert server is not None
        return server

    def client(self, terminal: Terminal) -> PaymentClient:
        """A client of ``terminal`` for the next live process, without retries: the caller
        sees every lost answer."""
        server = self.server()
        with self._changed:
            key = (terminal.terminal_id, server.url)
            if key not in self._clients:
                self._clients[key] = no_retry(terminal, server.url)
            return self._clients[key]

    def servers(self) -> list[ServerProcess]:
        """The processes up now."""
        with self._changed:
            return [server for server in self._live if server is not None]

    def kill(self, victims: list[int]) -> None:
        """SIGKILL ``victims`` (no shutdown of any kind) and start them again on the same
        database in the background; the balancer skips them until they answer."""
        with self._changed:
            for index in victims:
                server = self._live[index]
                assert server is not None, f"process {index} is down already"
                server.process.kill()
                self._live[index] = None
                thread = threading.Thread(target=self._restart, args=(index, server))
                thread.start()
                self._restarts.append(thread)

    def _restart(self, index: int, dead: ServerProcess) -> None:
        dead.process.wait()
        try:
            fresh = start_server(self._data_dir, db_url=self._db_url)
        except BaseException as exc:
            with self._changed:
                self._failure = exc
                self._changed.notify_all()
            return
        with self._changed:
            self._live[index] = fresh
            self._changed.notify_all()

    def recovered(self) -> None:
        """Wait until every killed process is back."""
        while self._restarts:
            self._restarts.pop().join()
        if self._failure is not None:
            raise RuntimeError("the server did not start after kill -9") from self._failure

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.recovered()
        for client in self._clients.values():
            client.close()
        for server in self._live:
            if server is not None:
                server.stop()


@dataclass
class Load:
    """Progress shared by the merchant threads and whatever disrupts them."""

    total: int
    settled: int = 0
    in_flight: int = 0
    lost: int = 0
    #: How often each failed answer ("<status> <code>") came back.
    errors: Counter[str] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: threading.Event = field(default_factory=threading.Event)


def _merchant(cluster: Cluster, todo: queue.Queue[Request | None], load: Load) -> None:
    """Send requests until told to stop; a lost answer puts the request back in line."""
    while (request := todo.get()) is not None:
        try:
            client = cluster.client(request.scene.merchant)
            with load.lock:
                load.in_flight += 1
            request.sent_at = time.monotonic()
            try:
                request.answer = request.send(client)
                request.answered_at, request.answered_by = time.monotonic(), client.base_url
            finally:
                with load.lock:
                    load.in_flight -= 1
        except ApiError as error:
            request.last_error = f"{error.status} {error.code}: {error.message}"
            with load.lock:
                load.errors[f"{error.status} {error.code}"] += 1
            if not (isinstance(error, ServerUnavailable) or error.retryable):
                request.answer = {"status": "error", "error": request.last_error}
        except Exception as error:  # a bug in the test or the client: report, do not hang
            request.answer = {"status": "error", "error": repr(error)}
        with load.lock:
            if request.answer is None:
                request.lost += 1
                load.lost += 1
            else:
                load.settled += 1
                if load.settled == load.total:
                    load.done.set()
        if request.answer is None:
            time.sleep(random.uniform(0, RETRY_PAUSE_S))
            todo.put(request)


def scenes(url: str) -> list[PaymentScene]:
    """Five grants on four funding sources: one roomy, the others run out mid-run (amount
    cap, uses, bank balance) or decline large amounts (per-use cap, sharing the roomy card)."""
    roomy_card = {"kind": "card", "limit": 10_000_000}
    roomy = payment_scene(url, source=roomy_card, amount_cap=5_000_000, max_uses=5_000)
    return [
        roomy,
        roomy.another_grant(amount_cap=5_000_000, max_uses=5_000, per_use_cap=1_000),
        payment_scene(url, source=roomy_card, amount_cap=150_000, max_uses=5_000),
        payment_scene(
            url,
            source={"kind": "wallet", "balance": 10_000_000},
            amount_cap=5_000_000,
            max_uses=120,
        ),
        payment_scene(
            url, source={"kind": "bank", "balance": 120_000}, amount_cap=5_000_000, max_uses=5_000
        ),
    ]


def plan(rng: random.Random, scenes: list[PaymentScene], count: int, name: str) -> list[Request]:
    """``count`` requests (keys ``<name>-00000``…) over ``scenes``, signed beforehand."""
    requests = []
    for number in range(count):
        scene = rng.choice(scenes)
        amount = rng.randint(*AMOUNTS)
        challenge, means = scene.signed_means(amount)
        requests.append(Request(f"{name}-{number:05d}", scene, amount, challenge, means))
    return requests


@contextlib.contextmanager
def seeded(name: str, variable: str) -> Iterator[random.Random]:
    """A random generator seeded from ``$variable`` or afresh; the seed is printed and
    attached to a failure, so the run can be repeated."""
    seed = int(os.environ.get(variable) or random.randrange(2**32))
    print(f"{name}: seed {seed} (rerun with {variable}={seed})")
    try:
        yield random.Random(seed)
    except BaseException as exc:
        exc.add_note(f"{name}: seed {seed}; rerun with {variable}={seed}")
        raise


def drive(cluster: Cluster, requests: list[Request], disrupt: Callable[[Load], None]) -> Load:
    """Put every request through :data:`THREADS` merchants until each has an answer, while
    ``disrupt(load)`` (run in this thread, as the merchants go) breaks things."""
    load = Load(len(requests))
    todo: queue.Queue[Request | None] = queue.Queue()
    for request in requests:
        todo.put(request)
    merchants = [
        threading.Thread(target=_merchant, args=(cluster, todo, load), daemon=True)
        for _ in range(THREADS)
    ]
    for thread in merchants:
        thread.start()
    try:
        disrupt(load)
        if not load.done.wait(LOAD_DEADLINE_S):
            errors = {r.last_error for r in requests if r.answer is None}
            raise AssertionError(f"{load.settled} of {load.total} answered; last errors {errors}")
    finally:
        for _ in merchants:
            todo.put(None)
        for thread in merchants:
            thread.join(30)
    return load


def wait_settled(load: Load, count: int) -> None:
    """Wait until ``count`` requests have their answer (or the load's deadline passed)."""
    deadline = time.monotonic() + LOAD_DEADLINE_S
    while load.settled < count and time.monotonic() < deadline:
        time.sleep(0.002)


def stored_payments(tx: Any) -> dict[str, tuple[str, int, list[tuple[str | None, int]]]]:
    """Every payment in the database: merchant, amount and (grant, amount) shares."""
    shares: dict[str, list[tuple[str | None, int]]] = {}
    for row in tx.all("SELECT payment_id, grant_id, amount FROM payment_shares ORDER BY seq"):
        shares.setdefault(row["payment_id"], []).append((row["grant_id"], int(row["amount"])))
    return {
        row["payment_id"]: (
            row["merchant_id"],
            int(row["amount"]),
            shares.get(row["payment_id"], []),
        )
        for row in tx.all("SELECT payment_id, merchant_id, amount FROM payments")
    }


def verify(
    cluster: Cluster, rng: random.Random, scenes: list[PaymentScene], requests: list[Request]
) -> None:
    """Every request has an approval or an expected decline; the database holds exactly the
    approvals (none lost, none charged twice), the ledger audit is clean, grants and sources
    add up, and a sample of approvals replays unchanged (asked of the next live process)."""
    errors = [r.answer for r in requests if r.answer and r.answer["status"] == "error"]
    assert errors == [], f"requests failed other than by a lost answer: {errors[:5]}"
    approved = [r for r in requests if r.answer and r.answer["status"] == "approved"]
    declined = [r for r in requests if r.answer and r.answer["status"] == "declined"]
    assert len(approved) + len(declined) == len(requests)
    odd = {r.answer["decline_code"] for r in declined if r.answer} - EXPECTED_DECLINES
    assert not odd, f"declines no grant here should earn (a lost charge replayed?): {odd}"
    for r in approved:
        assert r.answer is not None
        assert (r.answer["amount"], r.answer["shares"]) == (
            r.amount,
            [{"grant_id": r.scene.grant_id, "amount": r.amount}],
        ), r.answer
    held = {str(r.answer["payment_id"]): r for r in approved if r.answer}
    assert len(held) == len(approved), "two requests were given the same payment"

    server = cluster.server()
    clients: dict[str, PaymentClient] = {}

    def api(terminal: Terminal) -> PaymentClient:
        """A client for the checks, with the usual retries."""
        if terminal.terminal_id not in clients:
            clients[terminal.terminal_id] = PaymentClient(
                server.url, terminal.terminal_id, terminal.private_key
            )
        return clients[terminal.terminal_id]

    try:
        _check_ledger(server, held)
        _check_grants_and_sources(api, scenes, approved)
        for request in rng.sample(approved, min(REPLAY_SAMPLE, len(approved))):
            again = request.send(api(request.scene.merchant))
            assert again == {**(request.answer or {}), "replayed": True}, request.key
    finally:
        for client in clients.values():
            client.close()


def _check_ledger(server: ServerProcess, held: dict[str, Request]) -> None:
    """The payments in the database are exactly the approvals merchants hold."""
    stored = server.query(stored_payments)
    missing = sorted(set(held) - set(stored))
    assert not missing, (
        f"{len(missing)} approvals merchants hold are not in the ledger: {missing[:5]}"
    )
    unknown = sorted(set(stored) - set(held))
    assert not unknown, (
        f"{len(unknown)} payments nobody was told of (charged twice?): {unknown[:5]}"
    )
    for payment_id, request in held.items():
        merchant_id, amount, shares = stored[payment_id]
        assert (merchant_id, amount, shares) == (
            request.scene.merchant.merchant_id,
            request.amount,
            [(request.scene.grant_id, request.amount)],
        ), payment_id
    assert server.audit() == []


def _check_grants_and_sources(
    api: Callable[[Terminal], PaymentClient], scenes: list[PaymentScene], approved: list[Request]
) -> None:
    """Grants have their caps minus the approved payments left; sources are charged them."""
    charged: dict[str, int] = {}
    for scene in scenes:
        mine = [r.amount for r in approved if r.scene is scene]
        charged[scene.source["source_id"]] = charged.get(scene.source["source_id"], 0) + sum(mine)
        grant = api(scene.owner).get_grant(scene.grant_id)
        rights = grant["rights"]
        assert (grant["remaining_amount"], grant["remaining_uses"]) == (
            rights["amount_cap"] - sum(mine),
            rights["max_uses"] - len(mine),
        ), f"grant {scene.grant_id}: {len(mine)} approvals of {sum(mine)} in all"
    for scene in {id(s.owner): s for s in scenes}.values():
        for source in api(scene.owner).list_sources():
            spent = charged[source["source_id"]]
            if source["kind"] == "card":
                assert source["outstanding"] == spent, source
            else:
                initial = scene.source["balance"]
                assert source["balance"] == initial - spent, source
