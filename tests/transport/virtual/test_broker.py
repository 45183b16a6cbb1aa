"""The field broker: antennas in separate processes share one virtual RF field.

Most tests share one broker process (module fixture); the peer on the other side of the
field is a small Python process (:data:`PEER`) that prints what it hears, one line each.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nfcpay.transport.virtual.broker import (
    MAGIC,
    MODULE,
    PROTOCOL_VERSION,
    Broker,
    BrokerGone,
    BrokerNotRunning,
    BrokerVersionError,
    RemoteField,
    connect,
    default_field_dir,
    open_antenna,
    socket_path,
    start_field,
    stop_field,
)
from nfcpay.transport.virtual.field import (
    LATER,
    SILENT,
    AirCollision,
    AirError,
    AirFrame,
    AirTimeout,
    Field,
)

SHARED = "shared"

#: A peer process: ``python -c PEER MODE FIELD DIR [HEX...]``. Listening modes answer
#: ``echo`` (01 + frame at once), ``later`` (``late:`` + frame, from another thread) or
#: ``hang`` (never return); ``carrier`` holds its carrier on; ``poll`` sends each HEX frame
#: with its carrier on. It prints ``ready`` once set, and leaves when its stdin closes.
PEER = r"""
import sys, threading, time
from pathlib import Path
from nfcpay.transport.virtual.broker import connect
from nfcpay.transport.virtual.field import LATER, AirError, AirFrame

def say(*words):
    print(*words, flush=True)

class Peer:
    def respond(self, frame, xid):
        say("heard", frame.data.hex())
        if mode == "echo":
            return b"\x01" + frame.data
        if mode == "later":
            threading.Timer(0.01, antenna.answer, (xid, b"late:" + frame.data)).start()
            return LATER
        time.sleep(60)

    def field_changed(self, on):
        say("field", "on" if on else "off")

mode, name, directory, *frames = sys.argv[1:]
remote = connect(name, directory=Path(directory), start=False)
antenna = remote.attach("peer-" + mode)
if mode == "carrier":
    antenna.carrier(True)
elif mode == "poll":
    antenna.carrier(True)
    for frame in frames:
        try:
            say("answer", antenna.exchange(AirFrame("106A", bytes.fromhex(frame)), 5.0).hex())
        except AirError as exc:
            say("error", type(exc).__name__)
    antenna.carrier(False)
else:
    antenna.listen(Peer())
say("ready")
sys.stdin.read()
remote.close()
"""

#: Connects (starting the broker if need be) at ``argv[3]`` (a time.time()), prints the pid.
STARTER = r"""
import sys, time
from pathlib import Path
from nfcpay.transport.virtual.broker import connect
name, directory, at = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
time.sleep(max(0.0, at - time.time()))
# Exits on its own 30 s after the test, even when the test failed before stopping it.
with connect(name, directory=directory, idle_exit=30.0) as remote:
    print(remote.status()["pid"], flush=True)
"""


class Peer:
    """One PEER process; its lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PEER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("<exit>")

    def expect(self, line: str, timeout: float = 10.0) -> None:
        assert self.next(timeout) == line

    def next(self, timeout: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"the peer said nothing within {timeout}s")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(5)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()
        self._pump.join(5)
        self.proc.stdout.close()


class Recorder:
    """A responder in the test process: answers with ``reply`` and records what it hears."""

    def __init__(self, reply: Callable[[AirFrame, int], Any] = lambda frame, xid: SILENT) -> None:
        self.reply = reply
        self.heard: queue.Queue[tuple[AirFrame, int]] = queue.Queue()
        self.events: queue.Queue[bool] = queue.Queue()

    def respond(self, frame: AirFrame, exchange_id: int) -> Any:
        self.heard.put((frame, exchange_id))
        return self.reply(frame, exchange_id)

    def field_changed(self, on: bool) -> None:
        self.events.put(on)


def take(items: queue.Queue[Any], timeout: float = 5.0) -> Any:
    try:
        return items.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"nothing arrived within {timeout}s")


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def hung_up(remote: RemoteField) -> bool:
    try:
        remote.status()
    except BrokerGone:
        return True
    return False


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", MODULE, *args], capture_output=True, text=True, timeout=30
    )


