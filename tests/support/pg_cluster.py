"""A PostgreSQL primary and a synchronous standby of our own, built from the machine's
PostgreSQL binaries (``initdb``, ``pg_basebackup``, ``pg_ctl``), for the failover test.

The standby is named in the primary's ``synchronous_standby_names`` and the primary runs
``synchronous_commit = on``: a COMMIT returns only once the standby has flushed its WAL, so
nothing a client was told is lost when the standby is promoted. (Without the name, commits are
asynchronous and acknowledged payments can vanish at promotion.) The standby itself names no
synchronous standby: promoted, it must not wait for one it does not have.

``initdb`` refuses to run as root: when the test runs as root (CI does), every PostgreSQL
binary runs as the ``postgres`` user through ``runuser``, in a temporary directory it owns.
Both nodes listen on free ports of 127.0.0.1 only, never on a Unix socket.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

#: Where Debian and Ubuntu put each PostgreSQL version's server binaries.
BIN_GLOB = "/usr/lib/postgresql/*/bin"
NEEDED = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
STANDBY_NAME = "nfcpay_standby"
READY_TIMEOUT_S = 60


def find_bin_dir() -> Path | None:
    """The newest PostgreSQL version's bin directory holding every binary needed, or None."""
    found = [Path(p) for p in glob.glob(BIN_GLOB)]
    complete = [p for p in found if all((p / name).exists() for name in NEEDED)]
    return max(complete, key=lambda p: _version(p.parent.name), default=None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def why_unavailable() -> str | None:
    """Why the cluster cannot be built here (for a skip), or None if it can."""
    if find_bin_dir() is None:
        return (
            f"no PostgreSQL server binaries ({', '.join(NEEDED)}) under {BIN_GLOB}: "
            "install the postgresql package (.ci/run does)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (needed to run initdb as postgres)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Node:
    """One PostgreSQL server: its data directory, port and log."""

    name: str
    data_dir: Path
    port: int
    bin_dir: Path

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def pg_ctl(self, *args: str) -> None:
        _run(self.bin_dir / "pg_ctl", "-D", str(self.data_dir), *args)

    def start(self) -> None:
        """Start the node; a port another process took since it was picked (the probe's
        port is free only until it is closed) is swapped for a new one, up to twice. Any
        other failure is raised with the end of the node's own log, which says why."""
        for attempt in range(3):
            seen = len(self.log())
            try:
                self.pg_ctl("start", "-w", "-t", str(READY_TIMEOUT_S), "-l", str(self.log_path))
                return
            except RuntimeError as error:
                said = self.log()[seen:]
                if "Address already in use" not in said or attempt == 2:
                    raise RuntimeError(
                        f"{error}\n--- {self.name}'s log ---\n{said[-3000:]}"
                    ) from None
            self.port = _free_port()
            _append_settings(self, {"port": str(self.port)})

    def promote(self) -> None:
        """Make this standby a primary and wait until it accepts writes (what an operator or
        a failover manager does; nfcpay never promotes)."""
        self.pg_ctl("promote", "-w", "-t", str(READY_TIMEOUT_S))

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once, as when the machine dies: no
        shutdown checkpoint, no goodbye to clients (``pg_ctl start`` puts them in a process
        group of their own)."""
        pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        os.killpg(pid, signal.SIGKILL)

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, FileNotFoundError):
            if (self.data_dir / "postmaster.pid").exists():
                self.pg_ctl("stop", "-m", "immediate", "-w")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sync_state(self) -> list[tuple[str, str]]:
        """(application_name, sync_state) of each standby streaming from this node."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT application_name, sync_state FROM pg_stat_replication"
            ).fetchall()
        return [(str(name), str(state)) for name, state in rows]


@dataclass
class Pair:
    """A primary and its synchronous standby."""

    primary: Node
    standby: Node

    def url(self, **params: str) -> str:
        """The multi-host URL servers use: both nodes, first the one that accepts writes."""
        params = {"target_session_attrs": "read-write", **params}
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return (
            f"postgresql://postgres@127.0.0.1:{self.primary.port},"
            f"127.0.0.1:{self.standby.port}/postgres?{query}"
        )

    def logs(self) -> str:
        nodes = (self.primary, self.standby)
        return "\n".join(f"--- {node.name} ---\n{node.log()[-4000:]}" for node in nodes)


@contextlib.contextmanager
def primary_and_sync_standby() -> Iterator[Pair]:
    """Build, start and finally remove a primary with one synchronous standby."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError(why_unavailable())
    root = Path(tempfile.mkdtemp(prefix="nfcpay-failover-"))
    _give_to_postgres(root)
    primary = Node("primary", root / "primary", _free_port(), bin_dir)
    standby = Node("standby", root / "standby", _free_port(), bin_dir)
    try:
        _run(
            bin_dir / "initdb",
            *("-D", str(primary.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
            "--no-sync",
        )
        _configure(primary, synchronous_standby_names=f"'{STANDBY_NAME}'")
        primary.start()
        _run(
            bin_dir / "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(standby.data_dir),
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        _configure(
            standby,
            synchronous_standby_names="''",
            wal_retrieve_retry_interval="100ms",
            primary_conninfo=(
                f"'host=127.0.0.1 port={primary.port} user=postgres "
                f"application_name={STANDBY_NAME}'"
            ),
        )
        _write(standby.data_dir / "standby.signal", "")
        standby.start()
        _wait_for_sync(primary)
        yield Pair(primary, standby)
    finally:
        for node in (standby, primary):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def _configure(node: Node, **settings: str) -> None:
    """Append settings to the node's postgresql.conf (a later line wins over an earlier one)."""
    common = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(node.port),
        "unix_socket_directories": "''",
        "synchronous_commit": "on",
        "max_connections": "60",
        "shared_buffers": "32MB",
        "hot_standby": "on",
    }
    _append_settings(node, {**common, **settings})


def _append_settings(node: Node, settings: dict[str, str]) -> None:
    lines = [f"{k} = {v}" for k, v in settings.items()]
    conf = node.data_dir / "postgresql.conf"
    _write(conf, conf.read_text() + "\n# nfcpay failover test\n" + "\n".join(lines) + "\n")


def _wait_for_sync(primary: Node) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (STANDBY_NAME, "sync") not in primary.sync_state():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the standby never became synchronous: {primary.sync_state()}")
        time.sleep(0.1)


def _as_postgres() -> Sequence[str]:
    return ("runuser", "-u", "postgres", "--") if os.geteuid() == 0 else ()


def _run(*command: str | Path) -> None:
    done = subprocess.run(
        [*_as_postgres(), *map(str, command)],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=READY_TIMEOUT_S * 2,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr or done.stdout}"
        )


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o700)


def _write(path: Path, text: str) -> None:
    """Write a file in a node's data directory, owned by whoever runs the node."""
    path.write_text(text)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
