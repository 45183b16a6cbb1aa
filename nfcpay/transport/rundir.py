"""The per-user directory for nfcpay's sockets and locks (virtual fields, reader locks).

It lies in ``$XDG_RUNTIME_DIR`` (a per-user tmpfs on systemd systems), the operating
system's place for such files, read here as :mod:`tempfile` reads ``TMPDIR``; without one it
is ``<name>-<uid>`` in the temporary directory, where another user could have made it first:
that is refused. Tests point ``XDG_RUNTIME_DIR`` at a directory of their own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class RuntimeDirError(OSError):
    """The per-user directory cannot be used safely."""


def private_dir(name: str, runtime_dir: Path | None = None) -> Path:
    """``name`` in the user's runtime directory (``runtime_dir`` or ``$XDG_RUNTIME_DIR``),
    created with mode 0700; raises :class:`RuntimeDirError` when another user owns it."""
    if runtime_dir is None:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        runtime_dir = Path(xdg) if xdg and Path(xdg).is_dir() else None
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
