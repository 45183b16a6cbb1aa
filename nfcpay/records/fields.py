"""Field kinds: how one record field is checked, put on the wire, read back and shown as JSON.

A record class declares each field with :func:`wire`, naming its small-integer CBOR key and
its kind. The kind does all per-value work, so the record modules only add the rules that
tie several fields together (``remaining_amount <= amount_cap``).

Three directions, three error types:

* ``check`` runs on construction (encode and decode alike) and raises EncodeError;
* ``from_wire`` reshapes what CBOR produced (int → datetime, list → tuple) and raises
  DecodeError when the shape is wrong;
* ``from_json`` reads JSON-shaped input (hex for bytes, ISO 8601 for times) and raises
  DecodeError.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import re
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from nfcpay.errors import DecodeError, EncodeError, MoneyError
from nfcpay.money import MAX_MINOR, check_currency

#: Latest time a record may carry (2242-03-16): unix seconds stay below 2**33.
MAX_TIMESTAMP = 2**33 - 1


def type_label(value: object) -> str:
    """``'int'``, ``'str'``, ... for error messages about wrong types."""
    return "null" if value is None else type(value).__name__


class Kind(abc.ABC):
    """One kind of field value. Subclasses override what differs from the identity."""

    #: Secrets (usage-auth, signatures) are shown shortened unless explicitly revealed.
    secret = False

    @abc.abstractmethod
    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` (normalised) if valid, else raise EncodeError."""

    def to_wire(self, value: Any) -> Any:
        return value

    def from_wire(self, raw: Any, where: str) -> Any:
        return raw

    def to_json(self, value: Any, *, reveal: bool) -> Any:
        return value

    def from_json(self, raw: Any, where: str) -> Any:
        return raw


class Text(Kind):
    """A string matching ``pattern`` (full match), at most ``max_chars`` long."""

    def __init__(self, pattern: str, max_chars: int, what: str) -> None:
        self.pattern = re.compile(pattern, re.ASCII | re.DOTALL)
        self.max_chars = max_chars
        self.what = what

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise EncodeError(f"{where} must be {self.what}, not {type_label(value)}")
        if len(value) > self.max_chars:
            raise EncodeError(f"{where} is {len(value)} characters, at most {self.max_chars}")
        if not self.pattern.fullmatch(value):
            raise EncodeError(f"{where} must be {self.what}, got {value[:48]!r}")
        return value


class Prose(Text):
    """Text for people, in any script, but without control, format or separator characters.

    Bidi overrides and zero-width characters (category Cf) could make a message shown on a
    terminal read differently from what was sent; lone surrogates cannot be encoded at all.
    """

    _REFUSED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

    def __init__(self, max_chars: int) -> None:
        super().__init__(r".*", max_chars, "printable text")

    def check(self, value: Any, where: str) -> str:
        text = super().check(value, where)
        for char in text:
            if unicodedata.category(char) in self._REFUSED:
                raise EncodeError(f"{where} must be printable text, got U+{ord(char):04X}")
        return text


def identifier(prefix: str) -> Text:
    """An nfcpay id such as ``g_3fz7q2m4k9xw6a5b`` (see nfcpay.crypto.new_id)."""
    return Text(rf"{prefix}_[a-z0-9]{{1,32}}", len(prefix) + 33, f"an id like {prefix}_…")


#: A category, region or decline code: ``5812``, ``KR-11``, ``limit_exceeded``.
TOKEN = Text(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}", 32, "a short code (letters, digits, _.:-)")
#: A message for people (a decline reason): up to 200 printable characters.
MESSAGE = Prose(200)
CARD_NUMBER = Text(r"[0-9]{12,19}", 19, "a card number of 12-19 digits")


class Currency(Kind):
    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise EncodeError(f"{where} must be a currency code, not {type_label(value)}")
        try:
            return check_currency(value)
        except MoneyError as exc:
            raise EncodeError(f"{where}: {exc.message}") from None


