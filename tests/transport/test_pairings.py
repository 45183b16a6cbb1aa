"""README's pairing table is generated from the profiles, and says what the readers can do."""

from __future__ import annotations

import re
from pathlib import Path

from nfcpay.transport.pairings import pairing, pairing_table
from nfcpay.transport.profiles import profile_by_name

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_holds_the_table_the_profiles_give():
    text = README.read_text()
    found = re.search(
        r"<!-- pairing-table:start -->\n(.*?)\n<!-- pairing-table:end -->", text, re.S
    )
    assert found, "README has no pairing table between its markers"
    assert found.group(1) == pairing_table(), (
        "README's pairing table is stale: paste `python -m nfcpay.transport.pairings`"
    )


def test_a_pairing_follows_from_who_can_listen():
    acr122u, rcs380 = profile_by_name("acr122u"), profile_by_name("rcs380")
    assert pairing(rcs380, acr122u) == "LLCP"  # the waiting side listens
    assert pairing(acr122u, rcs380) == "LLCP, tapper listens"  # only the tapper can
    assert pairing(acr122u, acr122u) == "tag"  # nobody can: a sticker
