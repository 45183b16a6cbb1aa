"""One virtual RF field shared by separate processes, through a small local broker.

Separate nfcpay processes (one per terminal in the e2e tests and at a demo) meet in one
:class:`~nfcpay.transport.virtual.field.Field` the way they would on a loopback port: a
broker process owns the field and listens on a Unix socket in a per-user directory
(:func:`default_field_dir`). :func:`connect` returns a :class:`RemoteField`, whose
:meth:`RemoteField.attach` gives a :class:`RemoteAntenna` with the API of
:class:`~nfcpay.transport.virtual.field.Antenna`. A remote listener's responder runs in its
own process: the broker forwards each frame over the socket and waits for the reply, so
``respond`` must return quickly (a chip that needs its host answers ``LATER`` and calls
``answer`` later). Virtual tags live in the broker (:meth:`RemoteField.place_tag`).

Lifecycle. :func:`start_field` runs ``python -m nfcpay.transport.virtual.broker serve NAME``
unless a broker already answers. A broker holds an exclusive lock on ``NAME.lock`` for its
whole life, so when two processes start one field at once the second broker exits at once
and both starters connect to the first. A broker exits by itself once nobody has been
connected and no tag has lain in the field for ``idle_exit`` seconds, or when
:func:`stop_field` asks; either way it removes its socket. A client that goes away (closed,
or its process killed) is detached: its carrier goes off and listeners see
``field_changed(False)``. A client whose broker goes away is alone in a dead field:
``exchange`` raises :class:`AirError`, ``answer`` returns False, listeners see
``field_changed(False)``, carrier and listen do nothing.

Wire protocol, version :data:`PROTOCOL_VERSION`. The client opens with a 14-byte hello,
``b"NFCPAY-FIELD"`` and the version as a big-endian u16; the broker answers with its own
hello and hangs up if they differ, so the client can tell which side to upgrade. Then each
message is a big-endian u32 length and a CBOR map (bytes travel as CBOR byte strings):

* ``{"k": "call", "id": n, "op": name, "args": {...}}``: either side calls the other;
* ``{"k": "ok", "id": n, "value": v}`` or ``{"k": "err", "id": n, "type": t, "msg": m}``
  answers the call numbered ``n`` by the other side.

Each side numbers its own calls, so one connection carries concurrent calls both ways (a
chip thread in ``exchange`` while the broker asks the same client's responder). Client to
broker: attach, detach, carrier, exchange, listen, answer, external_field, place_tag,
remove_tag, read_tag, status, stop. Broker to client: respond (value: the answer's bytes,
``"later"``, or None for silent) and field_changed. Errors named AirTimeout, AirCollision,
AirError and ValueError are raised again, with their message, on the calling side.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import logging
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

from nfcpay.transport.rundir import RuntimeDirError, private_dir
from nfcpay.transport.virtual.field import (
    LATER,
    SILENT,
    AirCollision,
    AirError,
    AirFrame,
    AirTimeout,
    Antenna,
    Field,
    Reply,
    Responder,
)

log = logging.getLogger(__name__)

MODULE = "nfcpay.transport.virtual.broker"
PROTOCOL_VERSION = 1
MAGIC = b"NFCPAY-FIELD"
_HELLO = struct.Struct(">12sH")
_LENGTH = struct.Struct(">I")
#: Larger messages are garbage (the longest air frame is a few hundred bytes; tag memory
#: a few kilobytes).
MAX_MESSAGE = 1 << 20

#: Seconds a broker stays up with nobody connected and no tag in its field.
DEFAULT_IDLE_EXIT = 60.0
#: How long the broker waits for a client's respond/field_changed (they must not block).
CALLBACK_TIMEOUT = 2.0
#: How long a client waits for the broker beyond the call's own air timeout.
CALL_GRACE = 10.0
START_TIMEOUT = 10.0
HELLO_TIMEOUT = 2.0
#: How often the broker's accept loop looks at its stop flag and idle time.
ACCEPT_TICK = 0.05
_START_POLL = 0.02
_JOIN_TIMEOUT = 2.0
#: ``serve``'s exit status when another broker already holds the field.
EXIT_ALREADY_RUNNING = 3

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
#: ``sockaddr_un.sun_path`` holds 108 bytes, with the terminating NUL.
_SUN_PATH_MAX = 107

TagFactory = Callable[[str], Any]
TagInfo = dict[str, Any]
Tags = list[TagInfo]


class BrokerError(Exception):
    """The field broker cannot be reached, or refused a request."""


class BrokerVersionError(BrokerError):
    """The broker and this nfcpay speak different versions of the field protocol."""


class BrokerNotRunning(BrokerError):
    """No broker answers for the field (and the caller asked not to start one)."""


class BrokerGone(BrokerError):
    """The connection to the broker (or, in the broker, to a client) is lost."""


class BrokerAlreadyRunning(BrokerError):
    """Another broker holds the field's lock."""


