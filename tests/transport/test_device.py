from __future__ import annotations

import re

import pytest

from nfcpay.transport.device import DEFAULT_LOOPBACK_PORT as DEFAULT
from nfcpay.transport.device import DeviceSpec, parse_device


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, DeviceSpec("auto", "usb")),
        ("usb", DeviceSpec("nfcpy", "usb")),
        ("usb:072f:2200", DeviceSpec("nfcpy", "usb:072f:2200")),
        ("tty:USB0:pn532", DeviceSpec("nfcpy", "tty:USB0:pn532")),
        ("udp:localhost:5000", DeviceSpec("nfcpy", "udp:localhost:5000")),
        (
            "loopback",
            DeviceSpec("loopback", f"loopback:{DEFAULT}", DEFAULT),
        ),
        ("loopback:50123", DeviceSpec("loopback", "loopback:50123", 50123)),
        ("loopback:50123?as=acr122u", DeviceSpec("loopback", "loopback:50123", 50123, "acr122u")),
        (
            "loopback?as=rcs380",
            DeviceSpec("loopback", f"loopback:{DEFAULT}", DEFAULT, "rcs380"),
        ),
        (
            "virtual:acr122u@counter",
            DeviceSpec("virtual", "virtual:acr122u@counter", chip="acr122u", field="counter"),
        ),
        (
            "virtual:SCL3711",
            DeviceSpec("virtual", "virtual:pn533@default", chip="pn533", field="default"),
        ),
        (
            "virtual:rc-s380@lab-2",
            DeviceSpec("virtual", "virtual:rcs380@lab-2", chip="rcs380", field="lab-2"),
        ),
    ],
)
def test_parse(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize(
    "text",
    ["serial", "loopback:x", "loopback:0", "loopback:70000", "loopback:1?bad=1", "loopback:1?as="],
)
def test_malformed_device_is_a_usage_error(text):
    with pytest.raises(ValueError):
        parse_device(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("virtual:pn532@x", "the emulated chips are acr122u, pn533, rcs380"),
        ("virtual:", "no virtual chip ''"),
        ("virtual:acr122u@Counter", "bad field name 'Counter'"),
        ("virtual:acr122u@../etc", "bad field name"),
        ("virtual:acr122u@" + "x" * 33, "bad field name"),
    ],
)
def test_a_bad_virtual_device_says_what_is_wrong(text, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_device(text)


def test_a_virtual_reader_may_ask_for_an_nfc_dep_bit_rate():
    assert parse_device("virtual:acr122u@f?rate=106").dep_rate == 106
    assert parse_device("virtual:acr122u@f").dep_rate is None
    for bad in ("virtual:acr122u@f?rate=848", "virtual:acr122u@f?speed=106"):
        with pytest.raises(ValueError):
            parse_device(bad)
