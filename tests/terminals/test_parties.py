"""The names a terminal learnt of other parties (nfcpay/terminals/parties.py): one file a
party, read alone when a tap names it, and written only when the name is new."""

from __future__ import annotations

from pathlib import Path

from nfcpay.terminals.home import TerminalHome
from nfcpay.terminals.parties import Parties


def test_a_kept_name_labels_its_party_and_an_unknown_one_keeps_its_id(tmp_path: Path) -> None:
    parties = Parties(TerminalHome(tmp_path))
    assert parties.name_of("t_bob12345") is None
    assert parties.labelled("t_bob12345") == "t_bob12345"
    parties.keep("t_bob12345", "Bob")
    parties.keep("m_shop1234", None)  # the server named nobody: nothing kept
    assert parties.name_of("t_bob12345") == "Bob"
    assert parties.labelled("t_bob12345") == "Bob (t_bob1…)"
    assert parties.known() == {"t_bob12345": "Bob"}


def test_a_name_already_kept_is_not_written_again(tmp_path: Path) -> None:
    parties = Parties(TerminalHome(tmp_path))
    parties.keep("t_bob12345", "Bob")
    kept = tmp_path / "names" / "t_bob12345.json"
    written = kept.stat().st_ino  # a write replaces the file (temporary file, renamed over)
    parties.keep("t_bob12345", "Bob")  # every approval by Bob tells his label again
    assert kept.stat().st_ino == written
    parties.keep("t_bob12345", "Bobby")  # not what a server says, but a new name is written
    assert kept.stat().st_ino != written and parties.name_of("t_bob12345") == "Bobby"
