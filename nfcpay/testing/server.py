"""Start REAL ``nfcpay server run`` processes for tests, and terminals that talk to them.

Typical use::

    with start_server(tmp_path, environ=environ) as server:   # SQLite in tmp_path
        alice = register_terminal(server.url, role="user")
        shop = register_terminal(server.url, role="merchant")
        ...
        assert server.audit() == []                          # ledger and balances agree

The caller hands over the environment the server starts from (``environ``): its
``NFCPAY_SERVER_*`` settings are left out, so that settings a developer exported never reach a
test's server; ``env=`` sets the ones a test wants.

PostgreSQL: ``with postgres_schema(base_url) as db_url:`` gives a fresh, uniquely named
schema (dropped afterwards); pass ``db_url=`` to :func:`start_server`. Several processes can
share one database and data directory (the master key): :func:`start_servers`.

In-process (no subprocess, for fast unit tests): :class:`InProcessServer` builds the app with
``create_app`` and hands out an ``httpx`` transport that calls it directly; pass
``transport=server.transport`` (or ``register_terminal(server.url, transport=...)``).

Each server binds port 0 and the helper reads the URL it prints, so there is no free-port
race. Its stdout and stderr go to ``<data_dir>/server-<n>.log`` (see :meth:`ServerProcess.log`).

Time: ``start_server(..., test_clock=True)`` gives the process the TEST-ONLY clock file
(``NFCPAY_SERVER_TEST_CLOCK``); ``server.advance(seconds)`` then moves its clock forward at
once (grant expiry, rate-limit refill, idempotency retention) instead of a test sleeping.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from nfcpay import crypto
from nfcpay.client import PaymentClient
from nfcpay.records import (
    ChallengeRecord,
    GrantRecord,
    MeansRecord,
    PresentedGrant,
    encode_message,
    presentation,
)
from nfcpay.records.means import SplitMode
from nfcpay.server.schemas import PaymentIn
from nfcpay.server.services import rules
from nfcpay.server.settings import TEST_CLOCK_ENV
from nfcpay.terminals.merchant import payment_request

READY_TIMEOUT_S = 30.0
_URL_RE = re.compile(r"listening on (http://\S+)")
DEFAULT_MERCHANT: dict[str, Any] = {
    "name": "Test Bistro",
    "categories": ["5812"],
    "region": "KR-11",
    "settlement_account": "KR-TEST-0001",
}


@dataclass
class ServerProcess:
    """One running server. ``url`` is its base URL, e.g. ``http://127.0.0.1:40321``."""

    url: str
    data_dir: Path
    db_url: str | None
    process: subprocess.Popen[bytes]
    log_path: Path
    #: The server's TEST-ONLY clock file (``start_server(test_clock=True)``), else None.
    clock_file: Path | None = None

    def advance(self, seconds: float) -> None:
        """Move the server's clock ``seconds`` forward; its next request sees the new time.

        Terminals still sign requests with the real time, which the server accepts within
        ±300 s of its own (``max_clock_skew_s``): keep a server's total advance well below.
        """
        if seconds < 0:
            raise ValueError("a server's clock only moves forward")
        _write_clock(self._clock_file(), self.clock_offset() + seconds)

    def clock_offset(self) -> float:
        """How far :meth:`advance` has moved the server's clock so far (seconds)."""
        return float(self._clock_file().read_text())

    def now(self) -> float:
        """The server's time now (a Unix timestamp), as its clock reads it."""
        return time.time() + self.clock_offset()

    def _clock_file(self) -> Path:
        if self.clock_file is None:
            raise RuntimeError("this server has no test clock: start_server(..., test_clock=True)")
        return self.clock_file

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'nfcpay.sqlite3'}"

    def processes(self) -> list[int]:
        """The ids of the processes that serve: the server's own, and with ``--workers`` its
        running workers (Linux /proc)."""
        workers = []
        for tasks in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            workers += [int(child) for child in tasks.read_text().split()]
        return [self.process.pid, *workers]

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def audit(self) -> list[str]:
        """Run :func:`nfcpay.server.ledger.audit` on the server's database (empty = sound)."""
        problems: list[str] = self.query(_audit)
        return problems

    def query(self, work: Any) -> Any:
        """Run ``work(tx)`` in one transaction on the server's database (for assertions)."""
        from nfcpay.server.store import open_database

        db = open_database(self.database_url)
        try:
            return db.run(work)
        finally:
            db.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _audit(tx: Any) -> list[str]:
    from nfcpay.server import ledger

    return ledger.audit(tx)