# -- names and paths ---------------------------------------------------------------------------


def default_field_dir(runtime_dir: Path | None) -> Path:
    """The per-user directory of field sockets, locks and logs (mode 0700, see
    :func:`nfcpay.transport.rundir.private_dir`)."""
    try:
        return private_dir("nfcpay-fields", runtime_dir)
    except RuntimeDirError as exc:
        raise BrokerError(f"{exc} for fields") from None


def validate_name(name: str, what: str = "field") -> str:
    """``name`` if it is a valid field (or tag) name, else ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"bad {what} name {name!r}: use 1 to 32 characters a-z, 0-9 and '-', "
            "not starting with '-'"
        )
    return name


def socket_path(name: str, directory: Path) -> Path:
    """The Unix socket of field ``name`` in ``directory`` (usually :func:`default_field_dir`)."""
    validate_name(name)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{name}.sock"
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise ValueError(
            f"{path} is too long for a Unix socket ({_SUN_PATH_MAX} bytes at most): "
            "use a shorter field directory"
        )
    return path


def _log_path(path: Path) -> Path:
    return path.with_suffix(".log")


# -- the wire ----------------------------------------------------------------------------------


def _hello() -> bytes:
    return _HELLO.pack(MAGIC, PROTOCOL_VERSION)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the other side hung up")
        data += chunk
    return data


def _mismatch(theirs: int, where: Path) -> str:
    if theirs > PROTOCOL_VERSION:
        advice = "the broker runs a newer nfcpay: upgrade nfcpay here"
    else:
        advice = (
            "the broker runs an older nfcpay: upgrade it, or stop that broker "
            f"(python -m {MODULE} stop {where.stem}) so that this nfcpay starts its own"
        )
    return (
        f"the field broker at {where} speaks field protocol v{theirs}, this nfcpay "
        f"speaks v{PROTOCOL_VERSION}: {advice}"
    )


def _dial(path: Path) -> socket.socket:
    """A socket connected to the broker at ``path``, past the hello.

    OSError when nobody answers there (yet, or any more); BrokerError when something else,
    or another protocol version, does.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(HELLO_TIMEOUT)
        sock.connect(str(path))
        sock.sendall(_hello())
        magic, version = _HELLO.unpack(_recv_exactly(sock, _HELLO.size))
        if magic != MAGIC:
            raise BrokerError(f"{path} is not an nfcpay field broker")
        if version != PROTOCOL_VERSION:
            raise BrokerVersionError(_mismatch(version, path))
        sock.settimeout(None)
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(path: Path) -> bool:
    """Whether a broker of this protocol version answers at ``path``."""
    try:
        sock = _dial(path)
    except OSError:
        return False
    sock.close()
    return True


class _Wire:
    """Length-prefixed CBOR messages over a connected socket; :meth:`send` is thread-safe."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        body = cbor2.dumps(message)
        with self._send_lock:
            self.sock.sendall(_LENGTH.pack(len(body)) + body)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None once the other side hung up (or sent garbage)."""
        header = self._read(_LENGTH.size)
        if header is None:
            return None
        (length,) = _LENGTH.unpack(header)
        body = self._read(length) if length <= MAX_MESSAGE else None
        if body is None:
            return None
        try:
            message = cbor2.loads(body)
        except cbor2.CBORDecodeError:
            return None
        return message if isinstance(message, dict) else None

    def _read(self, size: int) -> bytes | None:
        try:
            data = self._reader.read(size)
        except (OSError, ValueError):  # ValueError: the reader was closed
            return None
        return data if len(data) == size else None

    def hang_up(self) -> None:
        """End the connection both ways: a thread blocked in :meth:`receive` gets None."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.hang_up()
        self._reader.close()
        self.sock.close()


class _Waiter:
    """One reply awaited (a lock handed over: the cheapest wake-up between two threads)."""

    __slots__ = ("_done", "reply")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self.reply: dict[str, Any] | None = None

    def set(self, reply: dict[str, Any]) -> None:
        self.reply = reply
        self._done.release()

    def wait(self, timeout: float) -> dict[str, Any] | None:
        return self.reply if self._done.acquire(timeout=max(0.0, timeout)) else None


_ERRORS: dict[str, type[Exception]] = {
    "AirTimeout": AirTimeout,
    "AirCollision": AirCollision,
    "AirError": AirError,
    "ValueError": ValueError,
}
_GONE = {"k": "gone"}

Dispatch = Callable[[int, str, dict[str, Any]], None]


def _error_type(exc: BaseException) -> str:
    return next((c.__name__ for c in type(exc).__mro__ if c.__name__ in _ERRORS), "BrokerError")


def _unpack(reply: dict[str, Any]) -> Any:
    """A reply's value, or its error raised again."""
    kind = reply.get("k")
    if kind == "ok":
        return reply.get("value")
    if kind == "err":
        raise _ERRORS.get(str(reply.get("type")), BrokerError)(str(reply.get("msg", "")))
    raise BrokerGone("the connection to the field broker is lost")


