from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from nfcpay.cli import cli
from nfcpay.errors import ConfigError
from nfcpay.server.settings import (
    MASTER_KEY_FILE,
    ServerSettings,
    init_data_dir,
    load_master_key,
)


def test_init_creates_private_key_once(tmp_path: Path) -> None:
    data = tmp_path / "srv"
    assert init_data_dir(data) is True
    key_path = data / MASTER_KEY_FILE
    assert oct(key_path.stat().st_mode & 0o777) == "0o600"
    key = load_master_key(key_path)
    assert len(key) == 32
    assert init_data_dir(data) is False
    assert load_master_key(key_path) == key


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    init_data_dir(tmp_path)
    os.chmod(tmp_path / MASTER_KEY_FILE, mode)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_master_key(tmp_path / MASTER_KEY_FILE)


def test_missing_or_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server init"):
        load_master_key(tmp_path / MASTER_KEY_FILE)
    short = tmp_path / MASTER_KEY_FILE
    short.write_bytes(b"x" * 16)
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="32 bytes"):
        load_master_key(short)


def test_settings_from_env(tmp_path: Path) -> None:
    settings = ServerSettings.from_env(
        {"NFCPAY_SERVER_DATA": str(tmp_path), "NFCPAY_SERVER_PORT": "9999"}
    )
    assert settings.data_dir == tmp_path
    assert settings.port == 9999
    assert settings.database_url == f"sqlite:///{tmp_path / 'nfcpay.sqlite3'}"
    assert ServerSettings.from_env({"HOME": str(tmp_path)}).data_dir.name == ".nfcpay-server"


def test_db_pool_size_from_env() -> None:
    assert ServerSettings.from_env({}).db_pool_size is None  # the machine's default
    assert ServerSettings.from_env({"NFCPAY_SERVER_DB_POOL_SIZE": "3"}).db_pool_size == 3
    for bad, reason in [("0", "must be positive"), ("2.5", "'2.5' is not a whole number")]:
        with pytest.raises(ConfigError, match=reason):
            ServerSettings.from_env({"NFCPAY_SERVER_DB_POOL_SIZE": bad})
    with pytest.raises(ConfigError, match="NFCPAY_SERVER_DB_TIMEOUT='soon' is not a number"):
        ServerSettings.from_env({"NFCPAY_SERVER_DB_TIMEOUT": "soon"})


def test_cli_server_init(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--json", "server", "init", "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert '"created": true' in result.output
    assert (tmp_path / "d" / MASTER_KEY_FILE).exists()


def test_servers_starting_together_on_one_data_dir_share_one_whole_key(tmp_path: Path) -> None:
    """Two servers started at once on one data directory: neither may read a key file that
    exists but is not written yet (it failed `test_concurrency[*_two]` now and then)."""
    import threading

    from nfcpay.server.settings import MASTER_KEY_FILE, load_master_key

    for attempt in range(20):
        data = tmp_path / str(attempt)
        start = threading.Barrier(8)
        created: list[bool] = []
        keys: list[bytes] = []

        def start_server(data: Path = data, start: threading.Barrier = start) -> None:
            start.wait()
            created.append(init_data_dir(data))
            keys.append(load_master_key(data / MASTER_KEY_FILE))

        threads = [threading.Thread(target=start_server) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(created) == [False] * 7 + [True]
        assert len(set(keys)) == 1 and len(keys) == 8
        assert [p.name for p in data.iterdir()] == [MASTER_KEY_FILE]  # no draft left behind


def test_forwarded_allow_ips_default_to_none_and_name_addresses_or_networks(
    tmp_path: Path,
) -> None:
    assert ServerSettings.from_env({}).forwarded_allow_ips == ()
    env = {"NFCPAY_SERVER_FORWARDED_ALLOW_IPS": " 10.0.0.2, 10.0.1.0/24 ,::1,"}
    assert ServerSettings.from_env(env).forwarded_allow_ips == ("10.0.0.2", "10.0.1.0/24", "::1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*", "would let every client choose the address"),
        ("lb.example", "'lb.example' is not an IP address or network"),
        ("10.0.0.2/24", "has host bits set: did you mean 10.0.0.0/24"),
    ],
)
def test_forwarded_allow_ips_refuse_what_would_trust_clients(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ServerSettings.from_env({"NFCPAY_SERVER_FORWARDED_ALLOW_IPS": value})
    result = CliRunner().invoke(
        cli,
        ["server", "run", "--data-dir", str(tmp_path), "--forwarded-allow-ips", value],
    )
    assert result.exit_code == 2
    assert "Invalid value for '--forwarded-allow-ips'" in result.output
    assert message in result.output
    assert not tmp_path.joinpath("master.key").exists(), "refused before anything was made"
