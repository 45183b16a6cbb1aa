"""Server settings and the data directory (database file and master key).

``nfcpay server init`` creates the data directory and a random 32-byte master key (file mode
0600) that encrypts card numbers and auth codes at rest. A key file anyone else can read is
refused: a leaked key would unmask every stored card.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nfcpay.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8750
MASTER_KEY_FILE = "master.key"
SQLITE_FILE = "nfcpay.sqlite3"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$NFCPAY_SERVER_DATA`` or ``~/.nfcpay-server``."""
    configured = environ.get("NFCPAY_SERVER_DATA")
    return Path(configured) if configured else Path.home() / ".nfcpay-server"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything ``create_app`` needs. ``db_url`` None means SQLite inside ``data_dir``."""

    data_dir: Path
    db_url: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Accepted clock difference between a terminal's request timestamp and the server.
    max_clock_skew_s: int = 300

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        return cls(
            data_dir=default_data_dir(env),
            db_url=env.get("NFCPAY_SERVER_DB") or None,
            host=env.get("NFCPAY_SERVER_HOST", DEFAULT_HOST),
            port=int(env.get("NFCPAY_SERVER_PORT", DEFAULT_PORT)),
        )

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / SQLITE_FILE}"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / MASTER_KEY_FILE


def init_data_dir(data_dir: Path) -> bool:
    """Create ``data_dir`` and its master key if missing. Returns True if a key was created."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = data_dir / MASTER_KEY_FILE
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        load_master_key(key_path)
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def load_master_key(path: Path) -> bytes:
    """Read the 32-byte master key, refusing a missing, malformed or group/world-readable file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"no master key at {path}: run `nfcpay server init --data-dir {path.parent}`"
        ) from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"master key {path} is accessible by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}): run `chmod 600 {path}`"
        )
    key = path.read_bytes()
    if len(key) != 32:
        raise ConfigError(f"master key {path} must hold exactly 32 bytes, not {len(key)}")
    return key
