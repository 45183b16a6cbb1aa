"""Test hook: drop the NFC link abruptly at a chosen message of this process.

Off unless a harness switches it on with :func:`enable`: the ``nfcpay`` command does when
the environment variable ``NFCPAY_FAULT_LINK_DROP`` is set (the CLI reads it at start-up).
Off (the normal case) nothing is installed and channels run their own ``send``/``receive``
untouched. Meant for crash-safety tests (``tests/hardening``), never for production use::

    NFCPAY_FAULT_LINK_DROP=send:3   # just before this process sends its 3rd message
    NFCPAY_FAULT_LINK_DROP=recv:2   # just after this process has received its 2nd message

Messages are counted from 1 over every :class:`~nfcpay.transport.channel.Channel` of the
process (one tap for most commands; a collector that serves several taps counts on), and
the fault fires once. When it fires, the reader goes silent at once — as if the phones were
pulled apart: no further frame leaves this process (no LLCP DISC, no NFC-DEP release), the
peer only learns of it from its own link timeout or the field going off, and the channel
call raises :class:`~nfcpay.errors.LinkLost`. For ``recv:N`` the message did arrive (the
peer saw it delivered) but is discarded unread. The reader works again at the next tap.

A malformed value is a :class:`~nfcpay.errors.ConfigError` naming the variable and the
accepted form, raised at start-up so a mistyped test fails loudly instead of running
unfaulted.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from nfcpay import errors

ENV = "NFCPAY_FAULT_LINK_DROP"
_SPEC = re.compile(r"^(send|recv):([1-9][0-9]{0,5})$")
#: How long a silenced reader waits before reporting "no answer" to nfcpy's own threads.
_SILENT_WAIT = 0.05


@dataclass(frozen=True)
class LinkDrop:
    """Drop the link before the ``index``-th send, or after the ``index``-th receive."""

    when: Literal["send", "recv"]
    index: int

    def __str__(self) -> str:
        return f"{self.when}:{self.index}"


def parse(value: str) -> LinkDrop | None:
    """``"send:3"`` → ``LinkDrop("send", 3)``; empty → None; anything else a ConfigError."""
    text = value.strip()
    if not text:
        return None
    match = _SPEC.match(text)
    if match is None:
        raise errors.ConfigError(
            f"{ENV}={value!r} is not a fault: use send:N or recv:N with N ≥ 1 "
            "(e.g. send:3 drops the link just before this process sends its 3rd message)"
        )
    when: Literal["send", "recv"] = "send" if match.group(1) == "send" else "recv"
    return LinkDrop(when, int(match.group(2)))


class _Failpoint:
    """Counts this process's messages and silences the reader once the drop fires."""

    def __init__(self, drop: LinkDrop) -> None:
        self.drop = drop
        self._lock = threading.Lock()
        self._counts = {"send": 0, "recv": 0}
        self._fired = False
        self.silent = False

    def count(self, when: Literal["send", "recv"]) -> None:
        """Count one message; drop the link if it is the chosen one."""
        with self._lock:
            self._counts[when] += 1
            if self._fired or when != self.drop.when or self._counts[when] != self.drop.index:
                return
            self._fired = True
            self.silent = True
        where = "before sending" if when == "send" else "after receiving"
        raise errors.LinkLost(
            f"the NFC link dropped {where} message {self.drop.index} "
            f"(fault injected by {ENV}={self.drop})"
        )


_failpoint: _Failpoint | None = None


def enable(drop: LinkDrop) -> None:
    """Switch the hook on for the rest of this process: every Channel class, those defined
    already and those still to come, counts its messages and drops the link at ``drop``."""
    global _failpoint
    if _failpoint is not None:
        raise RuntimeError(f"the link-drop hook is on already ({_failpoint.drop})")
    _failpoint = _Failpoint(drop)
    from nfcpay.transport.channel import Channel

    pending = list(Channel.__subclasses__())
    while pending:
        cls = pending.pop()
        pending += cls.__subclasses__()
        if cls.carries_frames:
            instrument(cls)


def instrument(cls: type[Any]) -> None:
    """Wrap the ``send``/``receive`` a Channel subclass defines (no-op unless enabled)."""
    failpoint = _failpoint
    if failpoint is None:
        return
    _silence_reader_on(failpoint)
    if "send" in cls.__dict__:
        cls.send = _before(cls.__dict__["send"], failpoint)
    if "receive" in cls.__dict__:
        cls.receive = _after(cls.__dict__["receive"], failpoint)


def _before(send: Callable[..., None], failpoint: _Failpoint) -> Callable[..., None]:
    @functools.wraps(send)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> None:
        failpoint.count("send")
        send(self, *args, **kwargs)

    return wrapped


def _after(receive: Callable[..., bytes], failpoint: _Failpoint) -> Callable[..., bytes]:
    @functools.wraps(receive)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> bytes:
        message = receive(self, *args, **kwargs)
        failpoint.count("recv")
        return message

    return wrapped


_silenced = False


def _silence_reader_on(failpoint: _Failpoint) -> None:
    """Make nfcpy's frame exchange go quiet while ``failpoint.silent``; a new tap (poll or
    listen) ends the silence. Every carrier and driver sends its frames through
    ``ContactlessFrontend.exchange``, so this cuts LLCP and Type 3 links alike."""
    global _silenced
    if _silenced:
        return
    _silenced = True
    import nfc.clf

    frontend = nfc.clf.ContactlessFrontend
    exchange, sense, listen = frontend.exchange, frontend.sense, frontend.listen

    def silent_exchange(self: Any, send_data: Any, timeout: float | None) -> Any:
        if failpoint.silent:
            time.sleep(_SILENT_WAIT if timeout is None else min(timeout, _SILENT_WAIT))
            raise nfc.clf.TimeoutError("the link was dropped (fault injection)")
        return exchange(self, send_data, timeout)

    def new_tap(start: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(start)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            failpoint.silent = False
            return start(self, *args, **kwargs)

        return wrapped

    frontend.exchange = silent_exchange
    frontend.sense = new_tap(sense)
    frontend.listen = new_tap(listen)
