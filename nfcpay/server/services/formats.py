"""Small conversions between stored values and the JSON the API shows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(us: int | None) -> str | None:
    """Microseconds since the epoch → ``2025-01-31T09:30:00.000Z``."""
    if us is None:
        return None
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_us(moment: datetime | None) -> int | None:
    if moment is None:
        return None
    return (moment - _EPOCH) // timedelta(microseconds=1)


def dump_list(values: Sequence[str] | None) -> str | None:
    return None if values is None else json.dumps(list(values))


def load_list(text: str | None) -> list[str] | None:
    return None if text is None else list(json.loads(text))