@pytest.fixture(scope="module")
def field_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fields")


@pytest.fixture(scope="module")
def shared(field_dir: Path) -> Iterator[str]:
    """The broker process most tests share."""
    start_field(SHARED, directory=field_dir, idle_exit=None)
    yield SHARED
    assert stop_field(SHARED, directory=field_dir)


@pytest.fixture
def remote(shared: str, field_dir: Path) -> Iterator[RemoteField]:
    with connect(shared, directory=field_dir, start=False) as field:
        yield field


@pytest.fixture
def peer(shared: str, field_dir: Path) -> Iterator[Callable[..., Peer]]:
    started: list[Peer] = []

    def start(mode: str, *frames: str) -> Peer:
        started.append(Peer(mode, shared, str(field_dir), *frames))
        return started[-1]

    yield start
    for each in started:
        each.close()


# -- names and paths ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "Shop", "a b", "-x", "x" * 33, "../etc", "a_b", "é"])
def test_a_bad_field_name_is_a_value_error(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad field name"):
        socket_path(name, tmp_path)
    with pytest.raises(ValueError, match="bad field name"):
        start_field(name, directory=tmp_path)


def test_the_field_directory_is_private_and_socket_paths_fit(tmp_path: Path) -> None:
    shared_dir = tmp_path / "nfcpay-fields"
    shared_dir.mkdir(mode=0o755)
    shared_dir.chmod(0o755)
    assert default_field_dir(tmp_path) == shared_dir
    assert shared_dir.stat().st_mode & 0o777 == 0o700
    assert socket_path("demo-1", shared_dir) == shared_dir / "demo-1.sock"
    with pytest.raises(ValueError, match="too long for a Unix socket"):
        socket_path("demo", tmp_path / ("d" * 120))


# -- frames across processes -------------------------------------------------------------------


def test_an_immediate_answer_crosses_processes(remote: RemoteField, peer) -> None:
    echo = peer("echo")
    echo.expect("ready")
    poller = remote.attach("poller")
    poller.carrier(True)
    echo.expect("field on")
    assert poller.exchange(AirFrame("106A", b"\x26"), 1.0) == b"\x01\x26"
    echo.expect("heard 26")
    assert poller.exchange(AirFrame("212F", b"\x00\xff"), 1.0) == b"\x01\x00\xff"
    echo.expect("heard 00ff")
    poller.carrier(False)
    echo.expect("field off")


def test_a_deferred_answer_comes_through_answer(remote: RemoteField, peer) -> None:
    target = remote.attach("target")

    def later(frame: AirFrame, xid: int) -> Any:
        threading.Timer(0.01, target.answer, (xid, b"late:" + frame.data)).start()
        return LATER

    recorder = Recorder(later)
    target.listen(recorder)
    poller = peer("poll", "0102", "03")
    assert poller.next() == "answer " + (b"late:\x01\x02").hex()
    assert poller.next() == "answer " + (b"late:\x03").hex()
    poller.expect("ready")
    assert [take(recorder.events), take(recorder.events)] == [True, False]
    assert [take(recorder.heard)[0].data, take(recorder.heard)[0].data] == [b"\x01\x02", b"\x03"]


def test_the_peer_answers_later_from_its_own_thread(remote: RemoteField, peer) -> None:
    later = peer("later")
    later.expect("ready")
    poller = remote.attach("poller")
    poller.carrier(True)
    assert poller.exchange(AirFrame("424F", b"\x10\x20"), 2.0) == b"late:\x10\x20"
    poller.carrier(False)


def test_silence_times_out_and_a_late_answer_is_lost(remote: RemoteField) -> None:
    poller, target = remote.attach("poller"), remote.attach("target")
    recorder = Recorder(lambda frame, xid: LATER)
    target.listen(recorder)
    poller.carrier(True)
    started = time.monotonic()
    with pytest.raises(AirTimeout, match="no answer"):
        poller.exchange(AirFrame("106A", b"\x26"), 0.05)
    assert time.monotonic() - started >= 0.05
    _, xid = take(recorder.heard)
    assert target.answer(xid, b"too late") is False
    target.listen(None)
    with pytest.raises(AirTimeout):
        poller.exchange(AirFrame("106A", b"\x26"), 0.02)


def test_two_carriers_collide(remote: RemoteField, peer) -> None:
    other = peer("carrier")
    other.expect("ready")
    listener = remote.attach("listener")
    recorder = Recorder(lambda frame, xid: b"\x01")
    listener.listen(recorder)
    assert listener.external_field is True
    poller = remote.attach("poller")
    poller.carrier(True)
    with pytest.raises(AirCollision, match="carrier is on"):
        poller.exchange(AirFrame("106A", b"\x26"), 0.1)
    assert recorder.heard.empty()


def test_a_failing_responder_is_an_air_error_for_the_sender(remote: RemoteField) -> None:
    def broken(frame: AirFrame, xid: int) -> Any:
        raise RuntimeError("chip on fire")

    remote.attach("broken").listen(Recorder(broken))
    poller = remote.attach("poller")
    poller.carrier(True)
    with pytest.raises(AirError, match="chip on fire"):
        poller.exchange(AirFrame("106A", b"\x26"), 0.5)


# -- processes that die ------------------------------------------------------------------------


def test_a_killed_poller_takes_its_carrier_with_it(remote: RemoteField, peer) -> None:
    target = remote.attach("target")
    recorder = Recorder(lambda frame, xid: LATER)  # the host never answers
    target.listen(recorder)
    poller = peer("poll", "26")
    assert take(recorder.events) is True
    take(recorder.heard)
    poller.kill()  # in the middle of its exchange
    assert take(recorder.events) is False
    assert target.external_field is False
    wait_until(lambda: [a["name"] for a in remote.status()["antennas"]] == ["target"])


def test_a_killed_listener_does_not_hang_the_sender(remote: RemoteField, peer) -> None:
    stuck = peer("hang")  # its respond never returns
    stuck.expect("ready")
    poller = remote.attach("poller")
    poller.carrier(True)
    stuck.expect("field on")
    outcome: queue.Queue[BaseException | bytes] = queue.Queue()

    def send() -> None:
        try:
            outcome.put(poller.exchange(AirFrame("106A", b"\x26"), 0.1))
        except AirError as exc:
            outcome.put(exc)

    sender = threading.Thread(target=send)
    sender.start()
    stuck.expect("heard 26")
    killed = time.monotonic()
    stuck.kill()
    assert isinstance(take(outcome), AirTimeout)
    assert time.monotonic() - killed < 1.5  # the hang-up, not the callback timeout
    sender.join()


def test_a_killed_broker_leaves_a_dead_field_and_a_new_one_starts(tmp_path: Path) -> None:
    with connect("doomed", directory=tmp_path, idle_exit=None) as first:
        listener, poller = first.attach("listener"), first.attach("poller")
        recorder = Recorder()
        listener.listen(recorder)
        poller.carrier(True)
        assert take(recorder.events) is True
        os.kill(first.status()["pid"], signal.SIGKILL)
        assert take(recorder.events) is False  # the field died with its broker
        with pytest.raises(AirError, match="doomed"):
            poller.exchange(AirFrame("106A", b"\x26"), 0.1)
        assert listener.answer(1, b"x") is False
        assert listener.external_field is False
        poller.carrier(False)
        listener.close()
    with connect("doomed", directory=tmp_path, idle_exit=None) as second:
        assert second.status()["antennas"] == []  # a fresh broker over the stale socket
    assert stop_field("doomed", directory=tmp_path)


# -- tags --------------------------------------------------------------------------------------


class MemoryTag:
    """A toy tag: ``30 PAGE`` reads 16 bytes from page PAGE (4 bytes a page)."""

    def __init__(self) -> None:
        self.memory = bytes(range(64))
        self.powered: list[bool] = []

    def respond(self, frame: AirFrame, exchange_id: int) -> Any:
        if frame.data[:1] != b"\x30":
            return SILENT
        start = frame.data[1] * 4
        return bytes(self.memory[start : start + 16])

    def field_changed(self, on: bool) -> None:
        self.powered.append(on)


def toy_tags(kind: str) -> MemoryTag:
    if kind != "toy":
        raise ValueError(f"unknown tag kind {kind!r}")
    return MemoryTag()


@pytest.fixture
def toy_field(tmp_path: Path) -> Iterator[RemoteField]:
    """A broker in a thread of the test process, whose tags are MemoryTags."""
    broker = Broker("toys", directory=tmp_path, idle_exit=None, tag_factory=toy_tags)
    thread = threading.Thread(target=broker.serve)
    thread.start()
    try:
        assert broker.ready.wait(10)
        with connect("toys", directory=tmp_path, start=False) as remote:
            yield remote
    finally:
        broker.stop()
        thread.join(10)


def test_tags_are_placed_read_and_removed(toy_field: RemoteField) -> None:
    image = bytes(reversed(range(64)))
    tag_id = toy_field.place_tag("toy", memory=image)
    assert toy_field.place_tag("toy", tag_id="spare") == "spare"
    assert toy_field.list() == [{"id": tag_id, "kind": "toy"}, {"id": "spare", "kind": "toy"}]
    toy_field.remove_tag("spare")
    poller = toy_field.attach("reader")
    poller.carrier(True)
    assert poller.exchange(AirFrame("106A", b"\x30\x01"), 0.5) == image[4:20]
    assert toy_field.read_tag(tag_id) == {"kind": "toy", "memory": image}
    status = toy_field.status()
    assert status["antennas"] == [{"name": "reader", "carrier": True, "listening": False}]
    assert status["tags"] == [{"id": tag_id, "kind": "toy"}]
    toy_field.remove_tag(tag_id)
    with pytest.raises(AirTimeout):
        poller.exchange(AirFrame("106A", b"\x30\x01"), 0.02)
    assert toy_field.list() == []


def test_a_tag_put_into_a_live_field_powers_up(toy_field: RemoteField) -> None:
    poller = toy_field.attach("reader")
    poller.carrier(True)
    toy_field.place_tag("toy", tag_id="late")
    poller.carrier(False)
    assert toy_field.read_tag("late")["memory"] == bytes(range(64))


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("nope", {}, "unknown tag kind"),
        ("toy", {"memory": b"short"}, "holds 64 bytes"),
        ("toy", {"tag_id": "Bad Id"}, "bad tag name"),
    ],
)
def test_bad_tags_are_value_errors(
    toy_field: RemoteField, kind: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        toy_field.place_tag(kind, **options)
    with pytest.raises(ValueError, match="no tag"):
        toy_field.read_tag("missing")
    with pytest.raises(ValueError, match="no tag"):
        toy_field.remove_tag("missing")


def test_real_tags_from_make_tag(remote: RemoteField) -> None:
    poller = remote.attach("reader")
    for kind in ("ntag215", "ntag216", "felica-lite-s"):
        tag_id = remote.place_tag(kind)
        assert remote.read_tag(tag_id)["kind"] == kind
        assert remote.read_tag(tag_id)["memory"]
        if kind.startswith("ntag"):
            poller.carrier(True)
            assert poller.exchange(AirFrame("106A", b"\x26"), 0.1) == b"\x44\x00"  # ATQA
            poller.carrier(False)
        remote.remove_tag(tag_id)
    assert remote.list() == []


def test_real_tags_take_a_memory_image(remote: RemoteField) -> None:
    tag_id = remote.place_tag("ntag215")
    try:
        memory = bytearray(remote.read_tag(tag_id)["memory"])
        memory[16:20] = b"\x03\x00\xfe\x00"
        copy = remote.place_tag("ntag215", memory=bytes(memory))
        assert remote.read_tag(copy)["memory"] == memory
        remote.remove_tag(copy)
    finally:
        remote.remove_tag(tag_id)


# -- the broker's life -------------------------------------------------------------------------


def test_an_idle_broker_exits_and_removes_its_socket(tmp_path: Path) -> None:
    path = start_field("idle", directory=tmp_path, idle_exit=0.2)
    with connect("idle", directory=tmp_path, start=False) as remote:
        time.sleep(0.5)  # a connected client keeps it up
        assert remote.status()["field"] == "idle"
    wait_until(lambda: not path.exists())
    with pytest.raises(BrokerNotRunning):
        connect("idle", directory=tmp_path, start=False)


def test_two_processes_starting_one_field_meet_in_one_broker(tmp_path: Path) -> None:
    at = str(time.time() + 1.0)
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, "race", str(tmp_path), at],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        pids = [starter.communicate(timeout=20)[0].strip() for starter in starters]
        assert [starter.returncode for starter in starters] == [0, 0]
        with connect("race", directory=tmp_path, start=False) as remote:
            assert pids == [str(remote.status()["pid"])] * 2
    finally:
        stopped = stop_field("race", directory=tmp_path)  # even when an assertion failed
    assert stopped