def start_server(
    data_dir: Path,
    *,
    environ: Mapping[str, str],
    db_url: str | None = None,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    log_name: str | None = None,
    test_clock: bool = False,
    args: Sequence[str] = (),
) -> ServerProcess:
    """Start ``python -m nfcpay server run`` on a free port and wait until /v1/health answers.

    ``environ``: the environment it starts from, less its ``NFCPAY_SERVER_*`` settings;
    ``env``: settings and other variables on top.
    ``test_clock``: run it on a TEST-ONLY clock that :meth:`ServerProcess.advance` moves.
    ``args``: further ``server run`` options, e.g. ``["--forwarded-allow-ips", "127.0.0.1"]``.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    name = secrets.token_hex(3)
    log_path = data_dir / (log_name or f"server-{name}.log")
    command = [sys.executable, "-m", "nfcpay", "server", "run"]
    command += ["--data-dir", str(data_dir), "--host", host, "--port", "0"]
    if db_url:
        command += ["--db", db_url]
    command += args
    clock_file = data_dir / f"clock-{name}" if test_clock else None
    clock_env: dict[str, str] = {}
    if clock_file is not None:
        _write_clock(clock_file, 0.0)
        clock_env[TEST_CLOCK_ENV] = str(clock_file)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**_without_settings(environ), "PYTHONUNBUFFERED": "1", **clock_env, **(env or {})},
        )
    server = ServerProcess("", data_dir, db_url, process, log_path, clock_file)
    try:
        server.url = _wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _write_clock(path: Path, offset: float) -> None:
    """Write a test clock file whole: the server never reads a half-written number."""
    draft = path.with_name(f".{path.name}.{secrets.token_hex(3)}")
    draft.write_text(repr(offset))
    os.replace(draft, path)


def _without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` minus the server settings that would point the server elsewhere."""
    return {k: v for k, v in environ.items() if not k.startswith("NFCPAY_SERVER")}


def _wait_ready(server: ServerProcess, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"nfcpay server exited early:\n{server.log()}")
        match = _URL_RE.search(server.log())
        if match:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{match.group(1)}/v1/health", timeout=2).status_code == 200:
                    return match.group(1)
        time.sleep(0.05)
    raise TimeoutError(f"nfcpay server not ready after {timeout} s:\n{server.log()}")


def start_servers(
    count: int, data_dir: Path, db_url: str | None = None, *, environ: Mapping[str, str]
) -> list[ServerProcess]:
    """``count`` processes sharing one data directory (master key) and database, started
    one after another (see :func:`start_server` for ``environ``)."""
    servers: list[ServerProcess] = []
    try:
        for _ in range(count):
            servers.append(start_server(data_dir, environ=environ, db_url=db_url))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@contextlib.contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema in the PostgreSQL at ``base_url``; yields a URL that uses it."""
    import psycopg

    schema = f"nfcpay_test_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport that calls an ASGI app in this process.

    The app runs on an event loop in a helper thread (an anyio blocking portal), so sync
    ``PaymentClient`` code can reach it exactly as it reaches a real server.
    """

    def __init__(self, app: Any) -> None:
        import anyio.from_thread

        self._portal_cm: contextlib.AbstractContextManager[Any] | None = (
            anyio.from_thread.start_blocking_portal()
        )
        self._portal = self._portal_cm.__enter__()
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(
                response.status_code, headers=response.headers, content=content, request=request
            )

        return self._portal.call(send)

    def close(self) -> None:
        cm, self._portal_cm = self._portal_cm, None
        if cm is not None:
            cm.__exit__(None, None, None)


