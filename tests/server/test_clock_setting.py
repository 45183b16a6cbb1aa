"""The TEST-ONLY clock setting (``ServerSettings.test_clock_file``, issue 15): how it is
parsed, when a server refuses it, and that its offset is applied to a running server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from nfcpay.client import signed_headers
from nfcpay.errors import ConfigError
from nfcpay.server.app import create_runtime
from nfcpay.server.runtime import FileOffsetClock, server_clock, sleep_on
from nfcpay.server.settings import (
    SQLITE_FILE,
    TEST_CLOCK_ENV,
    ServerSettings,
    init_data_dir,
    is_loopback_address,
)
from nfcpay.testing.server import ServerProcess, register_terminal
from tests.support.harness import Clock, start_server


def _clock_file(tmp_path: Path, text: str = "0") -> Path:
    path = tmp_path / "clock"
    path.write_text(text)
    return path


def _settings(tmp_path: Path, clock: Path | None, host: str = "127.0.0.1") -> ServerSettings:
    return ServerSettings(data_dir=tmp_path / "srv", host=host, test_clock_file=clock)


# --- parsing ---------------------------------------------------------------------------------


def test_from_env_takes_the_clock_file_from_its_variable_only(tmp_path: Path) -> None:
    env = {"NFCPAY_SERVER_DATA": str(tmp_path), TEST_CLOCK_ENV: "/run/test/clock"}
    assert ServerSettings.from_env(env).test_clock_file == Path("/run/test/clock")
    assert ServerSettings.from_env({**env, TEST_CLOCK_ENV: ""}).test_clock_file is None
    assert ServerSettings.from_env({"NFCPAY_SERVER_DATA": str(tmp_path)}).test_clock_file is None
    assert ServerSettings(data_dir=tmp_path).test_clock_file is None, "off by default"


@pytest.mark.parametrize(
    ("text", "offset"), [("0", 0.0), ("12.5", 12.5), (" 3600\n", 3600.0), ("-2", -2.0)]
)
def test_the_clock_is_the_real_time_plus_the_files_offset(
    tmp_path: Path, text: str, offset: float
) -> None:
    clock = FileOffsetClock(_clock_file(tmp_path, text), real=lambda: 1_000.0)
    assert clock.offset() == offset
    assert clock() == 1_000.0 + offset


def test_the_file_is_read_each_time_so_a_running_server_follows_it(tmp_path: Path) -> None:
    path = _clock_file(tmp_path, "0")
    clock = FileOffsetClock(path, real=lambda: 1_000.0)
    assert clock() == 1_000.0
    path.write_text("61")
    assert clock() == 1_061.0


@pytest.mark.parametrize("text", ["", "soon", "nan", "inf", "1e999", "12 s"])
def test_a_malformed_clock_file_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="must hold a number of seconds"):
        FileOffsetClock(_clock_file(tmp_path, text))()


def test_a_missing_clock_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the test clock file"):
        FileOffsetClock(tmp_path / "nowhere")()


# --- refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "[::1]"])
def test_allowed_on_a_loopback_address_when_given_by_its_variable(
    tmp_path: Path, host: str
) -> None:
    path = _clock_file(tmp_path, "5")
    settings = _settings(tmp_path, path, host)
    assert settings.checked_test_clock({TEST_CLOCK_ENV: str(path)}) == path
    clock = server_clock(settings, {TEST_CLOCK_ENV: str(path)})
    assert isinstance(clock, FileOffsetClock) and clock.path == path


def test_without_the_setting_the_server_runs_on_the_real_time(tmp_path: Path) -> None:
    settings = _settings(tmp_path, None, host="0.0.0.0")
    assert settings.checked_test_clock({}) is None
    assert server_clock(settings, {TEST_CLOCK_ENV: "/ignored"}) is time.time


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "pay.example.com", "localhost", ""]
)
def test_refused_unless_the_server_binds_a_loopback_address(tmp_path: Path, host: str) -> None:
    path = _clock_file(tmp_path)
    with pytest.raises(ConfigError, match=f"refusing to start.*{TEST_CLOCK_ENV}.*loopback"):
        server_clock(_settings(tmp_path, path, host), {TEST_CLOCK_ENV: str(path)})


@pytest.mark.parametrize("variable", [None, "", "/some/other/clock"])
def test_refused_unless_its_variable_gave_it(tmp_path: Path, variable: str | None) -> None:
    """Settings built in code (or by any future config source) without the variable naming
    the same file are refused, even on a loopback address."""
    path = _clock_file(tmp_path)
    environ = {} if variable is None else {TEST_CLOCK_ENV: variable}
    with pytest.raises(ConfigError, match=f"refusing to start.*TEST-ONLY.*{TEST_CLOCK_ENV}"):
        server_clock(_settings(tmp_path, path), environ)


def test_a_bad_clock_file_fails_the_start(tmp_path: Path) -> None:
    path = _clock_file(tmp_path, "tomorrow")
    with pytest.raises(ConfigError, match="must hold a number of seconds"):
        server_clock(_settings(tmp_path, path), {TEST_CLOCK_ENV: str(path)})


def test_refused_before_the_database_is_opened(tmp_path: Path) -> None:
    path = _clock_file(tmp_path)
    settings = _settings(tmp_path, path, host="0.0.0.0")
    init_data_dir(settings.data_dir)
    with pytest.raises(ConfigError, match="loopback"):
        create_runtime(settings, {TEST_CLOCK_ENV: str(path)})
    assert not (settings.data_dir / SQLITE_FILE).exists()


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "127.255.255.254", "::1", "[::1]", "0.0.0.0", "::", "localhost"]
)
def test_is_loopback_address_takes_literal_addresses_only(address: str) -> None:
    assert is_loopback_address(address) is (address not in {"0.0.0.0", "::", "localhost"})


def test_a_server_process_on_a_reachable_address_refuses_to_start(tmp_path: Path) -> None:
    path = _clock_file(tmp_path)
    command = [sys.executable, "-m", "nfcpay", "server", "run"]
    command += ["--data-dir", str(tmp_path / "srv"), "--host", "0.0.0.0", "--port", "0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NFCPAY_")}
    finished = subprocess.run(
        command, env={**env, TEST_CLOCK_ENV: str(path)}, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 6, finished  # bad configuration
    assert "refusing to start" in finished.stderr and "loopback" in finished.stderr
    assert "listening" not in finished.stdout


# --- a running server follows its clock file -----------------------------------------------


def test_advance_moves_a_running_server_process_without_a_restart(tmp_path: Path) -> None:
    """The server judges request timestamps by its own clock (±300 s): a request stamped
    400 s ahead is stale until the server's clock is moved 400 s forward."""
    with start_server(tmp_path / "srv", test_clock=True) as server:
        me = register_terminal(server.url, "user")
        ahead = int(time.time()) + 400

        def stamped() -> int:
            path = "/v1/terminals/me"
            headers = signed_headers(
                me.terminal_id, me.private_key, "GET", path, b"", timestamp=ahead
            )
            return httpx.get(f"{server.url}{path}", headers=headers).status_code

        assert stamped() == 401
        server.advance(400)
        assert server.clock_offset() == 400
        assert abs(server.now() - (time.time() + 400)) < 5
        assert stamped() == 200
        assert "TEST CLOCK" in server.log()


def test_a_server_without_a_test_clock_cannot_be_advanced(tmp_path: Path) -> None:
    idle = ServerProcess("", tmp_path, None, None, tmp_path / "log")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="test_clock=True"):
        idle.advance(1)


# --- waiting on the clock ------------------------------------------------------------------


def test_sleep_on_a_test_clock_ends_when_the_clock_is_moved() -> None:
    clock = Clock()
    start = clock()
    woke: list[float] = []

    async def main() -> None:
        async def sleeper() -> None:
            await sleep_on(clock, 3_600)
            woke.append(clock())

        with anyio.fail_after(10):  # a hang guard, not a timing assertion
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(sleeper)
                await anyio.sleep(0.01)
                clock.advance(3_599)
                await anyio.sleep(0.01)
                assert woke == [], "not due yet"
                clock.advance(1)

    anyio.run(main)
    assert woke == [start + 3_600]


def test_sleep_on_the_real_clock_is_one_plain_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(anyio, "sleep", fake_sleep)
    anyio.run(sleep_on, time.time, 60.0)
    assert slept == [60.0]
