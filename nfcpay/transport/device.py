"""Device strings: nfcpy paths plus the ``loopback`` alias.

=================================  ==================================================
``None``                           auto-detect: the first supported USB reader
``usb``, ``usb:072f:2200``         nfcpy USB paths (vendor:product or bus:device)
``tty:USB0:pn532``                 nfcpy serial paths (port and driver)
``udp:HOST:PORT``                  nfcpy's udp driver, unchanged
``loopback[:PORT][?as=PROFILE]``   nfcpy's udp driver on 127.0.0.1 with RF-like poll
                                   timeouts, optionally restricted to a real reader's
                                   profile (``loopback:50123?as=acr122u``)
=================================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

DEFAULT_LOOPBACK_PORT = 54321
LOOPBACK_HOST = "127.0.0.1"
_NFCPY_PREFIXES = ("usb", "tty", "com", "udp")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string."""

    kind: str  # "auto" | "nfcpy" | "loopback"
    path: str  # the nfcpy path, or "loopback:PORT"
    port: int | None = None
    as_profile: str | None = None

    @property
    def is_simulated(self) -> bool:
        return self.kind == "loopback" or self.path.startswith("udp")


def parse_device(device: str | None) -> DeviceSpec:
    """Parse a device string; a malformed one raises ValueError (a usage mistake)."""
    if device is None or device.strip() in ("", "auto"):
        return DeviceSpec("auto", "usb")
    device = device.strip()
    if device == "loopback" or device.startswith(("loopback:", "loopback?")):
        return _parse_loopback(device)
    if device.split(":", 1)[0] in _NFCPY_PREFIXES:
        return DeviceSpec("nfcpy", device)
    raise ValueError(
        f"unknown device {device!r}: use usb[:VID:PID], tty:PORT:DRIVER, udp:HOST:PORT "
        "or loopback[:PORT][?as=PROFILE]"
    )


def _parse_loopback(device: str) -> DeviceSpec:
    base, _, query = device.partition("?")
    port_text = base.partition(":")[2]
    try:
        port = int(port_text) if port_text else DEFAULT_LOOPBACK_PORT
    except ValueError:
        raise ValueError(f"loopback port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"loopback port {port} is out of range 1..65535")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    unknown = set(options) - {"as"}
    if unknown:
        raise ValueError(f"unknown loopback option(s): {', '.join(sorted(unknown))}")
    as_profile = options["as"][-1] if "as" in options else None
    if as_profile == "":
        raise ValueError("loopback option 'as' needs a profile name, e.g. ?as=acr122u")
    return DeviceSpec("loopback", f"loopback:{port}", port, as_profile)
