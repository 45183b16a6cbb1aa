"""Whole NDEF messages of nfcpay records: the only entry points carriers should use.

ndeflib 0.3.3 raises its own DecodeError on most bad input, but also bare ``ValueError``,
``UnicodeDecodeError`` and others on some (found by fuzzing). :func:`decode_message` turns
every one of them into :class:`nfcpay.errors.DecodeError`, so a carrier needs exactly one
``except``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar, overload

import ndef

from nfcpay.errors import DecodeError, EncodeError
from nfcpay.records.base import NfcpayRecord, WireStruct
from nfcpay.records.fields import specs_of

#: Largest NDEF message accepted or produced (bytes). A means with 8 grants is ~1 kB.
MAX_MESSAGE_SIZE = 4096
#: Most records in one message.
MAX_RECORDS = 16

R = TypeVar("R", bound=NfcpayRecord)
Expect = type[NfcpayRecord] | tuple[type[NfcpayRecord], ...] | None


def encode_message(records: Iterable[NfcpayRecord]) -> bytes:
    """The NDEF message octets for ``records`` (MB/ME flags set by ndeflib)."""
    records = list(records)
    if not records:
        raise EncodeError("an NDEF message needs at least one record")
    if len(records) > MAX_RECORDS:
        raise EncodeError(f"{len(records)} records in one message, at most {MAX_RECORDS}")
    for record in records:
        if not isinstance(record, NfcpayRecord):
            raise TypeError(f"not an nfcpay record: {type(record).__name__}")
    octets = b"".join(ndef.message_encoder(records))
    if len(octets) > MAX_MESSAGE_SIZE:
        raise EncodeError(f"message is {len(octets)} bytes, at most {MAX_MESSAGE_SIZE}")
    return octets


def decode_message(octets: bytes, *, expect: Expect = None) -> list[NfcpayRecord]:
    """Decode an NDEF message made only of nfcpay records, in canonical form.

    ``expect`` (a record class or a tuple of them) is checked for every record. Anything
    wrong — size, framing, payload, a foreign or unexpected record type — raises DecodeError
    and nothing is returned.
    """
    if not isinstance(octets, bytes | bytearray | memoryview):
        raise TypeError(f"octets must be bytes, not {type(octets).__name__}")
    octets = bytes(octets)
    if not octets:
        raise DecodeError("empty input: no NDEF message")
    if len(octets) > MAX_MESSAGE_SIZE:
        raise DecodeError(f"message is {len(octets)} bytes, at most {MAX_MESSAGE_SIZE}")
    try:
        records = list(ndef.message_decoder(octets, errors="strict"))
    except DecodeError:
        raise
    except Exception as exc:  # ndeflib raises more than its own DecodeError: see module doc
        raise DecodeError(f"malformed NDEF message: {exc}") from exc
    if len(records) > MAX_RECORDS:
        raise DecodeError(f"{len(records)} records in one message, at most {MAX_RECORDS}")
    for index, record in enumerate(records, 1):
        if not isinstance(record, NfcpayRecord):
            raise DecodeError(f"record {index} has type {record.type!r}: not an nfcpay record")
        if expect is not None and not isinstance(record, expect):
            raise DecodeError(f"record {index}: expected {_names(expect)}, got {record.type_name}")
    _check_canonical(octets, b"".join(ndef.message_encoder(records)))
    return records


@overload
def decode_one(octets: bytes, expect: type[R]) -> R: ...
@overload
def decode_one(octets: bytes, expect: Expect = None) -> NfcpayRecord: ...
def decode_one(octets: bytes, expect: Expect = None) -> NfcpayRecord:
    """Decode a message that must hold exactly one record (of type ``expect``, if given)."""
    records = decode_message(octets, expect=expect)
    if len(records) != 1:
        raise DecodeError(f"expected one record, got {len(records)}")
    return records[0]


def _check_canonical(octets: bytes, canonical: bytes) -> None:
    """One message, one encoding: refuse trailing bytes and non-minimal record headers."""
    if octets == canonical:
        return
    if octets.startswith(canonical):
        extra = len(octets) - len(canonical)
        raise DecodeError(f"{extra} bytes after the end of the NDEF message")
    raise DecodeError(
        "NDEF record headers are not in canonical form "
        "(a long length field for a short payload, or an empty ID field)"
    )


def _names(expect: type[NfcpayRecord] | tuple[type[NfcpayRecord], ...]) -> str:
    classes = expect if isinstance(expect, tuple) else (expect,)
    return " or ".join(cls.type_name for cls in classes)


def secrets_in(octets: bytes) -> list[bytes]:
    """The secret field values (usage-auth, signatures) of an NDEF message, nested ones
    included, for a trace to redact; [] for a message that does not decode."""
    try:
        records = decode_message(octets)
    except (DecodeError, ValueError):
        return []
    found: list[bytes] = []
    for record in records:
        _collect_secrets(record, found)
    return found


def _collect_secrets(struct: WireStruct, found: list[bytes]) -> None:
    for spec in specs_of(type(struct)):
        value = getattr(struct, spec.name)
        if spec.kind.secret and isinstance(value, bytes):
            found.append(value)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, WireStruct):
                _collect_secrets(item, found)
