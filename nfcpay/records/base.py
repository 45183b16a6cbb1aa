"""Record base classes: immutable typed values with a versioned, canonical CBOR payload.

Every nfcpay record is an NFC Forum external-type record ``nfcpay.org:<name>`` whose
PAYLOAD is one version byte followed by one CBOR map with small-integer keys::

    01  a5 01 72 "g_…" 02 70 "9900…" …

Each record type has its own payload version (:attr:`NfcpayRecord.version`, :data:`VERSION`
unless the type's meaning changed since). A terminal reads only its own version of each
type (or, where a type's new version only added a kind of record, the versions from
:attr:`NfcpayRecord.oldest_version` on, each record written with the oldest that holds it),
and a payload of another version is refused with a sentence telling which side to upgrade
(``code`` ``unsupported_version``), so two terminals on different nfcpay releases never
half-understand each other.

The map is written in canonical (deterministic) form — shortest integers, definite lengths,
sorted keys, optional fields at their default left out — and a decoded payload must
re-encode to exactly the bytes it came from. So every value has exactly one encoding, and
duplicate keys, padding, trailing bytes, tags and floats are all refused.

Records are immutable once built: construction validates every field (EncodeError) and
computes the payload once. Decoding builds records through the same constructor, so a
record that exists is valid, whichever way it was made.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self, TypeVar, dataclass_transform

import cbor2
import ndef

from nfcpay.errors import DecodeError, EncodeError
from nfcpay.records.fields import Spec, specs_of, type_label, wire

VERSION = 1
#: The ``code`` of the DecodeError for a payload of another version than this nfcpay reads.
UNSUPPORTED_VERSION = "unsupported_version"
DOMAIN = "nfcpay.org"
#: Nesting allowed in a payload: map → array → map → value.
_MAX_DEPTH = 4

T = TypeVar("T")


def record_type(name: str) -> str:
    """The ndeflib type string of an nfcpay record: ``urn:nfc:ext:nfcpay.org:<name>``."""
    return f"urn:nfc:ext:{DOMAIN}:{name}"


@dataclass_transform(kw_only_default=True, field_specifiers=(wire,))
def wire_struct(cls: type[T]) -> type[T]:
    """Make ``cls`` a keyword-only dataclass and index its :func:`wire` fields."""
    cls = dataclasses.dataclass(kw_only=True)(cls)
    specs = specs_of(cls)
    cls._specs = specs  # type: ignore[attr-defined]
    cls._by_key = {spec.key: spec for spec in specs}  # type: ignore[attr-defined]
    return cls


class WireStruct:
    """An immutable, validated value that maps to a CBOR map with integer keys."""

    type_name: ClassVar[str] = "struct"
    _specs: ClassVar[tuple[Spec, ...]] = ()
    _by_key: ClassVar[dict[int, Spec]] = {}

    def __post_init__(self) -> None:
        for spec in self._specs:
            value = getattr(self, spec.name)
            if value is None and spec.default is None:
                continue
            where = f"{self.type_name}.{spec.name}"
            object.__setattr__(self, spec.name, spec.kind.check(value, where))
        self._check()
        self._seal()

    def _check(self) -> None:
        """Rules that tie several fields together; subclasses raise EncodeError."""

    def _seal(self) -> None:
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_sealed", False):
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    @classmethod
    def wire_fields(cls) -> tuple[Spec, ...]:
        """The declared fields (name, CBOR key, kind, default) in declaration order."""
        return cls._specs

    def to_wire(self) -> dict[int, Any]:
        """The CBOR map: key → wire value, optional fields at their default left out."""
        out = {}
        for spec in self._specs:
            value = getattr(self, spec.name)
            if not spec.is_default(value):
                out[spec.key] = spec.kind.to_wire(value)
        return out

    @classmethod
    def from_wire(cls, raw: Any, where: str) -> Self:
        """Build from a decoded CBOR map; any problem raises DecodeError naming the field."""
        if not isinstance(raw, dict):
            raise DecodeError(f"{where} must be a CBOR map, not {type_label(raw)}")
        values = {}
        for key, item in raw.items():
            spec = cls._by_key.get(key) if type(key) is int else None
            if spec is None:
                raise DecodeError(f"{where} has an unknown key {key!r:.40}")
            values[spec.name] = spec.kind.from_wire(item, f"{where}.{spec.name}")
        return cls._build(values, where)

    def to_json(self, *, reveal: bool = False) -> dict[str, Any]:
        """JSON-ready fields; secrets are shortened unless ``reveal``."""
        return {
            spec.name: None
            if getattr(self, spec.name) is None
            else spec.kind.to_json(getattr(self, spec.name), reveal=reveal)
            for spec in self._specs
        }

    @classmethod
    def from_json(cls, raw: Any, where: str | None = None) -> Self:
        """Build from JSON-shaped data (hex bytes, ISO times); nulls mean "absent"."""
        where = where or cls.type_name
        if not isinstance(raw, dict):
            raise DecodeError(f"{where} must be a JSON object, not {type_label(raw)}")
        names = {spec.name: spec for spec in cls._specs}
        values = {}
        for name, item in raw.items():
            if name not in names:
                known = ", ".join(names)
                raise DecodeError(f"{where} has no field {name!r:.40} (fields: {known})")
            if item is not None:
                values[name] = names[name].kind.from_json(item, f"{where}.{name}")
        return cls._build(values, where)

    @classmethod
    def _build(cls, values: dict[str, Any], where: str) -> Self:
        missing = [spec.name for spec in cls._specs if spec.required and spec.name not in values]
        if missing:
            raise DecodeError(f"{where} is missing {', '.join(missing)}")
        try:
            return cls(**values)
        except EncodeError as exc:
            raise DecodeError(exc.message) from None


def unsupported_version(where: str, theirs: int, ours: int) -> DecodeError:
    """The error for a ``where`` payload of version ``theirs`` where this nfcpay reads ``ours``.
    It names the side to upgrade as sender or receiver, so it reads right on either terminal
    (the receiver passes it on to the sender in its refusal)."""
    age, side = ("an older", "sending") if theirs < ours else ("a newer", "receiving")
    return DecodeError(
        f"{where} payload version {theirs} is not supported: it comes from {age} nfcpay than "
        f"the receiver's (version {ours}); upgrade nfcpay on the {side} terminal",
        code=UNSUPPORTED_VERSION,
    )


def _refuse_tag(*_: Any) -> Any:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed")


class _NoTags(dict[int, Any]):
    """A semantic-decoder table that refuses every CBOR tag (dates, bignums, regexps ...)."""

    def __missing__(self, tag: int) -> Any:
        return _refuse_tag


def load_cbor(data: bytes, where: str) -> Any:
    """Decode one CBOR item without tags, indefinite lengths, duplicate keys or deep nesting."""
    try:
        return cbor2.loads(
            data,
            semantic_decoders=_NoTags(),
            tag_hook=_refuse_tag,
            max_depth=_MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        )
    except Exception as exc:  # a C extension: translate whatever it raises, by contract
        raise DecodeError(f"{where} payload is not valid CBOR: {exc}") from exc


class NfcpayRecord(WireStruct, ndef.Record):  # type: ignore[misc]  # ndeflib is untyped
    """Base of every nfcpay NDEF record (an ndeflib record class).

    Subclasses set ``_type`` (see :func:`record_type`) and the largest payload they accept,
    declare fields with :func:`wire` under :func:`wire_struct`, and register themselves with
    ``ndef.Record.register_type`` at the bottom of their module.
    """

    _type: ClassVar[str]
    #: The newest payload version this nfcpay writes and reads for this record type.
    version: ClassVar[int] = VERSION
    #: The oldest payload version still read: a type whose new version only adds a kind of
    #: record (an open-amount challenge) keeps writing the old version for the old kind, so
    #: a peer on an older nfcpay is refused only what it cannot understand.
    oldest_version: ClassVar[int] = VERSION
    _payload: bytes
    _decode_min_payload_length = 2
    _decode_max_payload_length = 512

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls._type.rsplit(":", 1)[1]
        if "oldest_version" not in cls.__dict__:
            cls.oldest_version = cls.version

    def payload_version(self) -> int:
        """The version this record is written with: :attr:`version` unless the type writes
        an older one for records an older nfcpay understands (see :attr:`oldest_version`)."""
        return self.version

    def _seal(self) -> None:
        payload = bytes([self.payload_version()]) + cbor2.dumps(self.to_wire(), canonical=True)
        limit = self._decode_max_payload_length
        if len(payload) > limit:
            raise EncodeError(f"{self.type_name} payload is {len(payload)} bytes, at most {limit}")
        object.__setattr__(self, "_payload", payload)
        super()._seal()

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "name":  # ndeflib sets the record ID after decoding
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def name(self) -> str:
        """The NDEF record ID: always empty for nfcpay records."""
        return ""

    @name.setter
    def name(self, value: object) -> None:
        if value not in ("", b"", None):
            raise ValueError(f"{self.type_name} records carry no NDEF record ID, got {value!r:.40}")

    @property
    def payload(self) -> bytes:
        """The record PAYLOAD: version byte + canonical CBOR."""
        return self._payload

    def _encode_payload(self) -> bytes:
        return self.payload

    @classmethod
    def _decode_payload(cls, octets: bytes, errors: str) -> Self:
        """Called by ndeflib with the PAYLOAD. Always strict, whatever ``errors`` says."""
        where = cls.type_name
        if not cls.oldest_version <= octets[0] <= cls.version:
            raise unsupported_version(where, octets[0], cls.version)
        record = cls.from_wire(load_cbor(octets[1:], where), where)
        if record.payload[0] != octets[0]:
            raise DecodeError(
                f"{where} payload version {octets[0]} does not fit its fields, which are "
                f"written as version {record.payload[0]}"
            )
        if record.payload != octets:
            extra = len(octets) - len(record.payload)
            if extra > 0 and octets.startswith(record.payload):
                raise DecodeError(f"{where} payload has {extra} bytes after the CBOR map")
            raise DecodeError(
                f"{where} payload is not in canonical CBOR form "
                "(non-shortest integers, unsorted keys or a default value written out)"
            )
        return record