class InProcessServer:
    """The real app and database (SQLite in ``data_dir`` or ``db_url``), no subprocess.

    ``runtime.clock`` may be replaced by a test clock (request timestamps allow ±300 s).
    """

    url = "http://nfcpay.test"

    def __init__(self, data_dir: Path, *, db_url: str | None = None) -> None:
        from nfcpay.server.app import create_app, create_runtime
        from nfcpay.server.settings import ServerSettings, init_data_dir

        settings = ServerSettings(data_dir=data_dir, db_url=db_url)
        init_data_dir(data_dir)
        self.runtime = create_runtime(settings)
        self.app = create_app(settings, runtime=self.runtime)
        self.transport = InProcessTransport(self.app)
        self.http = httpx.Client(transport=self.transport, base_url=self.url)

    def query(self, work: Any) -> Any:
        return self.runtime.db.run(work)

    def audit(self) -> list[str]:
        problems: list[str] = self.query(_audit)
        return problems

    def close(self) -> None:
        self.http.close()
        self.transport.close()
        self.runtime.db.close()

    def __enter__(self) -> InProcessServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class Terminal:
    """A registered terminal: its key, its id and a signed client (close it, or let GC)."""

    client: PaymentClient
    private_key: Ed25519PrivateKey
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal_id(self) -> str:
        return self.client.terminal_id

    @property
    def merchant_id(self) -> str | None:
        return self.info.get("merchant_id")

    @property
    def primary_category(self) -> str:
        """A merchant's primary category (the purpose its payments default to)."""
        return str(self.info["merchant"]["categories"][0])

    @property
    def key_fingerprint(self) -> bytes:
        """The fingerprint its hello record carries (what a tap claims)."""
        return crypto.key_fingerprint(crypto.public_key_bytes(self.private_key))


