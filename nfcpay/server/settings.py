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
    #: How long a request waits for a locked SQLite file or a PostgreSQL connection before
    #: it is answered 503 database_unavailable (fail fast instead of piling up requests).
    db_timeout_s: float = 5.0
    #: Per-terminal, per-process token bucket: sustained requests per second and burst.
    #: A flood guard: far above what one real terminal (or the benchmark's merchant) sends.
    rate_limit_per_s: float = 2000.0
    rate_limit_burst: int = 4000
    #: Failed authentications (bad signature, unknown terminal, stale timestamp) allowed per
    #: (client address, claimed terminal) before it gets 429: burst, then this many per second.
    auth_failure_burst: int = 10
    auth_failure_per_s: float = 0.5
    #: Idempotency keys are kept at least this long (the documented retention period), and
    #: purged by a periodic task that runs every ``min(retention, 60 s)``.
    idempotency_retention_s: float = 24 * 3600.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``NFCPAY_SERVER_*`` variables (see :data:`TUNING_ENV`)."""
        env = os.environ if environ is None else environ
        tuning = {
            name: _positive(env, variable, kind)
            for variable, (name, kind) in TUNING_ENV.items()
            if env.get(variable)
        }
        return cls(
            data_dir=default_data_dir(env),
            db_url=env.get("NFCPAY_SERVER_DB") or None,
            host=env.get("NFCPAY_SERVER_HOST", DEFAULT_HOST),
            port=int(env.get("NFCPAY_SERVER_PORT", DEFAULT_PORT)),
            **tuning,  # type: ignore[arg-type]
        )

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / SQLITE_FILE}"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / MASTER_KEY_FILE


#: Environment variable → (settings field, type) for the operational knobs.
TUNING_ENV: dict[str, tuple[str, type[int] | type[float]]] = {
    "NFCPAY_SERVER_DB_TIMEOUT": ("db_timeout_s", float),
    "NFCPAY_SERVER_RATE_LIMIT": ("rate_limit_per_s", float),
    "NFCPAY_SERVER_RATE_BURST": ("rate_limit_burst", int),
    "NFCPAY_SERVER_AUTH_FAILURE_BURST": ("auth_failure_burst", int),
    "NFCPAY_SERVER_AUTH_FAILURE_RATE": ("auth_failure_per_s", float),
    "NFCPAY_SERVER_IDEMPOTENCY_RETENTION": ("idempotency_retention_s", float),
}


def _positive(env: Mapping[str, str], variable: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(env[variable])
    except ValueError:
        raise ConfigError(f"{variable}={env[variable]!r} is not a {kind.__name__}") from None
    if value <= 0:
        raise ConfigError(f"{variable} must be positive, not {env[variable]!r}")
    return value


def init_data_dir(data_dir: Path) -> bool:
    """Create ``data_dir`` and its master key if missing. Returns True if a key was created.

    Several servers may start on one data directory at once: the key is written whole to a
    private file first and then linked into place, so another process never reads a key file
    that exists but is not written yet.
    """
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = data_dir / MASTER_KEY_FILE
    if key_path.exists():
        load_master_key(key_path)
        return False
    draft = data_dir / f".{MASTER_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
            handle.flush()
            os.fsync(handle.fileno())
        os.link(draft, key_path)
    except FileExistsError:  # another process linked its key first: use that one
        load_master_key(key_path)
        return False
    finally:
        draft.unlink(missing_ok=True)
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
