"""What every NFC conversation between two terminals shares.

One rule for every tap: **the waiting side listens, the tapping side polls and speaks first**
with a :class:`~nfcpay.records.HelloRecord`; then the two alternate whole NDEF messages.

=========  ==================  ======================================================
service    waits (listens)     conversation
=========  ==================  ======================================================
``give``   user terminal       target: hello → user: grant → target: ack
``pay``    merchant terminal   target: hello → merchant: challenge → target: means →
                               merchant: result
``split``  collector (target)  member: hello → collector: split request →
                               member: grant (or a refusal) → collector: ack
=========  ==================  ======================================================

Either side may answer with a refusing :class:`~nfcpay.records.AckRecord` instead of the
expected record; :func:`receive` turns that into :class:`~nfcpay.errors.Declined` carrying
the peer's code.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from nfcpay import crypto
from nfcpay.errors import Declined, ProtocolViolation, TransportError
from nfcpay.records import AckRecord, HelloRecord, Role, decode_one, encode_message
from nfcpay.records.base import NfcpayRecord
from nfcpay.terminals.home import Identity, TerminalHome
from nfcpay.transport.channel import Channel
from nfcpay.transport.reader import Reader

GIVE_SERVICE = "give"
PAY_SERVICE = "pay"
SPLIT_SERVICE = "split"
#: How long a side waits for the peer's next message inside one tap.
REPLY_TIMEOUT = 5.0
#: How long the target waits for the merchant's result: the merchant asks the server
#: (with retries) between the means and the result.
RESULT_TIMEOUT = 30.0

#: Progress callback: one short human sentence per call ("Waiting for a tap ...").
Status = Callable[[str], None]

R = TypeVar("R", bound=NfcpayRecord)


def quiet(_: str) -> None:
    """A :data:`Status` that says nothing."""


def send(channel: Channel, record: NfcpayRecord) -> None:
    channel.send(encode_message([record]))


def receive(channel: Channel, expect: type[R], timeout: float = REPLY_TIMEOUT) -> R:
    """The peer's next record, which must be ``expect`` or a refusal."""
    record = receive_or_refusal(channel, expect, timeout)
    if isinstance(record, expect):
        return record
    raise declined(record)


def receive_or_refusal(
    channel: Channel, expect: type[R], timeout: float = REPLY_TIMEOUT
) -> R | AckRecord:
    """The peer's next record: ``expect``, or the peer's refusing ack (with its code and ref)."""
    record = decode_one(channel.receive(timeout), (expect, AckRecord))
    if isinstance(record, expect):
        return record
    if isinstance(record, AckRecord) and not record.accepted:
        return record
    raise ProtocolViolation(f"expected {expect.type_name}, got {record.type_name}")


def declined(refusal: AckRecord) -> Declined:
    """The error for the peer's refusal."""
    reason = refusal.message or str(refusal.code)
    return Declined(f"the other terminal refused: {reason}", code=str(refusal.code))


def refuse(channel: Channel, code: str, message: str, ref: str | None = None) -> None:
    """Tell the peer why we stop; best effort, as the link may already be gone."""
    with contextlib.suppress(TransportError):
        send(channel, AckRecord(accepted=False, code=code, message=message[:200], ref=ref))


def own_fingerprint(home: TerminalHome) -> bytes:
    """This terminal's key fingerprint, as its hello carries it."""
    return crypto.key_fingerprint(crypto.public_key_bytes(home.private_key()))


def hello_from(home: TerminalHome, identity: Identity) -> HelloRecord:
    return HelloRecord(
        terminal_id=identity.terminal_id,
        role=Role(identity.role),
        key_fingerprint=own_fingerprint(home),
        nonce=secrets.token_bytes(16),
    )


@contextmanager
def tap(
    reader: Reader, service: str, *, offer: bool, timeout: float | None, status: Status, what: str
) -> Iterator[Channel]:
    """One tap on ``reader``, announcing what this side waits for."""
    plan = reader.plan(offer=offer)
    doing = "Waiting for a tap" if offer else "Tap the other terminal's reader"
    status(f"{doing} to {what} ({plan.carrier}, {plan.role}) on {reader.describe()}")
    with reader.tap(service, offer=offer, timeout=timeout) as channel:
        status("Connected.")
        yield channel
