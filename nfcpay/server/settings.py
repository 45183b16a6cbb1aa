"""Server settings and the data directory (database file and master key).

``nfcpay server init`` creates the data directory and a random 32-byte master key (file mode
0600) that encrypts card numbers and auth codes at rest. A key file anyone else can read is
refused: a leaked key would unmask every stored card.

The one TEST-ONLY setting, :attr:`ServerSettings.test_clock_file`, lets a test move a running
server process's time forward instead of sleeping; a production server refuses it (see
:meth:`ServerSettings.checked_test_clock`).
"""

from __future__ import annotations

import ipaddress
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
#: Environment variable behind ``nfcpay server run --forwarded-allow-ips``.
FORWARDED_ALLOW_IPS_ENV = "NFCPAY_SERVER_FORWARDED_ALLOW_IPS"
#: TEST-ONLY: the one way to give a server a test clock (:attr:`ServerSettings.test_clock_file`).
TEST_CLOCK_ENV = "NFCPAY_SERVER_TEST_CLOCK"


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$NFCPAY_SERVER_DATA`` or ``~/.nfcpay-server``."""
    configured = environ.get("NFCPAY_SERVER_DATA")
    return Path(configured) if configured else Path.home() / ".nfcpay-server"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything ``create_app`` needs. ``db_url`` None means SQLite inside ``data_dir``.

    ``test_clock_file`` is TEST-ONLY. A server started with it refuses to start (ConfigError,
    before it opens its database) unless BOTH hold:

    * it came from the environment variable ``NFCPAY_SERVER_TEST_CLOCK``, which must name the
      same file in the server's own environment (there is no command-line option for it, and
      settings built in code without the variable are refused too); and
    * ``host`` is a literal loopback address (127.0.0.0/8 or ::1; not a name, not 0.0.0.0),
      so the shifted clock is reachable from the machine itself only.

    A production deployment binds a reachable address and has no reason to export a variable
    named TEST_CLOCK, so it cannot run on a shifted clock by accident.
    """

    data_dir: Path
    db_url: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Accepted clock difference between a terminal's request timestamp and the server.
    max_clock_skew_s: int = 300
    #: How long a request waits for a locked SQLite file or a PostgreSQL connection before
    #: it is answered 503 database_unavailable (fail fast instead of piling up requests).
    db_timeout_s: float = 5.0
    #: PostgreSQL connections per server process, each with the thread its transactions run
    #: on; None: twice the CPUs, at most 8 (:func:`.store.postgres.default_pool_size`).
    db_pool_size: int | None = None
    #: Per-terminal, per-process token bucket: sustained requests per second and burst.
    #: A flood guard: far above what one real terminal (or the benchmark's merchant) sends.
    rate_limit_per_s: float = 2000.0
    rate_limit_burst: int = 4000
    #: Failed authentications (bad signature, unknown terminal, stale timestamp) allowed per
    #: (client address, claimed terminal) before further failures get 429: burst, then this
    #: many per second. A request whose signature verifies is never refused for them.
    auth_failure_burst: int = 10
    auth_failure_per_s: float = 0.5
    #: Idempotency keys are kept at least this long (the documented retention period), and
    #: purged by a periodic task that runs every ``min(retention, 60 s)``.
    idempotency_retention_s: float = 24 * 3600.0
    #: Proxies (addresses or networks) whose X-Forwarded-For names the client: the address
    #: the failure throttle and registrations are counted under. Empty: the TCP peer counts,
    #: whatever headers it sends (see :func:`parse_forwarded_allow_ips`).
    forwarded_allow_ips: tuple[str, ...] = ()
    #: TEST-ONLY (refused in production, see above): a file holding a number of seconds that
    #: the server adds to the real time whenever it reads its clock (request timestamps,
    #: rate-limit buckets, nonce pruning, grant validity, idempotency retention and the purge
    #: schedule). The file is read each time, so a test moves a running server's time forward
    #: by rewriting it (whole: write a temporary file and rename it into place).
    test_clock_file: Path | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        """Settings from ``NFCPAY_SERVER_*`` variables (see :data:`TUNING_ENV`; the test
        clock from :data:`TEST_CLOCK_ENV`)."""
        env = os.environ if environ is None else environ
        tuning = {
            name: _positive(env, variable, kind)
            for variable, (name, kind) in TUNING_ENV.items()
            if env.get(variable)
        }
        clock = env.get(TEST_CLOCK_ENV)
        return cls(
            data_dir=default_data_dir(env),
            db_url=env.get("NFCPAY_SERVER_DB") or None,
            host=env.get("NFCPAY_SERVER_HOST", DEFAULT_HOST),
            port=int(env.get("NFCPAY_SERVER_PORT", DEFAULT_PORT)),
            forwarded_allow_ips=parse_forwarded_allow_ips(env.get(FORWARDED_ALLOW_IPS_ENV, "")),
            test_clock_file=Path(clock) if clock else None,
            **tuning,  # type: ignore[arg-type]
        )

    def checked_test_clock(self, environ: Mapping[str, str]) -> Path | None:
        """``test_clock_file`` if the rule in the class docstring allows it, None if unset.

        ``environ`` is the server's environment. Raises :class:`ConfigError` otherwise.
        """
        path = self.test_clock_file
        if path is None:
            return None
        given = environ.get(TEST_CLOCK_ENV)
        if not given or Path(given) != path:
            raise ConfigError(
                f"refusing to start: the test clock ({path}) is a TEST-ONLY setting that is "
                f"taken only from the environment variable {TEST_CLOCK_ENV}"
            )
        if not is_loopback_address(self.host):
            raise ConfigError(
                f"refusing to start: {TEST_CLOCK_ENV} is TEST-ONLY and needs the server to "
                f"bind a loopback address such as 127.0.0.1, not {self.host!r}"
            )
        return path

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir / SQLITE_FILE}"

    @property
    def master_key_path(self) -> Path:
        return self.data_dir / MASTER_KEY_FILE


