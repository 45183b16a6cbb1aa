"""How a person reads another party: its self-chosen name with the start of its id beside.

A label is whatever its terminal's owner typed when registering it (anyone can call
themselves Alice), so a name is never shown alone: the short id beside it is what tells two
Alices apart. Machine-readable output (``--json``, API answers) keeps the whole id.
"""

from __future__ import annotations

#: How many characters of an id stand beside a name: the prefix and four of the random part.
SHORT_ID = 6


def short_id(party_id: str) -> str:
    """``t_r67q…`` for ``t_r67qk2m…``: enough to tell parties apart at a glance."""
    return f"{party_id[:SHORT_ID]}…"


def labelled(name: str | None, party_id: str) -> str:
    """A terminal or merchant as people read it, ``Alice (t_r67q…)``; without a known name,
    its whole id."""
    return f"{name} ({short_id(party_id)})" if name else party_id