def test_the_command_line_shows_and_stops_a_field(tmp_path: Path) -> None:
    start_field("cli", directory=tmp_path, idle_exit=None)
    with connect("cli", directory=tmp_path) as remote:
        remote.attach("reader").carrier(True)
        status = run_cli("status", "cli", "--dir", str(tmp_path))
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["antennas"] == [{"name": "reader", "carrier": True, "listening": False}]
        assert run_cli("stop", "cli", "--dir", str(tmp_path)).stdout == "field cli: stopped\n"
        wait_until(lambda: hung_up(remote))
    gone = run_cli("status", "cli", "--dir", str(tmp_path))
    assert (gone.returncode, gone.stdout) == (1, "field cli: not running\n")
    assert not socket_path("cli", tmp_path).exists()
    assert "broker" in (tmp_path / "cli.log").read_text()
    assert stop_field("cli", directory=tmp_path) is False
    assert run_cli("serve", "Bad", "--dir", str(tmp_path)).returncode == 2


def test_an_antenna_of_its_own_hangs_up_when_closed(shared: str, field_dir: Path) -> None:
    antenna = open_antenna(shared, "solo", directory=field_dir, start=False)
    antenna.carrier(True)
    antenna.close()
    assert hung_up(antenna.field)


# -- protocol versions -------------------------------------------------------------------------