#: Environment variable → (settings field, type) for the operational knobs.
TUNING_ENV: dict[str, tuple[str, type[int] | type[float]]] = {
    "NFCPAY_SERVER_DB_TIMEOUT": ("db_timeout_s", float),
    "NFCPAY_SERVER_DB_POOL_SIZE": ("db_pool_size", int),
    "NFCPAY_SERVER_RATE_LIMIT": ("rate_limit_per_s", float),
    "NFCPAY_SERVER_RATE_BURST": ("rate_limit_burst", int),
    "NFCPAY_SERVER_AUTH_FAILURE_BURST": ("auth_failure_burst", int),
    "NFCPAY_SERVER_AUTH_FAILURE_RATE": ("auth_failure_per_s", float),
    "NFCPAY_SERVER_IDEMPOTENCY_RETENTION": ("idempotency_retention_s", float),
}


def is_loopback_address(host: str) -> bool:
    """True for a literal loopback address (127.0.0.0/8, ::1); names are not looked up."""
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def parse_forwarded_allow_ips(text: str) -> tuple[str, ...]:
    """The proxies named in ``text`` (comma-separated IP addresses or networks), normalized.

    Only a proxy the operator runs may say who the client is: a client that could name its own
    address in X-Forwarded-For would get a fresh failure budget with every request. So there
    is no wildcard and no host names (a name resolves to whatever DNS says later).
    """
    return tuple(_proxy(item) for item in (part.strip() for part in text.split(",")) if item)


def _proxy(item: str) -> str:
    if item == "*":
        raise ConfigError(
            "forwarded-allow-ips '*' would let every client choose the address it is "
            "counted under: list the proxies' addresses or networks, e.g. 10.0.0.0/24"
        )
    try:
        return str(ipaddress.ip_network(item) if "/" in item else ipaddress.ip_address(item))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(item, strict=False)
    except ValueError:
        raise ConfigError(
            f"forwarded-allow-ips {item!r} is not an IP address or network "
            "(e.g. 10.0.0.5 or 10.0.0.0/24; host names are not looked up)"
        ) from None
    raise ConfigError(f"forwarded-allow-ips {item!r} has host bits set: did you mean {network}?")


def _positive(env: Mapping[str, str], variable: str, kind: type[int] | type[float]) -> float:
    try:
        value = kind(env[variable])
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ConfigError(f"{variable}={env[variable]!r} is not {what}") from None
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
