"""Start REAL ``nfcpay server run`` processes for tests, and terminals that talk to them.

Typical use::

    with running_server(tmp_path) as server:                 # SQLite in tmp_path
        alice = register_terminal(server.url, role="user")
        shop = register_terminal(server.url, role="merchant")
        ...
        assert server.audit() == []                          # ledger and balances agree

PostgreSQL: ``with postgres_schema(base_url) as db_url:`` gives a fresh, uniquely named
schema (dropped afterwards); pass ``db_url=`` to :func:`start_server`. Several processes can
share one database and data directory (the master key): ``start_servers(3, data_dir, db_url)``.

Each server binds port 0 and the helper reads the URL it prints, so there is no free-port
race. Its stdout and stderr go to ``<data_dir>/server-<n>.log`` (see :meth:`ServerProcess.log`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nfcpay import crypto
from nfcpay.client import PaymentClient

READY_TIMEOUT_S = 30.0
_URL_RE = re.compile(r"listening on (http://\S+)")
DEFAULT_MERCHANT = {
    "name": "Test Bistro",
    "category": "5812",
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

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / 'nfcpay.sqlite3'}"

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def audit(self) -> list[str]:
        """Run :func:`nfcpay.server.ledger.audit` on the server's database (empty = sound)."""
        return self.query(_audit)

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
    db_url: str | None = None,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    log_name: str | None = None,
) -> ServerProcess:
    """Start ``python -m nfcpay server run`` on a free port and wait until /v1/health answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / (log_name or f"server-{secrets.token_hex(3)}.log")
    command = [sys.executable, "-m", "nfcpay", "server", "run"]
    command += ["--data-dir", str(data_dir), "--host", host, "--port", "0"]
    if db_url:
        command += ["--db", db_url]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    server = ServerProcess("", data_dir, db_url, process, log_path)
    try:
        server.url = _wait_ready(server, ready_timeout)
    except BaseException:
        server.stop()
        raise
    return server


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


def start_servers(count: int, data_dir: Path, db_url: str | None = None) -> list[ServerProcess]:
    """``count`` processes sharing one data directory (master key) and database."""
    servers: list[ServerProcess] = []
    try:
        for _ in range(count):
            servers.append(start_server(data_dir, db_url=db_url))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


@contextlib.contextmanager
def running_server(data_dir: Path, *, db_url: str | None = None) -> Iterator[ServerProcess]:
    server = start_server(data_dir, db_url=db_url)
    try:
        yield server
    finally:
        server.stop()


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


def register_terminal(
    url: str,
    role: str = "user",
    *,
    label: str | None = None,
    merchant: Mapping[str, str] | None = None,
    http: httpx.Client | None = None,
) -> Terminal:
    """Create a key pair, register it with ``role`` and return the signed client.

    Merchants get :data:`DEFAULT_MERCHANT` details unless ``merchant`` says otherwise.
    """
    key = crypto.generate_terminal_key()
    if role == "merchant":
        merchant = {**DEFAULT_MERCHANT, **(merchant or {})}
    client, info = PaymentClient.register_terminal(
        url,
        key,
        role=role,
        label=label or f"{role}-{secrets.token_hex(3)}",
        merchant=merchant,
        http=http,
    )
    return Terminal(client, key, info)
