from __future__ import annotations

import pytest

from nfcpay.errors import UnsupportedByReader
from nfcpay.transport.profiles import profile_by_name
from nfcpay.transport.roles import TapPlan, plan_tap


@pytest.mark.parametrize(
    ("reader", "offer", "mode", "carrier", "plan"),
    [
        ("rcs380", True, "auto", "auto", TapPlan("llcp", "listen")),
        ("rcs380", False, "auto", "auto", TapPlan("llcp", "poll", also_listen=True)),
        ("rcs380", False, "poll", "auto", TapPlan("llcp", "poll")),
        ("rcs380", False, "auto", "tt3", TapPlan("tt3", "poll")),
        ("acr122u", False, "auto", "auto", TapPlan("llcp", "poll")),
        ("acr122u", False, "auto", "tt3", TapPlan("tt3", "poll")),
        ("acr122u", True, "poll", "auto", TapPlan("llcp", "poll")),
        ("rcs380", False, "listen", "tt3", TapPlan("tt3", "listen")),
        ("rcs956", True, "auto", "llcp", TapPlan("llcp", "listen")),
    ],
)
def test_plans(reader, offer, mode, carrier, plan):
    assert plan_tap(profile_by_name(reader), offer=offer, mode=mode, carrier=carrier) == plan


def test_poll_only_reader_asked_to_wait_gets_the_options():
    with pytest.raises(UnsupportedByReader) as caught:
        plan_tap(profile_by_name("acr122u"), offer=True, mode="auto", carrier="auto")
    message = caught.value.message
    assert message.startswith("ACS ACR122U cannot listen (nfcpy: UnsupportedTargetError)")
    for option in ("Sony RC-S380", "SCM SCL3711", "PN532", "mode='poll'", "--carrier tag"):
        assert option in message
    assert "loopback" not in message


def test_reader_without_type_f_listen_cannot_be_the_mailbox():
    with pytest.raises(UnsupportedByReader, match="cannot emulate a Type 3 tag"):
        plan_tap(profile_by_name("rcs956"), offer=True, mode="auto", carrier="tt3")


@pytest.mark.parametrize(("mode", "carrier"), [("sideways", "auto"), ("auto", "snep")])
def test_bad_arguments_are_usage_errors(mode, carrier):
    with pytest.raises(ValueError):
        plan_tap(profile_by_name("rcs380"), offer=True, mode=mode, carrier=carrier)
