from __future__ import annotations

import os
from pathlib import Path

import pytest

from nfcpay import crypto
from nfcpay.errors import ConfigError
from nfcpay.terminals.home import Identity, TerminalHome, atomic_write


def _identity(role: str = "target") -> Identity:
    return Identity("t_abc", role, "phone 010", "http://127.0.0.1:1", "KRW")


def test_identity_and_key_round_trip_with_private_modes(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path / "home")
    key = home.create_key()
    home.save_identity(_identity())
    assert home.identity() == _identity()
    assert crypto.public_key_bytes(home.private_key()) == crypto.public_key_bytes(key)
    assert (tmp_path / "home" / "terminal.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home" / "terminal.json").stat().st_mode & 0o777 == 0o600


def test_create_key_refuses_an_initialised_home(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.create_key()
    home.save_identity(_identity())
    with pytest.raises(ConfigError, match="already holds terminal t_abc"):
        home.create_key()


def test_loose_key_permissions_are_refused(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.create_key()
    home.save_identity(_identity())
    os.chmod(tmp_path / "terminal.key", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        home.private_key()


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"x": 1}'])
def test_corrupt_identity_names_the_file_and_the_fix(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "terminal.json").write_bytes(content)
    with pytest.raises(ConfigError, match=r"damaged: terminal\.json.*terminal init"):
        TerminalHome(tmp_path).identity()


def test_missing_home_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="terminal init"):
        TerminalHome(tmp_path / "nowhere").identity()


def test_missing_key_is_reported_as_damage(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.save_identity(_identity())
    with pytest.raises(ConfigError, match="private key is missing"):
        home.private_key()


def test_wrong_role_is_refused_clearly(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.save_identity(_identity("user"))
    with pytest.raises(ConfigError, match="is a user terminal; this command needs a merchant"):
        home.require_role("merchant")


def test_items_are_stored_listed_and_deleted(tmp_path: Path) -> None:
    home = TerminalHome(tmp_path)
    home.put("grants", "g_1", {"grant_id": "g_1"})
    home.put("grants", "g_2", {"grant_id": "g_2"})
    assert [g["grant_id"] for g in home.items("grants")] == ["g_1", "g_2"]
    assert home.get("grants", "g_1") == {"grant_id": "g_1"}
    home.delete("grants", "g_1")
    with pytest.raises(ConfigError, match="no grant g_1"):
        home.get("grants", "g_1")
    with pytest.raises(ValueError):
        home.put("grants", "../escape", {})


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
