"""The Channel: one tap's conversation, carrier-independent.

Within one tap the two sides alternate whole messages (bytes, one NDEF message each).
``send`` returns once the peer's transport has taken the whole message (LLCP acknowledged
it, or the reader finished reading the tag); ``receive`` returns one complete message or
raises a :class:`~nfcpay.errors.TransportError` — never a partial message.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, Literal

from nfcpay.transport import faults, timing


class Channel(abc.ABC):
    """A conversation with the peer for the duration of one tap."""

    #: "llcp" or "tt3"
    carrier: Literal["llcp", "tt3"]
    #: "listen" (we were discovered) or "poll" (we discovered the peer)
    role: Literal["listen", "poll"]

    #: Whether the link-drop test hook wraps this class (not a wrapper of another channel).
    carries_frames: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.carries_frames:
            faults.instrument(cls)  # a no-op unless a test harness enabled the link-drop hook

    @abc.abstractmethod
    def send(self, message: bytes, timeout: float = timing.SEND_TIMEOUT) -> None:
        """Deliver one whole message; returns when the peer's transport has all of it."""

    @abc.abstractmethod
    def receive(self, timeout: float) -> bytes:
        """Wait up to ``timeout`` seconds for the peer's next whole message."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} carrier={self.carrier} role={self.role}>"


class ObservedChannel(Channel):
    """Another channel whose messages, both ways, are shown to ``observe`` first (how a
    ``--trace`` learns the secrets it must redact)."""

    carries_frames = False

    def __init__(self, inner: Channel, observe: Callable[[bytes], None]) -> None:
        self.inner = inner
        self.carrier = inner.carrier
        self.role = inner.role
        self._observe = observe

    def send(self, message: bytes, timeout: float = timing.SEND_TIMEOUT) -> None:
        self._observe(message)
        self.inner.send(message, timeout)

    def receive(self, timeout: float) -> bytes:
        message = self.inner.receive(timeout)
        self._observe(message)
        return message
