"""``nfcpay server init|run``: the bundled payment server (uvicorn is imported only here)."""

from __future__ import annotations

import dataclasses
import os
import socket
import ssl
from pathlib import Path

import click

from nfcpay.cli.output import CliContext
from nfcpay.errors import ConfigError
from nfcpay.server.settings import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    FORWARDED_ALLOW_IPS_ENV,
    ServerSettings,
    default_data_dir,
    init_data_dir,
    parse_forwarded_allow_ips,
)

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Server data directory [env NFCPAY_SERVER_DATA; default ~/.nfcpay-server].",
)


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one, which the caller then prints).

    The socket is made with proto=IPPROTO_TCP on purpose: asyncio sets TCP_NODELAY only on
    such sockets, and without it every response waits ~40 ms for a delayed ACK.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


def _check_tls(cert: Path | None, key: Path | None) -> None:
    """Load the certificate and key once, so a bad pair fails before anything is served (or
    any worker forked). Raises :class:`ConfigError`."""
    if cert is None or key is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError included
        raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from None


def _proxies(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    try:
        return parse_forwarded_allow_ips(value or "")
    except ConfigError as exc:
        raise click.BadParameter(str(exc).removeprefix("forwarded-allow-ips ")) from None


def _data_dir(given: Path | None) -> Path:
    return given or default_data_dir(os.environ)


@click.group()
def server() -> None:
    """Run the bundled payment server (sandbox issuer)."""


@server.command()
@_DATA_DIR
@click.pass_obj
def init(obj: CliContext, data_dir: Path | None) -> None:
    """Create the data directory and its 0600 master key."""
    path = _data_dir(data_dir)
    created = init_data_dir(path)
    human = f"Created {path} with a new master key." if created else f"{path} is already set up."
    obj.emit({"ok": True, "data_dir": str(path), "created": created}, human)


@server.command()
@_DATA_DIR
@click.option("--db", "db_url", envvar="NFCPAY_SERVER_DB", help="postgresql://… (default SQLite).")
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="NFCPAY_SERVER_TLS_CERT",
    help="Serve HTTPS with this PEM certificate (chain) [env NFCPAY_SERVER_TLS_CERT].",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="NFCPAY_SERVER_TLS_KEY",
    help="The PEM private key of --tls-cert [env NFCPAY_SERVER_TLS_KEY].",
)
@click.option(
    "--forwarded-allow-ips",
    "proxies",
    metavar="ADDRESSES",
    envvar=FORWARDED_ALLOW_IPS_ENV,
    callback=_proxies,
    help=(
        "Addresses or networks of your own proxies or load balancers, comma-separated "
        "(e.g. 10.0.0.2,10.0.1.0/24). A request arriving from one of them is counted under the "
        "client address its X-Forwarded-For names (rate limits, failed signatures). Default: "
        "none, so the connecting address counts and X-Forwarded-For is ignored. Never list an "
        f"address clients connect from directly [env {FORWARDED_ALLOW_IPS_ENV}]."
    ),
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="NFCPAY_SERVER_WORKERS",
    help=(
        "Server processes sharing the port (PostgreSQL only). One process uses about one "
        "core: give about one per core. Rate limits count per process "
        "[env NFCPAY_SERVER_WORKERS]."
    ),
)
@click.pass_obj
def run(
    obj: CliContext,
    data_dir: Path | None,
    db_url: str | None,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    proxies: tuple[str, ...],
    workers: int,
) -> None:
    """Serve the HTTP API until interrupted.

    Operational limits come from the environment: NFCPAY_SERVER_DB_TIMEOUT (s before 503),
    NFCPAY_SERVER_DB_POOL_SIZE (PostgreSQL connections per process, default twice the CPUs,
    at most 8), NFCPAY_SERVER_RATE_LIMIT / _RATE_BURST (requests per terminal),
    NFCPAY_SERVER_AUTH_FAILURE_BURST / _RATE, NFCPAY_SERVER_IDEMPOTENCY_RETENTION (s, default
    86400).
    """
    import uvicorn

    from nfcpay.server.app import create_app, migrate_database, settle_garbage_collector
    from nfcpay.server.workers import serve_in_workers

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if workers > 1 and not db_url:
        raise click.UsageError(
            "--workers needs --db postgresql://…: SQLite has one writer, and more processes "
            "only queue for its lock"
        )
    path = _data_dir(data_dir)
    if init_data_dir(path):
        click.echo(f"Initialized a new data directory {path} (master key created).", err=True)
    settings = dataclasses.replace(
        ServerSettings.from_env(),
        data_dir=path,
        db_url=db_url,
        host=host,
        port=port,
        forwarded_allow_ips=proxies,
    )

    _check_tls(tls_cert, tls_key)

    def uvicorn_server() -> uvicorn.Server:
        config = uvicorn.Config(
            create_app(settings, environ=os.environ),
            log_level="info" if obj.verbose else "warning",
            access_log=False,
            ssl_certfile=tls_cert,
            ssl_keyfile=tls_key,
            # Explicit: uvicorn's own default believes X-Forwarded-For from 127.0.0.1 (or
            # $FORWARDED_ALLOW_IPS), so any local client could pick the address it is counted
            # under.
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=list(settings.forwarded_allow_ips),
        )
        config.load()
        settle_garbage_collector()  # after the app is built: its objects are frozen
        return uvicorn.Server(config)

    if workers == 1:
        server_now = uvicorn_server()
    else:  # each worker opens the database itself and finds the schema up to date; an
        # unreachable database fails here, once and plainly, not in every worker
        migrate_database(settings)
    sock = _listen(host, port)
    bound_port = sock.getsockname()[1]
    database = (
        "PostgreSQL" if db_url else f"SQLite {settings.database_url.removeprefix('sqlite:///')}"
    )
    scheme = "https" if tls_cert else "http"
    processes = f", {workers} worker processes" if workers > 1 else ""
    click.echo(f"nfcpay server listening on {scheme}://{host}:{bound_port} ({database}{processes})")
    if workers == 1:
        server_now.run(sockets=[sock])
        return
    status = serve_in_workers(workers, lambda: uvicorn_server().run(sockets=[sock]))
    if status:
        raise SystemExit(status)
