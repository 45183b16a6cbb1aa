"""The per-user directory for nfcpay's sockets and locks (virtual fields, reader locks).

It lies in the runtime directory the caller names — the entry points pass
``$XDG_RUNTIME_DIR`` (a per-user tmpfs on systemd systems), the operating system's place for
such files, through :func:`runtime_dir_in`; without one it is ``<name>-<uid>`` in the
temporary directory, where another user could have made it first: that is refused. Tests
name a directory of their own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


class RuntimeDirError(OSError):
    """The per-user directory cannot be used safely."""


def runtime_dir_in(environ: Mapping[str, str]) -> Path | None:
    """The runtime directory ``environ`` names (``XDG_RUNTIME_DIR``), if it exists."""
    xdg = environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) if xdg and Path(xdg).is_dir() else None


def private_dir(name: str, runtime_dir: Path | None) -> Path:
    """``name`` in ``runtime_dir`` (None: ``<name>-<uid>`` in the temporary directory),
    created with mode 0700; raises :class:`RuntimeDirError` when another user owns it."""
    if runtime_dir is None:
        path = Path(tempfile.gettempdir()) / f"{name}-{os.getuid()}"
    else:
        path = runtime_dir / name
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise RuntimeDirError(f"{path} belongs to another user: refusing to use it")
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return path