@pytest.mark.parametrize(("theirs", "advice"), [(99, "upgrade nfcpay here"), (0, "older")])
def test_a_broker_of_another_version_is_a_clear_error(
    tmp_path: Path, theirs: int, advice: str
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path("other", tmp_path)))
    listener.listen(1)

    def other_broker() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(14)
            conn.sendall(MAGIC + theirs.to_bytes(2, "big"))

    thread = threading.Thread(target=other_broker)
    thread.start()
    try:
        with pytest.raises(BrokerVersionError, match=advice) as error:
            connect("other", directory=tmp_path)
        assert f"v{theirs}" in str(error.value)
    finally:
        thread.join(5)
        listener.close()


def test_the_broker_answers_an_old_client_with_its_version_and_hangs_up(
    shared: str, field_dir: Path
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(socket_path(shared, field_dir)))
        sock.sendall(MAGIC + (PROTOCOL_VERSION - 1).to_bytes(2, "big"))
        hello = b""
        while chunk := sock.recv(64):
            hello += chunk
    assert hello == MAGIC + PROTOCOL_VERSION.to_bytes(2, "big")


# -- latency -----------------------------------------------------------------------------------


def median_exchange(send: Callable[[], bytes], count: int = 300) -> float:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        send()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def test_round_trip_latency_through_the_broker(remote: RemoteField, peer) -> None:
    echo = peer("echo")
    echo.expect("ready")
    poller = remote.attach("poller")
    poller.carrier(True)
    frame = AirFrame("424F", b"\x06\x00\xff\xff\x01\x00")
    for _ in range(30):
        poller.exchange(frame, 1.0)
    remote_s = median_exchange(lambda: poller.exchange(frame, 1.0))

    local = Field("local")
    local_poller = local.attach("poller")
    local.attach("echo").listen(Recorder(lambda frame, xid: b"\x01" + frame.data))
    local_poller.carrier(True)
    local_s = median_exchange(lambda: local_poller.exchange(frame, 1.0))
    print(
        f"\nexchange() median: {remote_s * 1e3:.3f} ms through the broker, "
        f"{local_s * 1e3:.3f} ms in-process (air time included): "
        f"broker overhead {(remote_s - local_s) * 1e3:.3f} ms"
    )
    assert remote_s - local_s < 0.005