class _Peer:
    """Numbered calls both ways over one wire; replies find their caller by number.

    :meth:`run` (on a thread of its own) reads everything: replies wake their callers, and
    calls from the other side go to ``dispatch``, which must not block the reading thread
    (it answers later through :meth:`reply` or :meth:`fail`).
    """

    def __init__(self, wire: _Wire, dispatch: Dispatch) -> None:
        self.wire = wire
        self._dispatch = dispatch
        self._ids = itertools.count(1)
        self._waiting: dict[int, _Waiter] = {}
        self._lock = threading.Lock()
        self.gone = threading.Event()

    def call(self, op: str, timeout: float, /, **args: Any) -> Any:
        call_id = next(self._ids)
        waiter = _Waiter()
        with self._lock:
            if self.gone.is_set():
                raise BrokerGone("the connection is closed")
            self._waiting[call_id] = waiter
        try:
            self.wire.send({"k": "call", "id": call_id, "op": op, "args": args})
        except OSError as exc:
            self._forget(call_id)
            raise BrokerGone(f"the connection is lost: {exc}") from exc
        reply = waiter.wait(timeout)
        if reply is None:
            self._forget(call_id)
            raise BrokerError(f"no answer to {op} within {timeout:.1f}s")
        return _unpack(reply)

    def reply(self, call_id: int, value: Any) -> None:
        self._send_quietly({"k": "ok", "id": call_id, "value": value})

    def fail(self, call_id: int, exc: BaseException) -> None:
        self._send_quietly({"k": "err", "id": call_id, "type": _error_type(exc), "msg": str(exc)})

    def run(self) -> None:
        """Read until the other side hangs up; then every pending call fails (BrokerGone)."""
        try:
            while (message := self.wire.receive()) is not None:
                self._route(message)
        finally:
            with self._lock:
                self.gone.set()
                waiting, self._waiting = self._waiting, {}
            for waiter in waiting.values():
                waiter.set(_GONE)

    def _route(self, message: dict[str, Any]) -> None:
        if message.get("k") == "call":
            args = message.get("args")
            self._dispatch(message.get("id", 0), str(message.get("op")), args or {})
            return
        with self._lock:
            waiter = self._waiting.pop(message.get("id", 0), None)
        if waiter is not None:
            waiter.set(message)

    def _forget(self, call_id: int) -> None:
        with self._lock:
            self._waiting.pop(call_id, None)

    def _send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the other side is gone: run() notices
            self.wire.send(message)


