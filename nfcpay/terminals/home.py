"""A terminal's own state directory: identity, private key, received grants, receipts.

Layout (all JSON but the key)::

    <home>/terminal.json        terminal id, role, label, server URL, currency, merchant id
    <home>/terminal.key         32-byte Ed25519 private key, mode 0600
    <home>/grants/<id>.json     grants this terminal holds (target role), with usage-auth
    <home>/receipts/<id>.json   payment results this terminal saw
    <home>/bills/<id>.json      group bills being collected (collector role)
    <home>/names/<id>.json      the names the server told of the other parties

Every write goes to a temporary file in the same directory, is fsynced and then renamed over
the old file, so a crash leaves either the old or the new content, never half of either.
Anything unreadable is reported as a :class:`~nfcpay.errors.ConfigError` naming the file and
what to do, rather than a stack trace.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nfcpay import crypto
from nfcpay.errors import ConfigError

ROLES = ("user", "target", "merchant")
#: The collections a home keeps, one JSON file an item.
KINDS = ("grants", "receipts", "bills", "refunds", "names")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,80}$")


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a raw key file, refusing one that other users could read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConfigError(f"no key file at {path}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"key file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"fix with: chmod 600 {path}"
        )
    return crypto.private_key_from_bytes(path.read_bytes())


@dataclass(frozen=True)
class Identity:
    """Who this terminal is, as registered with the server."""

    terminal_id: str
    role: str
    label: str
    server_url: str
    currency: str
    merchant_id: str | None = None
    #: A merchant's categories as last registered or changed here, primary first (None in a
    #: home made before merchants had several: asked from the server when needed).
    categories: list[str] | None = None
    #: The IANA zone this terminal's grants count their allowances in (None in a home made
    #: before allowances: the CLI then takes the machine's zone).
    time_zone: str | None = None


class TerminalHome:
    """One terminal's state directory (``--home`` / ``NFCPAY_HOME``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # --- identity -------------------------------------------------------------------------

    @property
    def _identity_file(self) -> Path:
        return self.path / "terminal.json"

    @property
    def _key_file(self) -> Path:
        return self.path / "terminal.key"

    def exists(self) -> bool:
        return self._identity_file.exists()

    def create_key(self) -> Ed25519PrivateKey:
        """Make a new private key, refusing to overwrite an initialised terminal."""
        if self.exists():
            raise ConfigError(
                f"{self.path} already holds terminal {self.identity().terminal_id}; "
                "use another --home for another terminal"
            )
        key = crypto.generate_terminal_key()
        atomic_write(self._key_file, crypto.private_key_bytes(key))
        return key

    def save_identity(self, identity: Identity) -> None:
        self._write_json(self._identity_file, asdict(identity))

    def identity(self) -> Identity:
        if not self.exists():
            raise ConfigError(
                f"no terminal in {self.path}: run `nfcpay --home {self.path} terminal init` first"
            )
        data = self._read_json(self._identity_file)
        try:
            return Identity(**data)
        except TypeError as exc:
            raise self._corrupt(self._identity_file, f"unexpected fields ({exc})") from None

    def private_key(self) -> Ed25519PrivateKey:
        try:
            return read_private_key(self._key_file)
        except ConfigError as exc:
            if not self._key_file.exists():
                raise self._corrupt(self._key_file, "the private key is missing") from None
            raise exc

    def require_role(self, *roles: str) -> Identity:
        """This terminal's identity, if its role is one of ``roles``."""
        identity = self.identity()
        if identity.role not in roles:
            wanted = " or ".join(roles)
            raise ConfigError(
                f"terminal {identity.terminal_id} in {self.path} is a {identity.role} terminal; "
                f"this command needs a {wanted} terminal (use --home to pick another)"
            )
        return identity

    # --- collections: grants, receipts, bills, refunds, names ------------------------------

    def put(self, kind: str, item_id: str, data: dict[str, Any]) -> None:
        self._write_json(self._item_path(kind, item_id), data)

    def get(self, kind: str, item_id: str) -> dict[str, Any]:
        path = self._item_path(kind, item_id)
        if not path.exists():
            raise ConfigError(f"no {kind[:-1]} {item_id} in {self.path}")
        return self._read_json(path)

    def has(self, kind: str, item_id: str) -> bool:
        return self._item_path(kind, item_id).exists()

    def delete(self, kind: str, item_id: str) -> None:
        self._item_path(kind, item_id).unlink(missing_ok=True)

    def items(self, kind: str) -> Iterator[dict[str, Any]]:
        folder = self.path / kind
        if folder.is_dir():
            for path in sorted(folder.glob("*.json")):
                yield self._read_json(path)

    def _item_path(self, kind: str, item_id: str) -> Path:
        if kind not in KINDS or not _SAFE_NAME.match(item_id):
            raise ValueError(f"bad item {kind}/{item_id}")
        return self.path / kind / f"{item_id}.json"

    # --- JSON files ----------------------------------------------------------------------------

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode())

    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._corrupt(path, str(exc)) from None
        if not isinstance(data, dict):
            raise self._corrupt(path, "not a JSON object")
        return data

    def _corrupt(self, path: Path, why: str) -> ConfigError:
        return ConfigError(
            f"home directory {self.path} is damaged: {path.name}: {why}. "
            f"Move it aside and run `nfcpay --home {self.path} terminal init` again"
        )
