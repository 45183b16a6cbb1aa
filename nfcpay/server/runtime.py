"""What every request handler shares: the database, the field cipher, the clock and the
per-process rate limits; plus the periodic purge of expired idempotency keys.

The clock (:attr:`Runtime.clock`, made by :func:`server_clock`) is the server's one source of
"now": request timestamps, rate-limit buckets, nonce pruning, the rules' "now" and the purge's
horizon and schedule all read it. Left on the real time on purpose: the waits for a database
connection or turn and the notifications long poll, which bound how long a request waits
(``time.monotonic``, the event loop's timer), and the schema version's ``applied_at``, a note
for operators that no rule reads.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from nfcpay.crypto import FieldCipher
from nfcpay.errors import AuthenticationFailed, ConfigError
from nfcpay.server.ratelimit import TokenBuckets
from nfcpay.server.settings import ServerSettings
from nfcpay.server.store import Cursor, Database, Tx

T = TypeVar("T")
log = logging.getLogger(__name__)
#: A unit's first statements, sent without reading their answers (:meth:`Runtime.unit`).
Sends = Callable[[Tx], None]

#: Seen nonces older than this are pruned; twice the clock-skew window keeps replays out.
_NONCE_PRUNE_EVERY_S = 60.0


class FileOffsetClock:
    """TEST-ONLY (:attr:`ServerSettings.test_clock_file`): the real time plus the number of
    seconds written in ``path``, which is read every time the clock is asked, so a test moves
    a running server's time by rewriting the file."""

    #: Its time can jump, so :func:`sleep_on` re-reads it this often (seconds).
    poll_s = 0.05

    def __init__(self, path: Path, real: Callable[[], float] = time.time) -> None:
        self.path = path
        self._real = real

    def offset(self) -> float:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the test clock file {self.path}: {exc}") from None
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            raise ConfigError(
                f"the test clock file {self.path} must hold a number of seconds, not {text!r}"
            )
        return seconds

    def __call__(self) -> float:
        return self._real() + self.offset()


def server_clock(settings: ServerSettings, environ: Mapping[str, str]) -> Callable[[], float]:
    """The clock a server runs on: the real time, or with ``settings.test_clock_file`` a
    :class:`FileOffsetClock`, after :meth:`ServerSettings.checked_test_clock` allowed it for
    ``environ`` (the server process's environment, which its entry point passes).
    Raises :class:`ConfigError`."""
    path = settings.checked_test_clock(environ)
    if path is None:
        return time.time
    clock = FileOffsetClock(path)
    clock()  # a missing or malformed file fails the start, not the first request
    log.warning("TEST CLOCK: this server's time is the real time plus the seconds in %s", path)
    return clock


