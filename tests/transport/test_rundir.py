"""Where sockets and locks live: the runtime directory the caller names (the CLI names
``$XDG_RUNTIME_DIR``), else a per-user directory in the temporary directory."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from nfcpay.transport.rundir import RuntimeDirError, private_dir, runtime_dir_in


def test_the_runtime_directory_is_the_one_the_environment_names_if_it_exists(
    tmp_path: Path,
) -> None:
    assert runtime_dir_in({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path
    assert runtime_dir_in({"XDG_RUNTIME_DIR": str(tmp_path / "gone")}) is None
    assert runtime_dir_in({"XDG_RUNTIME_DIR": ""}) is None
    assert runtime_dir_in({}) is None


def test_a_private_directory_is_made_for_this_user_only(tmp_path: Path) -> None:
    made = private_dir("nfcpay-test", tmp_path)
    assert made == tmp_path / "nfcpay-test"
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    made.chmod(0o755)  # opened up by someone: closed again
    assert stat.S_IMODE(private_dir("nfcpay-test", tmp_path).stat().st_mode) == 0o700


def test_without_a_runtime_directory_the_temporary_directory_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert private_dir("nfcpay-test", None) == tmp_path / f"nfcpay-test-{os.getuid()}"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to make a directory another user owns")
def test_a_directory_another_user_made_first_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "nfcpay-test"
    taken.mkdir()
    os.chown(taken, 12345, 12345)
    with pytest.raises(RuntimeDirError, match="belongs to another user"):
        private_dir("nfcpay-test", tmp_path)