# -- the broker --------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[bool]:
    """Hold ``lock_path``'s exclusive lock (yields False when another process holds it).

    The kernel drops the lock when its holder dies, so a crashed broker never blocks the
    next one; the file keeps the holder's pid for people.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        os.close(fd)


@dataclass
class _Tag:
    kind: str
    responder: Any
    antenna: Antenna


class Broker:
    """One field behind a Unix socket: what ``serve`` runs (tests may run one in a thread).

    ``tag_factory(kind)`` builds the responder of a placed tag, a virtual tag whose
    ``memory`` attribute is its whole memory image (bytes; set to load an image); the
    default is :func:`nfcpay.transport.virtual.tags.make_tag`.
    """

    def __init__(
        self,
        name: str,
        *,
        directory: Path,
        idle_exit: float | None = DEFAULT_IDLE_EXIT,
        tag_factory: TagFactory | None = None,
    ) -> None:
        self.name = name
        self.path = socket_path(name, directory)
        self.idle_exit = idle_exit
        self.field = Field(name)
        self._tag_factory = tag_factory
        self._lock = threading.Lock()
        self._clients: set[_Client] = set()
        self._tags: dict[str, _Tag] = {}
        self._tag_numbers = itertools.count(1)
        self._idle_since = time.monotonic()
        self._stopping = threading.Event()
        #: Set once the socket accepts connections (for brokers run in a thread).
        self.ready = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix=f"field-{name}")

    def serve(self) -> None:
        """Run until stopped or idle for ``idle_exit`` seconds (BrokerAlreadyRunning if
        another broker holds the field)."""
        with _exclusive(self.path.with_suffix(".lock")) as held:
            if not held:
                raise BrokerAlreadyRunning(f"another broker holds field {self.name!r}")
            listener = self._bind()
            log.info("field %s: broker %d listening on %s", self.name, os.getpid(), self.path)
            self.ready.set()
            try:
                self._accept(listener)
            finally:
                self._shut_down(listener)

    def stop(self) -> None:
        """Ask :meth:`serve` to return (thread- and signal-safe)."""
        self._stopping.set()

    def _bind(self) -> socket.socket:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a dead broker's: we hold the lock
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            self.path.chmod(0o600)
            listener.listen(64)
            listener.settimeout(ACCEPT_TICK)
        except BaseException:
            listener.close()
            raise
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and not self._idle_for_good():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            client = _Client(self, sock)
            with self._lock:
                self._clients.add(client)
            client.thread.start()

    def _idle_for_good(self) -> bool:
        if self.idle_exit is None:
            return False
        with self._lock:
            if self._clients or self._tags:
                return False
            return time.monotonic() - self._idle_since >= self.idle_exit

    def _shut_down(self, listener: socket.socket) -> None:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.wire.hang_up()
        for client in clients:
            client.thread.join(_JOIN_TIMEOUT)
        self._pool.shutdown(wait=False, cancel_futures=True)
        why = "asked to" if self._stopping.is_set() else f"idle for {self.idle_exit}s"
        log.info("field %s: broker %d stopped (%s)", self.name, os.getpid(), why)

    def submit(self, work: Callable[..., None], *args: Any) -> None:
        """Run ``work`` on a pool thread (calls that block must not hold a reading thread)."""
        self._pool.submit(work, *args)

    def leave(self, client: _Client) -> None:
        with self._lock:
            self._clients.discard(client)
            if not self._clients and not self._tags:
                self._idle_since = time.monotonic()

    # -- tags ---------------------------------------------------------------------------

    def place_tag(self, kind: str, tag_id: str | None = None, memory: bytes | None = None) -> str:
        """Put a new tag of ``kind`` in the field (with ``memory`` if given); its id."""
        responder = self._make_tag(kind)
        if memory is not None:
            _load_memory(responder, kind, memory)
        with self._lock:
            tag_id = validate_name(tag_id, "tag") if tag_id is not None else self._new_tag_id()
            if tag_id in self._tags:
                raise ValueError(f"tag {tag_id!r} already lies in field {self.name!r}")
            antenna = self.field.attach(f"tag:{tag_id}")
            self._tags[tag_id] = _Tag(kind, responder, antenna)
        antenna.listen(responder)
        if antenna.external_field:
            responder.field_changed(True)  # put into a live field, the tag powers up
        log.info("field %s: placed %s tag %s", self.name, kind, tag_id)
        return tag_id

    def remove_tag(self, tag_id: str) -> None:
        with self._lock:
            tag = self._tags.pop(tag_id, None)
        if tag is None:
            raise ValueError(f"no tag {tag_id!r} in field {self.name!r}")
        tag.antenna.close()
        log.info("field %s: removed tag %s", self.name, tag_id)

    def read_tag(self, tag_id: str) -> TagInfo:
        with self._lock:
            tag = self._tags.get(tag_id)
        if tag is None:
            raise ValueError(f"no tag {tag_id!r} in field {self.name!r}")
        return {"kind": tag.kind, "memory": bytes(tag.responder.memory)}

    def _make_tag(self, kind: str) -> Any:
        if self._tag_factory is not None:
            return self._tag_factory(kind)
        # Imported here: a field without tags does not need the tag emulators.
        from nfcpay.transport.virtual.tags import make_tag

        return make_tag(kind)

    def _new_tag_id(self) -> str:
        while (tag_id := f"tag-{next(self._tag_numbers)}") in self._tags:
            pass
        return tag_id

    def status(self) -> dict[str, Any]:
        """The field's antennas (tags aside) and tags, as :meth:`RemoteField.status` shows."""
        with self._lock:
            tags = dict(self._tags)
        tag_antennas = {tag.antenna.id for tag in tags.values()}
        antennas = [
            {"name": a.name, "carrier": a.carrier_on, "listening": a.responder is not None}
            for a in self.field.antennas
            if a.id not in tag_antennas
        ]
        return {
            "field": self.name,
            "pid": os.getpid(),
            "protocol": PROTOCOL_VERSION,
            "antennas": antennas,
            "tags": [{"id": tag_id, "kind": tag.kind} for tag_id, tag in tags.items()],
        }