class Binary(Kind):
    """Bytes of ``min_len``..``max_len`` octets; hex in JSON."""

    def __init__(self, min_len: int, max_len: int, *, secret: bool = False) -> None:
        self.min_len = min_len
        self.max_len = max_len
        self.secret = secret

    def check(self, value: Any, where: str) -> bytes:
        if not isinstance(value, bytes | bytearray):
            raise EncodeError(f"{where} must be bytes, not {type_label(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            size = (
                f"{self.min_len}"
                if self.min_len == self.max_len
                else f"{self.min_len}-{self.max_len}"
            )
            raise EncodeError(f"{where} must be {size} bytes, got {len(value)}")
        return bytes(value)

    def to_json(self, value: bytes, *, reveal: bool) -> str:
        if self.secret and not reveal:
            return shorten(value)
        return value.hex()

    def from_json(self, raw: Any, where: str) -> bytes:
        if not isinstance(raw, str):
            raise DecodeError(f"{where} must be a hex string, not {type_label(raw)}")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise DecodeError(f"{where} is not hex: {raw[:16]!r}…") from None


def shorten(secret: bytes) -> str:
    """A recognisable but useless stub of a secret: first 2 bytes and the length."""
    return f"{secret[:2].hex()}…({len(secret)} bytes)"