async def sleep_on(clock: Callable[[], float], seconds: float) -> None:
    """Sleep until ``clock`` has moved ``seconds`` on.

    On the real clock that is one sleep on the event loop's monotonic timer (a step of the
    wall clock neither stretches nor cuts it). A clock that can jump says how often to look
    again (``poll_s``, as :class:`FileOffsetClock` does) and is re-read until it is due.
    """
    poll: float | None = getattr(clock, "poll_s", None)
    if poll is None:
        await anyio.sleep(seconds)
        return
    due = clock() + seconds
    while (left := due - clock()) > 0:
        await anyio.sleep(min(left, poll))


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated terminal. ``merchant_id`` is set for merchant terminals only."""

    terminal_id: str
    role: str
    merchant_id: str | None
    nonce: str


@dataclass(frozen=True, slots=True)
class TerminalKey:
    public_key: bytes
    role: str
    merchant_id: str | None
    #: The name its owner registered it under (self-chosen: shown beside its id).
    label: str


@dataclass
class Runtime:
    """Per-process state of one server. Terminal keys and labels never change once
    registered, so they are cached here (a miss reads the database in the caller's transaction)."""

    settings: ServerSettings
    db: Database
    cipher: FieldCipher
    clock: Callable[[], float] = time.time
    _last_prune: float = field(default=0.0, repr=False)
    _keys: dict[str, TerminalKey] = field(default_factory=dict, repr=False)
    #: A merchant's id, name and region never change once registered either (its categories do:
    #: they are read in each payment's transaction).
    _merchants: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    #: Requests per authenticated terminal (and per address for registrations).
    requests: TokenBuckets = field(init=False, repr=False)
    #: Failed authentications per (client address, claimed terminal id).
    auth_failures: TokenBuckets = field(init=False, repr=False)

    def __post_init__(self) -> None:
        s = self.settings
        # The buckets read the clock through self, so a test clock set later still applies.
        self.requests = TokenBuckets(s.rate_limit_per_s, s.rate_limit_burst, self._now)
        self.auth_failures = TokenBuckets(s.auth_failure_per_s, s.auth_failure_burst, self._now)

    def _now(self) -> float:
        return self.clock()

    def now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def cached_key(self, terminal_id: str) -> TerminalKey | None:
        return self._keys.get(terminal_id)

    def terminal_key(self, tx: Tx, terminal_id: str) -> TerminalKey | None:
        key = self._keys.get(terminal_id)
        if key is None:
            row = tx.one(
                "SELECT public_key, role, merchant_id, label FROM terminals WHERE terminal_id = ?",
                (terminal_id,),
            )
            if row is None:
                return None
            key = TerminalKey(
                bytes(row["public_key"]), row["role"], row["merchant_id"], row["label"]
            )
            self._keys[terminal_id] = key
        return key

    def merchant(self, tx: Tx, merchant_id: str) -> dict[str, Any] | None:
        """The merchant's id, name and region (cached; a miss reads it in ``tx``)."""
        merchant = self._merchants.get(merchant_id)
        if merchant is None:
            row = tx.one(
                "SELECT merchant_id, name, region FROM merchants WHERE merchant_id = ?",
                (merchant_id,),
            )
            if row is None:
                return None
            merchant = self._merchants[merchant_id] = dict(row)
        return merchant

    def unit(self, caller: Caller, work: Callable[[Tx], T], first: Sends | None = None) -> T:
        """Run ``work`` in one transaction that also consumes the caller's request nonce.

        A replayed nonce fails the whole transaction, so a replayed request changes nothing.
        ``first`` sends the work's first statements in the nonce's pipeline (PostgreSQL: one
        round trip for both, with the transaction's BEGIN); it must only send, and leave
        reading their answers to ``work``, which runs once the nonce was found fresh.
        """
        return self.db.run(self._with_nonce(caller, work, first))

    async def unit_async(
        self, caller: Caller, work: Callable[[Tx], T], first: Sends | None = None
    ) -> T:
        """:meth:`unit` for the event loop (no thread-pool hop on SQLite)."""
        return await self.db.run_async(self._with_nonce(caller, work, first))

    def _with_nonce(
        self, caller: Caller, work: Callable[[Tx], T], first: Sends | None
    ) -> Callable[[Tx], T]:
        def consume_nonce_then_work(tx: Tx) -> T:
            with tx.pipeline():
                nonce = send_nonce(tx, caller, self.now_us())
                if first is not None:
                    first(tx)
            nonce_taken(nonce)
            self._maybe_prune(tx)
            return work(tx)

        return consume_nonce_then_work

    def _maybe_prune(self, tx: Tx) -> None:
        now = self.clock()
        if now - self._last_prune < _NONCE_PRUNE_EVERY_S:
            return
        self._last_prune = now
        horizon = int((now - 2 * self.settings.max_clock_skew_s) * 1_000_000)
        tx.execute("DELETE FROM request_nonces WHERE seen_at < ?", (horizon,))


def purge_interval_s(settings: ServerSettings) -> float:
    """How often :func:`purge_idempotency_keys` runs: keys live between the retention and
    the retention plus this interval."""
    return min(settings.idempotency_retention_s, 60.0)


def purge_idempotency_keys(runtime: Runtime) -> int:
    """Delete idempotency keys older than the retention period; returns how many.

    A retry with an expired key is a new request: it may charge again, exactly like a
    payment API's keys after their retention (merchants retry within minutes, not days).
    """
    horizon = runtime.now_us() - int(runtime.settings.idempotency_retention_s * 1_000_000)
    return runtime.db.run(
        lambda tx: (
            tx.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (horizon,)).rowcount
        )
    )


def send_nonce(tx: Tx, caller: Caller, now_us: int) -> Cursor:
    """Record the caller's request nonce; :func:`nonce_taken` reads the answer."""
    return tx.send(
        "INSERT INTO request_nonces (terminal_id, nonce, seen_at) VALUES (?, ?, ?) "
        "ON CONFLICT (terminal_id, nonce) DO NOTHING",
        (caller.terminal_id, caller.nonce, now_us),
    )


def nonce_taken(cursor: Cursor) -> None:
    """Refuse a request whose nonce (:func:`send_nonce`'s ``cursor``) was seen before."""
    if cursor.rowcount != 1:
        raise AuthenticationFailed("this request was already received (replayed nonce)")