def _load_memory(tag: Any, kind: str, memory: bytes) -> None:
    """Give a fresh tag a memory image (as :meth:`Broker.read_tag` shows it)."""
    size = len(tag.memory)
    if len(memory) != size:
        raise ValueError(f"a {kind} tag holds {size} bytes of memory, not {len(memory)}")
    try:
        tag.memory = bytes(memory)
    except AttributeError:  # a read-only property
        raise ValueError(f"a {kind} tag cannot be given a memory image") from None


#: Calls that may wait on the air or on other clients: they run on the broker's pool.
_BLOCKING = frozenset({"carrier", "exchange", "detach"})


class _Client:
    """One connection to the broker: its antennas, and the way to its responders."""

    def __init__(self, broker: Broker, sock: socket.socket) -> None:
        self.broker = broker
        self.wire = _Wire(sock)
        self.peer = _Peer(self.wire, self._dispatch)
        self.antennas: dict[int, Antenna] = {}
        self.thread = threading.Thread(target=self._serve, name="field-client", daemon=True)
        self._ops: dict[str, Callable[..., Any]] = {
            "attach": self._attach,
            "detach": self._detach,
            "carrier": self._carrier,
            "exchange": self._exchange,
            "listen": self._listen,
            "answer": self._answer,
            "external_field": self._external_field,
            "place_tag": broker.place_tag,
            "remove_tag": broker.remove_tag,
            "read_tag": broker.read_tag,
            "status": broker.status,
            "stop": broker.stop,
        }

    def _serve(self) -> None:
        try:
            if self._hello():
                self.peer.run()
        finally:
            antennas = list(self.antennas.values())
            for antenna in antennas:
                antenna.close()  # a client that left takes its carrier with it
            if antennas:
                names = ", ".join(antenna.name for antenna in antennas)
                log.info("field %s: a client left; detached %s", self.broker.name, names)
            self.broker.leave(self)
            self.wire.close()

    def _hello(self) -> bool:
        sock = self.wire.sock
        try:
            sock.settimeout(HELLO_TIMEOUT)
            magic, version = _HELLO.unpack(_recv_exactly(sock, _HELLO.size))
            sock.sendall(_hello())
            sock.settimeout(None)
        except OSError:
            return False
        if (magic, version) != (MAGIC, PROTOCOL_VERSION):
            log.warning("field %s: refused a client speaking v%d", self.broker.name, version)
            return False
        return True

    def _dispatch(self, call_id: int, op: str, args: dict[str, Any]) -> None:
        handler = self._ops.get(op)
        if handler is None:
            self.peer.fail(call_id, BrokerError(f"unknown operation {op!r}"))
        elif op in _BLOCKING:
            try:
                self.broker.submit(self._run, call_id, handler, args)
            except RuntimeError:  # the pool is shut down
                self.peer.fail(call_id, BrokerError("the field is closing"))
        else:
            self._run(call_id, handler, args)

    def _run(self, call_id: int, handler: Callable[..., Any], args: dict[str, Any]) -> None:
        try:
            value = handler(**args)
        except Exception as exc:
            if not isinstance(exc, AirError | ValueError):
                log.exception("field %s: %s failed", self.broker.name, handler.__name__)
            self.peer.fail(call_id, exc)
        else:
            self.peer.reply(call_id, value)

    def _antenna(self, a: int) -> Antenna:
        antenna = self.antennas.get(a)
        if antenna is None:
            raise ValueError(f"no antenna {a} on this connection")
        return antenna

    def _attach(self, name: str) -> int:
        antenna = self.broker.field.attach(name)
        self.antennas[antenna.id] = antenna
        log.info("field %s: antenna %s attached", self.broker.name, name)
        return antenna.id

    def _detach(self, a: int) -> None:
        antenna = self.antennas.pop(a, None)
        if antenna is not None:
            antenna.close()
            log.info("field %s: antenna %s detached", self.broker.name, antenna.name)

    def _carrier(self, a: int, on: bool) -> None:
        self._antenna(a).carrier(bool(on))

    def _exchange(self, a: int, brty: str, data: bytes, timeout: float) -> bytes:
        return self._antenna(a).exchange(AirFrame(brty, bytes(data)), float(timeout))

    def _listen(self, a: int, on: bool) -> None:
        self._antenna(a).listen(_RemoteResponder(self.peer, a) if on else None)

    def _answer(self, a: int, xid: int, data: bytes) -> bool:
        return self._antenna(a).answer(xid, bytes(data))

    def _external_field(self, a: int) -> bool:
        return self._antenna(a).external_field


