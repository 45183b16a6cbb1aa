from __future__ import annotations

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