class Integer(Kind):
    """An integer in ``low``..``high``; bools and floats are refused."""

    def __init__(self, low: int, high: int, what: str = "an integer") -> None:
        self.low = low
        self.high = high
        self.what = what

    def check(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EncodeError(f"{where} must be {self.what}, not {type_label(value)}")
        if not self.low <= value <= self.high:
            raise EncodeError(f"{where} is {value}, must be {self.low}..{self.high}")
        return value


class Amount(Integer):
    """Integer minor units of the record's ``currency`` (formatted with it for people)."""

    def __init__(self, minimum: int = 1) -> None:
        super().__init__(minimum, MAX_MINOR, "an integer amount in minor units")


def amount(minimum: int = 1) -> Amount:
    return Amount(minimum)


class Flag(Kind):
    def check(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise EncodeError(f"{where} must be true or false, not {type_label(value)}")
        return value


class Time(Kind):
    """A UTC instant with whole seconds; unix seconds on the wire, ISO 8601 in JSON.

    Sub-second parts are dropped on construction: expiries only ever move earlier.
    """

    def check(self, value: Any, where: str) -> datetime:
        if not isinstance(value, datetime):
            raise EncodeError(f"{where} must be a datetime, not {type_label(value)}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise EncodeError(f"{where} must be timezone-aware (UTC), got a naive datetime")
        try:
            normalised = value.astimezone(UTC).replace(microsecond=0)
        except OverflowError:
            normalised = None
        if normalised is None or not 0 < normalised.timestamp() <= MAX_TIMESTAMP:
            raise EncodeError(f"{where} {value.isoformat()} is out of range (1970..2242)")
        return normalised

    def to_wire(self, value: datetime) -> int:
        return int(value.timestamp())

    def from_wire(self, raw: Any, where: str) -> datetime:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise DecodeError(f"{where} must be unix seconds, not {type_label(raw)}")
        if not 0 < raw <= MAX_TIMESTAMP:
            raise DecodeError(f"{where} is {raw} unix seconds, must be 1..{MAX_TIMESTAMP}")
        return datetime.fromtimestamp(raw, UTC)

    def to_json(self, value: datetime, *, reveal: bool) -> str:
        return value.isoformat().replace("+00:00", "Z")

    def from_json(self, raw: Any, where: str) -> datetime:
        if not isinstance(raw, str):
            raise DecodeError(f"{where} must be an ISO 8601 time, not {type_label(raw)}")
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            raise DecodeError(f"{where} is not an ISO 8601 time: {raw[:40]!r}") from None


class Choice(Kind):
    """A member of a string enum, carried as a small integer code."""

    def __init__(self, enum_type: type[enum.StrEnum], codes: Mapping[str, int]) -> None:
        self.enum_type = enum_type
        self.codes = dict(codes)
        self.members = {code: enum_type(name) for name, code in codes.items()}

    def check(self, value: Any, where: str) -> enum.StrEnum:
        if isinstance(value, str) and value in self.codes:
            return self.enum_type(value)
        choices = ", ".join(self.codes)
        raise EncodeError(f"{where} must be one of {choices}, got {value!r:.40}")

    def to_wire(self, value: enum.StrEnum) -> int:
        return self.codes[value.value]

    def from_wire(self, raw: Any, where: str) -> enum.StrEnum:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw not in self.members:
            raise DecodeError(f"{where} has unknown code {raw!r:.40}")
        return self.members[raw]

    def to_json(self, value: enum.StrEnum, *, reveal: bool) -> str:
        return value.value


class Items(Kind):
    """A tuple of distinct values of one kind; a list on the wire and in JSON."""

    def __init__(self, item: Kind, max_items: int) -> None:
        self.item = item
        self.max_items = max_items

    def check(self, value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise EncodeError(f"{where} must be a list, not {type_label(value)}")
        if len(value) > self.max_items:
            raise EncodeError(f"{where} has {len(value)} items, at most {self.max_items}")
        items = tuple(self.item.check(v, f"{where}[{i}]") for i, v in enumerate(value))
        if any(item in items[:index] for index, item in enumerate(items)):
            raise EncodeError(f"{where} lists the same value twice")
        return items

    def to_wire(self, value: tuple[Any, ...]) -> list[Any]:
        return [self.item.to_wire(v) for v in value]

    def from_wire(self, raw: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise DecodeError(f"{where} must be a CBOR array, not {type_label(raw)}")
        return tuple(self.item.from_wire(v, f"{where}[{i}]") for i, v in enumerate(raw))

    def to_json(self, value: tuple[Any, ...], *, reveal: bool) -> list[Any]:
        return [self.item.to_json(v, reveal=reveal) for v in value]

    def from_json(self, raw: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise DecodeError(f"{where} must be a list, not {type_label(raw)}")
        return tuple(self.item.from_json(v, f"{where}[{i}]") for i, v in enumerate(raw))


class Nested(Kind):
    """A struct (see :mod:`nfcpay.records.base`) inside a record: a CBOR map, a JSON object."""

    def __init__(self, struct: type[Any]) -> None:
        self.struct = struct

    def check(self, value: Any, where: str) -> Any:
        if not isinstance(value, self.struct):
            raise EncodeError(f"{where} must be a {self.struct.__name__}, not {type_label(value)}")
        return value

    def to_wire(self, value: Any) -> dict[int, Any]:
        wire_form: dict[int, Any] = value.to_wire()
        return wire_form

    def from_wire(self, raw: Any, where: str) -> Any:
        return self.struct.from_wire(raw, where)

    def to_json(self, value: Any, *, reveal: bool) -> dict[str, Any]:
        json_form: dict[str, Any] = value.to_json(reveal=reveal)
        return json_form

    def from_json(self, raw: Any, where: str) -> Any:
        return self.struct.from_json(raw, where)


@dataclasses.dataclass(frozen=True, slots=True)
class Spec:
    """One declared field: its attribute name, CBOR key, kind and default."""

    name: str
    key: int
    kind: Kind
    default: Any

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING

    def is_default(self, value: Any) -> bool:
        """Optional fields at their default are left out of the wire form (canonical)."""
        return not self.required and type(value) is type(self.default) and value == self.default


_MISSING: Any = dataclasses.MISSING


def wire(key: int, kind: Kind, *, default: Any = _MISSING) -> Any:
    """Declare a record field: ``grant_id: str = wire(1, identifier("g"))``."""
    return dataclasses.field(default=default, repr=not kind.secret, metadata={"wire": (key, kind)})


def specs_of(cls: type[Any]) -> tuple[Spec, ...]:
    """The wire specs of a dataclass declared with :func:`wire`, in declaration order."""
    specs = tuple(
        Spec(f.name, f.metadata["wire"][0], f.metadata["wire"][1], f.default)
        for f in dataclasses.fields(cls)
        if "wire" in f.metadata
    )
    keys = [s.key for s in specs]
    if len(set(keys)) != len(keys) or any(k < 0 for k in keys):
        raise TypeError(f"{cls.__name__} declares duplicate or negative wire keys")
    return specs