class _RemoteResponder:
    """A client's responder as the broker's field sees it: each call is a round trip."""

    def __init__(self, peer: _Peer, antenna_id: int) -> None:
        self.peer = peer
        self.antenna_id = antenna_id

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        try:
            value = self.peer.call(
                "respond",
                CALLBACK_TIMEOUT,
                a=self.antenna_id,
                brty=frame.brty,
                data=frame.data,
                xid=exchange_id,
            )
        except BrokerError as exc:  # gone or stuck: a dead chip does not answer
            log.warning("antenna %d does not respond: %s", self.antenna_id, exc)
            return SILENT
        if value == "later":
            return LATER
        return SILENT if value is None else bytes(value)

    def field_changed(self, on: bool) -> None:
        try:
            self.peer.call("field_changed", CALLBACK_TIMEOUT, a=self.antenna_id, on=on)
        except (BrokerError, AirError) as exc:
            log.warning("antenna %d missed field_changed(%s): %s", self.antenna_id, on, exc)


# -- the client --------------------------------------------------------------------------------


def _encode_reply(reply: Reply) -> bytes | str | None:
    if reply is LATER:
        return "later"
    return bytes(reply) if isinstance(reply, bytes | bytearray) else None


class RemoteField:
    """A connection to a field broker (from :func:`connect`); close it when done.

    A reading thread takes the broker's messages; responders run, one call at a time and
    in order, on a callback thread, so they may call the antenna (``answer``,
    ``external_field``) without blocking the connection.
    """

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        #: Close the connection when its last antenna closes (see :func:`open_antenna`).
        self.close_with_antennas = False
        self._stopping = False
        self._peer = _Peer(_Wire(sock), self._dispatch)
        self._antennas: dict[int, RemoteAntenna] = {}
        self._callbacks: queue.SimpleQueue[tuple[int | None, str, dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"field-{name}", daemon=True)
        self._worker = threading.Thread(
            target=self._run_callbacks, name=f"field-{name}-callbacks", daemon=True
        )
        self._reader.start()
        self._worker.start()

    def attach(self, antenna_name: str) -> RemoteAntenna:
        """A new antenna in the field, named for logs and :meth:`status`."""
        antenna_id = self._call("attach", name=antenna_name)
        antenna = RemoteAntenna(self, antenna_name, antenna_id)
        self._antennas[antenna_id] = antenna
        return antenna

    def place_tag(
        self, kind: str, *, tag_id: str | None = None, memory: bytes | None = None
    ) -> str:
        """Lay a new virtual tag of ``kind`` in the field (its memory image if given); its id.

        ValueError for an unknown kind, a taken id, or memory of the wrong size.
        """
        memory = bytes(memory) if memory is not None else None
        return str(self._call("place_tag", kind=kind, tag_id=tag_id, memory=memory))

    def remove_tag(self, tag_id: str) -> None:
        self._call("remove_tag", tag_id=tag_id)

    def read_tag(self, tag_id: str) -> TagInfo:
        """``{"kind": str, "memory": bytes}`` of a tag in the field."""
        value = self._call("read_tag", tag_id=tag_id)
        return {"kind": value["kind"], "memory": bytes(value["memory"])}

    def status(self) -> dict[str, Any]:
        """``field``, broker ``pid``, ``protocol``, ``antennas`` (``name``, ``carrier``,
        ``listening``) and ``tags`` (``id``, ``kind``)."""
        return dict(self._call("status"))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker, and wait (up to ``timeout``) until it has hung up on everyone."""
        self._stopping = True  # the broker hanging up is what we asked for
        with contextlib.suppress(BrokerGone):
            self._call("stop")
        self._peer.gone.wait(timeout)

    def close(self) -> None:
        """Hang up: the broker detaches this connection's antennas."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._peer.wire.hang_up()
        self._callbacks.put(None)
        for thread in (self._reader, self._worker):
            if thread is not threading.current_thread():
                thread.join(_JOIN_TIMEOUT)
        self._peer.wire.close()

    def __enter__(self) -> RemoteField:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def list(self) -> Tags:
        """The tags in the field (``id``, ``kind``)."""
        return list(self.status()["tags"])

    # -- internals used by RemoteAntenna ----------------------------------------------------

    def _call(self, op: str, timeout: float = CALL_GRACE, /, **args: Any) -> Any:
        return self._peer.call(op, timeout, **args)

    def _quietly(self, op: str, **args: Any) -> None:
        """Call ``op``, doing nothing once the broker is gone (the field is dead anyway)."""
        with contextlib.suppress(BrokerGone):
            self._call(op, **args)

    def _forget(self, antenna: RemoteAntenna) -> None:
        self._antennas.pop(antenna.id, None)
        if self.close_with_antennas and not self._antennas:
            self.close()

    def _read(self) -> None:
        self._peer.run()
        if self._closed.is_set() or self._stopping:
            return
        log.warning("field %s: lost the broker", self.name)
        for antenna in list(self._antennas.values()):
            if antenna.sensing:  # the field died with the broker
                self._callbacks.put((None, "field_changed", {"a": antenna.id, "on": False}))

    def _dispatch(self, call_id: int, op: str, args: dict[str, Any]) -> None:
        self._callbacks.put((call_id, op, args))

    def _run_callbacks(self) -> None:
        while (item := self._callbacks.get()) is not None:
            call_id, op, args = item
            try:
                value = self._callback(op, args)
            except Exception as exc:
                log.exception("field %s: %s failed", self.name, op)
                failure = AirError(f"the responder of antenna {args.get('a')} failed: {exc!r}")
                if call_id is not None:
                    self._peer.fail(call_id, failure)
            else:
                if call_id is not None:
                    self._peer.reply(call_id, value)

    def _callback(self, op: str, args: dict[str, Any]) -> bytes | str | None:
        antenna = self._antennas.get(args["a"])
        responder = antenna.responder if antenna is not None else None
        if op == "respond":
            if responder is None:
                return None
            frame = AirFrame(args["brty"], bytes(args["data"]))
            return _encode_reply(responder.respond(frame, args["xid"]))
        if op == "field_changed":
            on = bool(args["on"])
            if antenna is not None:
                antenna.sensing = on
            if responder is not None:
                responder.field_changed(on)
            return None
        raise BrokerError(f"unknown callback {op!r}")


class RemoteAntenna:
    """An antenna in a broker's field, with :class:`~nfcpay.transport.virtual.field.Antenna`'s
    API (``carrier``, ``exchange``, ``listen``, ``answer``, ``external_field``, ``close``)."""

    def __init__(self, field: RemoteField, name: str, antenna_id: int) -> None:
        self.field = field
        self.name = name
        self.id = antenna_id
        self.carrier_on = False
        self.responder: Responder | None = None
        #: Whether the external carrier is on, as the last field_changed said.
        self.sensing = False

    def carrier(self, on: bool) -> None:
        """Switch this antenna's own carrier (free when it already is so)."""
        if on == self.carrier_on:
            return
        self.carrier_on = on
        self.field._quietly("carrier", a=self.id, on=on)

    def exchange(self, frame: AirFrame, timeout: float) -> bytes:
        """Send ``frame`` and return the answer; AirTimeout, AirCollision or AirError."""
        try:
            answer = self.field._call(
                "exchange",
                timeout + CALL_GRACE,
                a=self.id,
                brty=frame.brty,
                data=frame.data,
                timeout=timeout,
            )
        except BrokerError as exc:
            raise AirError(f"field {self.field.name}: {exc}") from exc
        return bytes(answer)

    def listen(self, responder: Responder | None) -> None:
        """Answer frames with ``responder`` (called on the field's callback thread)."""
        self.responder = responder
        self.field._quietly("listen", a=self.id, on=responder is not None)

    def answer(self, exchange_id: int, data: bytes) -> bool:
        """Answer a deferred frame; False when the sender gave up (or the field is gone)."""
        try:
            return bool(self.field._call("answer", a=self.id, xid=exchange_id, data=bytes(data)))
        except BrokerGone:
            return False

    @property
    def external_field(self) -> bool:
        """Whether another antenna's carrier is on."""
        try:
            return bool(self.field._call("external_field", a=self.id))
        except BrokerGone:
            return False

    def close(self) -> None:
        self.responder = None
        self.field._quietly("detach", a=self.id)
        self.field._forget(self)

    def __repr__(self) -> str:
        return f"<RemoteAntenna {self.name} in {self.field.name}>"


# -- starting, connecting, stopping -----------------------------------------------------------


def connect(
    name: str,
    *,
    directory: Path,
    start: bool = True,
    idle_exit: float | None = DEFAULT_IDLE_EXIT,
) -> RemoteField:
    """Connect to field ``name``, starting its broker first unless ``start`` is False
    (then BrokerNotRunning when none answers). BrokerVersionError: another nfcpay's broker."""
    path = socket_path(name, directory)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            return RemoteField(name, _dial(path))
        except OSError as exc:
            # None there, or a broker that just exited idle: start one and try again.
            if not start:
                raise BrokerNotRunning(f"no broker answers for field {name!r} ({path})") from exc
            if time.monotonic() > deadline:
                raise BrokerError(f"cannot connect to field {name!r}: {exc}") from exc
        start_field(name, directory=path.parent, idle_exit=idle_exit)


def open_antenna(
    field_name: str,
    antenna_name: str,
    *,
    directory: Path,
    start: bool = True,
    idle_exit: float | None = DEFAULT_IDLE_EXIT,
) -> RemoteAntenna:
    """An antenna on a connection of its own, which closing the antenna hangs up (what a
    chip emulator wants: closing the device releases everything)."""
    remote = connect(field_name, directory=directory, start=start, idle_exit=idle_exit)
    try:
        antenna = remote.attach(antenna_name)
    except BaseException:
        remote.close()
        raise
    remote.close_with_antennas = True
    return antenna


def start_field(name: str, *, directory: Path, idle_exit: float | None = DEFAULT_IDLE_EXIT) -> Path:
    """Start the broker of field ``name`` unless one already answers; its socket path.

    Two processes may start the same field at once: one broker wins the field's lock, the
    other exits, and both callers return once the winner answers. ``idle_exit`` (seconds,
    None: never) applies to a broker this call starts.
    """
    path = socket_path(name, directory)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(path):
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the broker of field {name!r} did not start within {START_TIMEOUT:.0f}s "
                f"(see {_log_path(path)})"
            )
        _launch(name, path, idle_exit, deadline)
    return path


