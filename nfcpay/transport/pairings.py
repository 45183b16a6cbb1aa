"""Which two readers can hand over, and how: README's pairing table, from the profiles.

In every tap flow one terminal waits (the merchant charging, the owner giving, the collector
collecting) and the other taps. Whether they link, and over which carrier, follows from
the two readers' profiles alone:

* **LLCP** — the waiting reader listens and the tapping reader polls (nfcpay's rule);
* **LLCP, tapper listens** — the waiting reader can only poll (an ACR122U merchant), and
  the tapping reader listens between its polls (``roles.TapPlan.also_listen``);
* **tag** — neither can listen: the two meet through an NFC tag (``--carrier tag``).

``python -m nfcpay.transport.pairings`` prints the table; a test keeps README's copy equal.
"""

from __future__ import annotations

from collections.abc import Sequence

from nfcpay.transport.device import EMULATED_CHIPS
from nfcpay.transport.profiles import FirmwareProfile, default_profiles


def pairing(waiting: FirmwareProfile, tapping: FirmwareProfile) -> str:
    """How a tap between these two readers links (see the module docstring)."""
    if waiting.can_listen and tapping.can_poll:
        return "LLCP"
    if tapping.can_listen and waiting.can_poll:
        return "LLCP, tapper listens"
    return "tag"


def real_readers() -> list[FirmwareProfile]:
    """Every profile of a physical reader, emulated ones first."""
    profiles = [p for p in default_profiles() if "udp" not in p.drivers]
    return sorted(profiles, key=lambda p: (p.id not in EMULATED_CHIPS, p.name))


def pairing_table(profiles: Sequence[FirmwareProfile] | None = None) -> str:
    """README's table: waiting reader per row, tapping reader per column (Markdown), with
    a legend of the readers' names."""
    readers = list(profiles) if profiles is not None else real_readers()
    header = ["waits ↓ / taps →", *(_label(p) for p in readers)]
    rows = [[_label(w), *(pairing(w, t) for t in readers)] for w in readers]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    names = "; ".join(f"{_label(p)}: {p.name}" for p in readers)
    lines += ["", f"{names}. (* not emulated: the row follows from its profile.)"]
    return "\n".join(lines)


def _label(profile: FirmwareProfile) -> str:
    """The profile id (as ``--device virtual:ID@FIELD`` takes it); * marks "not emulated"."""
    return profile.id if profile.id in EMULATED_CHIPS else f"{profile.id}*"


if __name__ == "__main__":
    print(pairing_table())