def register_terminal(
    url: str,
    role: str = "user",
    *,
    label: str | None = None,
    merchant: Mapping[str, Any] | None = None,
    http: httpx.Client | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Terminal:
    """Create a key pair, register it with ``role`` and return the signed client.

    Merchants get :data:`DEFAULT_MERCHANT` details unless ``merchant`` says otherwise (a
    ``category`` given there replaces the default ``categories``).
    """
    key = crypto.generate_terminal_key()
    if role == "merchant":
        merchant = {**DEFAULT_MERCHANT, **(merchant or {})}
        if "category" in merchant:
            merchant.pop("categories")
    client, info = PaymentClient.register_terminal(
        url,
        key,
        role=role,
        label=label or f"{role}-{secrets.token_hex(3)}",
        merchant=merchant,
        http=http,
        transport=transport,
    )
    return Terminal(client, key, info)


#: Tables whose rows a declined or refused request must leave untouched.
STATE_TABLES = (
    "funding_sources",
    "grants",
    "ledger_entries",
    "idempotency_keys",
    "payments",
    "payment_shares",
    "refunds",
    "challenges",
    "bills",
    "deliveries",
)


def state_snapshot(tx: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of :data:`STATE_TABLES`, sorted: compare before/after to prove "no change".

    Use ``server.query(state_snapshot)`` for a process, or ``db.run(state_snapshot)``.
    """
    return {
        table: sorted(tuple(row) for row in tx.all(f"SELECT * FROM {table}"))
        for table in STATE_TABLES
    }


@dataclass
class PaymentScene:
    """An owner with a funding source, a grant for a target, and a merchant: ready to pay.

    ``pay()`` builds and signs the means the way a target terminal would and posts the
    merchant's payment request; everything can be overridden to provoke a decline.
    """

    owner: Terminal
    target: Terminal
    merchant: Terminal
    source: dict[str, Any]
    grant: dict[str, Any]
    auth_code: bytes
    currency: str = "KRW"

    @property
    def grant_id(self) -> str:
        return str(self.grant["grant_id"])

    @property
    def bill_id(self) -> str | None:
        """The bill the scene's grant is a share of (``payment_scene(bill=...)``), if any."""
        bill_id = self.grant["bill_id"]
        return None if bill_id is None else str(bill_id)

    def another_grant(self, **rights: Any) -> PaymentScene:
        """This scene with a further grant (``rights`` as for issue_grant) on the same source
        for the same target."""
        issued = self.owner.client.issue_grant(
            self.source["source_id"], [self.target.terminal_id], currency=self.currency, **rights
        )
        return replace(self, grant=issued["grant"], auth_code=crypto.b64d(issued["auth_code"]))

    def usage_auth(self, presenting: Terminal | None = None) -> bytes:
        presenting = presenting or self.target
        return crypto.usage_auth(
            self.auth_code, self.grant_id, self.owner.terminal_id, presenting.terminal_id
        )

    def handoff(self, to: Terminal | None = None, **changes: Any) -> bytes:
        """The NDEF message a tap hands over for this grant, bound to ``to`` (default: the
        target), as ``user send`` sends it through the server; ``changes`` alter its fields."""
        to = to or self.target
        grant, rights = self.grant, self.grant["rights"]
        fields: dict[str, Any] = {
            "grant_id": self.grant_id,
            "virtual_card_number": grant["virtual_card_number"],
            "issuing_terminal": self.owner.terminal_id,
            "allowed_terminal": to.terminal_id,
            "usage_auth": self.usage_auth(to),
            "currency": grant["currency"],
            "amount_cap": rights["amount_cap"],
            "remaining_amount": grant["remaining_amount"],
            "max_uses": rights["max_uses"],
        }
        return encode_message([GrantRecord(**(fields | changes))])

    def signed_means(
        self, amount: int, *, merchant: Terminal | None = None
    ) -> tuple[bytes, dict[str, Any]]:
        """A fresh challenge and the target's means paying ``amount`` with this grant, signed
        (for the merchant's primary category)."""
        challenge = secrets.token_bytes(16)
        merchant = merchant or self.merchant
        means = build_signed_means(
            self.target,
            merchant=merchant,
            challenge=challenge,
            amount=amount,
            currency=self.currency,
            purpose=merchant.primary_category,
            grants=[(self.grant_id, self.usage_auth(), amount)],
        )
        return challenge, means

    def payment_body(self, amount: int, *, merchant: Terminal | None = None) -> dict[str, Any]:
        """The merchant's POST /v1/payments body for :meth:`signed_means` (optional fields
        left out), as the API sees it."""
        challenge, means = self.signed_means(amount, merchant=merchant)
        return {
            "amount": amount,
            "currency": self.currency,
            "challenge": crypto.b64e(challenge),
            "means": means,
        }

    def pay(
        self,
        amount: int,
        *,
        grants: list[tuple[str, bytes, int]] | None = None,
        presenter: Terminal | None = None,
        challenge: bytes | None = None,
        idempotency_key: str | None = None,
        own_source_id: str | None = None,
        own_amount: int | None = None,
        posted: Mapping[str, Any] | None = None,
        **request: Any,
    ) -> dict[str, Any]:
        """The merchant asks the server to charge ``amount``, with the means the target makes
        (:func:`signed_means`): one share of the scene's grant unless ``grants`` says otherwise.
        The target signs the request's ``purpose`` (default: the merchant's primary category).

        ``posted``: fields of the means' JSON to set after the target made them, for requests
        no terminal sends (an own source left for the server to work out, an id or usage-auth
        no record holds); the means are then signed over what the server checks
        (:func:`signed_as_posted`).
        """
        presenter = presenter or self.target
        challenge = challenge or secrets.token_bytes(16)
        if grants is None:
            grants = [(self.grant_id, self.usage_auth(presenter), amount)]
        means = build_signed_means(
            presenter,
            merchant=self.merchant,
            challenge=challenge,
            amount=amount,
            currency=request.get("currency", self.currency),
            purpose=request.get("purpose") or self.merchant.primary_category,
            grants=grants,
            own_source_id=own_source_id,
            own_amount=own_amount,
            bill_id=request.get("bill_id"),
            split_mode=request.get("split_mode", "exact"),
        )
        request.setdefault("currency", self.currency)
        if posted is not None:
            body = {"amount": amount, "challenge": crypto.b64e(challenge), **request}
            merchant_id = str(self.merchant.merchant_id)
            purpose = request.get("purpose") or self.merchant.primary_category
            means = signed_as_posted(
                presenter.private_key, merchant_id, purpose, body, {**means, **posted}
            )
        return self.merchant.client.authorize_payment(
            amount=amount,
            challenge=challenge,
            means=means,
            idempotency_key=idempotency_key,
            **request,
        )


def signed_means(
    key: Ed25519PrivateKey,
    *,
    presenting_terminal: str,
    merchant_id: str,
    challenge: bytes,
    amount: int,
    currency: str,
    purpose: str,
    grants: Sequence[tuple[str, bytes, int]] = (),
    own_source_id: str | None = None,
    own_amount: int | None = None,
    bill_id: str | None = None,
    split_mode: str = "exact",
) -> dict[str, Any]:
    """The API ``means`` of a payment, made the way real terminals make it: the target's
    :class:`MeansRecord` answering the merchant's :class:`ChallengeRecord` (``challenge``:
    its nonce), signed with ``key`` over the records' presentation, then turned into JSON by
    the merchant's own :func:`~nfcpay.terminals.merchant.payment_request`.

    ``grants`` holds (grant id, usage-auth bytes, share amount) per grant. ``purpose``,
    ``bill_id`` and ``split_mode`` must be the ones the payment request carries (its purpose,
    or the merchant's primary category): the signature binds them.
    The means must be ones a terminal can send (a :class:`MeansRecord` refuses the rest).
    """
    asked = ChallengeRecord(
        merchant_id=merchant_id, currency=currency, amount=amount, nonce=challenge, purpose=purpose
    )
    unsigned = MeansRecord(
        presenting_terminal=presenting_terminal,
        currency=currency,
        grants=tuple(
            PresentedGrant(grant_id=gid, amount=share, usage_auth=usage_auth)
            for gid, usage_auth, share in grants
        ),
        own_source_id=own_source_id,
        own_amount=own_amount or 0,
        signature=bytes(64),
        bill_id=bill_id,
        split_mode=SplitMode(split_mode),
    )
    means = presentation.signed(asked, unsigned, key)
    return dict(payment_request(asked, means)["means"])


def build_signed_means(
    presenter: Terminal, *, merchant: Terminal, **payment: Any
) -> dict[str, Any]:
    """:func:`signed_means` by registered terminal ``presenter`` for ``merchant``'s counter
    (``purpose``: the merchant's primary category unless ``payment`` names one)."""
    payment.setdefault("purpose", merchant.primary_category)
    return signed_means(
        presenter.private_key,
        presenting_terminal=presenter.terminal_id,
        merchant_id=str(merchant.merchant_id),
        **payment,
    )


def signed_as_posted(
    key: Ed25519PrivateKey,
    merchant_id: str,
    purpose: str,
    body: Mapping[str, Any],
    means: Mapping[str, Any],
) -> dict[str, Any]:
    """``means`` of merchant ``merchant_id``'s request ``body`` for ``purpose``, signed with
    ``key`` over what the server checks (:func:`nfcpay.server.services.rules.presentation`)
    rather than over records: for means no terminal sends, as an API client other than the
    terminals signs. Means the server's schema refuses are returned unchanged: the server
    refuses them before it looks at any signature."""
    try:
        parsed = PaymentIn.model_validate({**body, "means": means})
    except ValidationError:
        return dict(means)
    signature = key.sign(rules.presentation(parsed, merchant_id, purpose).message())
    return {**means, "signature": crypto.b64e(signature)}


def payment_scene(
    url: str,
    *,
    http: httpx.Client | None = None,
    transport: httpx.BaseTransport | None = None,
    source: Mapping[str, Any] | None = None,
    merchant: Mapping[str, str] | None = None,
    currency: str = "KRW",
    bill: Mapping[str, Any] | None = None,
    **rights: Any,
) -> PaymentScene:
    """Register owner (user), target and merchant terminals, give the owner a funding source
    (default: a card with limit 100,000) and issue a grant for the target.

    ``source`` picks the source: ``{"kind": "wallet", "balance": 500}`` or card fields.
    ``bill`` (``{"total": 1_000}``, optionally ``"mode"``): the target opens a group bill
    first and the grant is a member's share of it (:attr:`PaymentScene.bill_id`).
    ``rights`` go to :meth:`PaymentClient.issue_grant` (default ``amount_cap=50_000``).
    """
    owner = register_terminal(url, "user", http=http, transport=transport)
    target = register_terminal(url, "target", http=http, transport=transport)
    shop = register_terminal(url, "merchant", merchant=merchant, http=http, transport=transport)
    spec = dict(source or {"kind": "card"})
    kind = spec.pop("kind")
    if kind == "card":
        card = {"number": "4111111111111111", "expiry": "12/39", "limit": 100_000, **spec}
        src = owner.client.add_card(currency=currency, **card)
    elif kind == "wallet":
        src = owner.client.add_wallet(spec.get("balance", 100_000), currency)
    else:
        src = owner.client.add_bank(spec.get("balance", 100_000), currency)
    rights.setdefault("amount_cap", 50_000)
    if bill is not None:
        rights["bill_id"] = target.client.open_bill(currency=currency, **bill)["bill_id"]
    issued = owner.client.issue_grant(
        src["source_id"], [target.terminal_id], currency=currency, **rights
    )
    return PaymentScene(
        owner, target, shop, src, issued["grant"], crypto.b64d(issued["auth_code"]), currency
    )


def zone_at_noon(now: float | None = None) -> str:
    """A fixed-offset IANA zone (``Etc/GMT-9`` is UTC+9) where it is about noon at ``now``
    (default: this instant), so that no allowance day ends while a test on the real clock
    runs."""
    hours = 12 - datetime.fromtimestamp(time.time() if now is None else now, UTC).hour
    return "Etc/GMT" if hours == 0 else f"Etc/GMT{-hours:+d}"