def _launch(name: str, path: Path, idle_exit: float | None, deadline: float) -> None:
    """Run one detached ``serve`` process; return once the field answers or it lost the race."""
    idle = "none" if idle_exit is None else repr(float(idle_exit))
    command = [sys.executable, "-m", MODULE, "serve", name, "--dir", str(path.parent)]
    with _log_path(path).open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and args
            [*command, "--idle-exit", idle],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            cwd="/",
            start_new_session=True,  # not in the starter's process group: Ctrl-C spares it
        )
    # Reaps the broker whenever it exits (and keeps Popen from warning it still runs).
    threading.Thread(target=process.wait, name=f"reap-{name}", daemon=True).start()
    while time.monotonic() < deadline and not _answers(path):
        code = process.returncode
        if code == EXIT_ALREADY_RUNNING:
            return
        if code is not None:
            raise BrokerError(
                f"the broker of field {name!r} exited with status {code} (see {_log_path(path)})"
            )
        time.sleep(_START_POLL)


def stop_field(name: str, *, directory: Path) -> bool:
    """Stop the broker of field ``name``; False when none was running."""
    try:
        remote = connect(name, directory=directory, start=False)
    except BrokerNotRunning:
        return False
    with remote:
        remote.stop()
    return True


# -- command line ------------------------------------------------------------------------------


