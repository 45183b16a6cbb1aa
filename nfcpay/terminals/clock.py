"""The terminals' timestamps: UTC, whole seconds, ISO 8601 (``2026-11-25T09:30:00+00:00``).

Every ``created_at``, ``updated_at``, ``received_at`` and ``as_of`` a terminal writes to its
home is one of these.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()
