"""Either side may speak first, over either carrier, in either role assignment.

Regression for nfcpy 1.0.4's connection set-up races (``nfcpay.transport.llc``): the first
I-PDU of one side was dropped when the other side's application thread ran late during
connection set-up. The side that receives the first message runs under late_peer.py, so
the race window is hit every time instead of only on a loaded machine (tt3 ignores it).
"""

from __future__ import annotations

import pytest

from nfcpay.errors import UnsupportedByReader
from nfcpay.transport.peer import payload
from nfcpay.transport.profiles import profile_by_name
from nfcpay.transport.roles import plan_tap

pytestmark = pytest.mark.nfc_sim

#: (waiting side's profile, its mode, tapping side's profile, its mode)
ROLES = {
    "normal": ("rcs380", "auto", "acr122u", "auto"),
    # The counter reader cannot listen: the waiting side polls, the customer's reader listens.
    "flipped": ("acr122u", "poll", "rcs380", "listen"),
}
FIRST_WORDS = "hello from the first speaker"
ANSWER = "and the answer"


def script(speaks_first: bool) -> list[str]:
    steps = (
        [f"send=text:{FIRST_WORDS}", "recv", "send=text:bye"]
        if speaks_first
        else ["recv", f"send=text:{ANSWER}", "recv"]
    )
    return [arg for step in steps for arg in ("--step", step)]


@pytest.mark.parametrize("roles", sorted(ROLES))
@pytest.mark.parametrize("first", ["waiting", "tapping"])
@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
def test_first_message_arrives(spawn, reader, carrier, first, roles):
    waiting_as, waiting_mode, tapping_as, tapping_mode = ROLES[roles]
    for name, offer, mode in ((waiting_as, True, waiting_mode), (tapping_as, False, tapping_mode)):
        try:
            plan_tap(profile_by_name(name), offer=offer, mode=mode, carrier=carrier)  # type: ignore[arg-type]
        except UnsupportedByReader as exc:
            pytest.skip(f"the profiles do not allow it: {exc.message}")
    common = ("--service", "pay", "--carrier", carrier)
    waiter = spawn(
        "--device",
        reader(waiting_as),
        "--mode",
        waiting_mode,
        "--offer",
        *common,
        *script(first == "waiting"),
        late="accept" if first == "tapping" else None,
    )
    tapper = spawn(
        "--device",
        reader(tapping_as),
        "--mode",
        tapping_mode,
        *common,
        *script(first == "tapping"),
        late="connect" if first == "waiting" else None,
    )
    [waited], [tapped] = waiter.taps(1), tapper.taps(1)
    assert waited["ok"] and tapped["ok"], (waited, tapped, waiter.stderr(), tapper.stderr())
    first_speaker, second_speaker = (waited, tapped) if first == "waiting" else (tapped, waited)
    said = [payload(f"text:{FIRST_WORDS}").hex(), payload("text:bye").hex()]
    assert second_speaker["received"] == said
    assert first_speaker["received"] == [payload(f"text:{ANSWER}").hex()]
    assert (waited["carrier"], tapped["carrier"]) == (carrier, carrier)
    expected_roles = ("poll", "listen") if roles == "flipped" else ("listen", "poll")
    assert (waited["role"], tapped["role"]) == expected_roles