def _name_arg(text: str) -> str:
    try:
        return validate_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _idle_exit_arg(text: str) -> float | None:
    if text == "none":
        return None
    seconds = float(text)
    if seconds < 0:
        raise argparse.ArgumentTypeError("idle time must be >= 0 seconds, or none")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}", description="The broker of a shared virtual RF field."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("serve", "run the broker of a field (start_field() does this, detached)"),
        ("stop", "stop the broker of a field"),
        ("status", "print a field's antennas and tags as JSON"),
    ):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("name", type=_name_arg)
        sub.add_argument("--dir", type=Path, required=True, help="the fields' directory")
        if command == "serve":
            sub.add_argument(
                "--idle-exit",
                type=_idle_exit_arg,
                default=DEFAULT_IDLE_EXIT,
                help="exit after this many idle seconds, or none (default: %(default)s)",
            )
    return parser


def _serve(args: argparse.Namespace) -> int:
    broker = Broker(args.name, directory=args.dir, idle_exit=args.idle_exit)
    logging.basicConfig(
        filename=_log_path(broker.path),
        level=logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(message)s",
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: broker.stop())
    try:
        broker.serve()
    except BrokerAlreadyRunning as exc:
        log.info("%s: this one (%d) exits", exc, os.getpid())
        return EXIT_ALREADY_RUNNING
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = stop_field(args.name, directory=args.dir)
    print(f"field {args.name}: {'stopped' if stopped else 'not running'}")
    return 0


def _status(args: argparse.Namespace) -> int:
    try:
        remote = connect(args.name, directory=args.dir, start=False)
    except BrokerNotRunning:
        print(f"field {args.name}: not running")
        return 1
    with remote:
        print(json.dumps(remote.status(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``serve|stop|status NAME [--dir D]``: see ``--help``."""
    args = _parser().parse_args(argv)
    return {"serve": _serve, "stop": _stop, "status": _status}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
