"""A typed view of one collection in a terminal's home: ``grants/`` or ``receipts/``.

:class:`~nfcpay.terminals.home.TerminalHome` keeps plain JSON objects, one file an item. A
:class:`Shelf` subclass names the collection and the class its items load into, so each
kind of state is read and written in one place, through its class's ``from_json`` and
``to_json``, and a file that does not load is reported by name instead of as a stack trace.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from nfcpay.errors import ConfigError, NfcPayError
from nfcpay.terminals.home import TerminalHome

Json = dict[str, Any]


class Stored(Protocol):
    def to_json(self) -> Json: ...


T = TypeVar("T", bound=Stored)


class Shelf(ABC, Generic[T]):
    """The items of collection ``kind`` in ``home``, each a ``T`` keyed by its ``id_field``."""

    kind: ClassVar[str]
    id_field: ClassVar[str]

    def __init__(self, home: TerminalHome) -> None:
        self.home = home

    @abstractmethod
    def parse(self, data: Json) -> T:
        """One item from its file's JSON (any KeyError, TypeError or ValueError means the
        file is not what this code writes)."""

    def get(self, item_id: str) -> T:
        return self._load(self.home.get(self.kind, item_id), item_id)

    def put(self, item: T) -> None:
        data = item.to_json()
        self.home.put(self.kind, str(data[self.id_field]), data)

    def each(self) -> Iterator[T]:
        """Every item, in file-name order, each read from disk only when its turn comes."""
        for data in self.home.items(self.kind):
            yield self._load(data, str(data.get(self.id_field)))

    def _load(self, data: Json, item_id: str) -> T:
        try:
            return self.parse(data)
        except (KeyError, TypeError, ValueError, NfcPayError) as exc:
            why = exc.message if isinstance(exc, NfcPayError) else f"{type(exc).__name__}: {exc}"
            raise ConfigError(
                f"{self.kind}/{item_id}.json in {self.home.path} is not a {self.kind[:-1]} "
                f"this version can read ({why}); move it aside to go on without it"
            ) from None
