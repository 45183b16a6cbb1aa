"""Device strings: nfcpy paths, the ``loopback`` alias and virtual readers.

=================================  ==================================================
``None``                           auto-detect: the first supported USB reader
``usb``, ``usb:072f:2200``         nfcpy USB paths (vendor:product or bus:device)
``tty:USB0:pn532``                 nfcpy serial paths (port and driver)
``udp:HOST:PORT``                  nfcpy's udp driver, unchanged
``loopback[:PORT][?as=PROFILE]``   nfcpy's udp driver on 127.0.0.1 with RF-like poll
                                   timeouts, optionally restricted to a real reader's
                                   profile (``loopback:50123?as=acr122u``)
``virtual:CHIP[@FIELD][?rate=R]``  an emulated reader chip (``acr122u``, ``pn533``,
                                   ``rcs380``) behind nfcpy's own driver for it, in
                                   the shared virtual RF field FIELD (default
                                   ``default``; see :mod:`nfcpay.transport.virtual`);
                                   ``rate=106|212|424``: the NFC-DEP bit rate this
                                   reader asks for when it polls (default 424, nfcpy's)
=================================  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

DEFAULT_LOOPBACK_PORT = 54321
LOOPBACK_HOST = "127.0.0.1"
_NFCPY_PREFIXES = ("usb", "tty", "com", "udp")
#: The emulated chips, by their readers' profile ids (``nfcpay.transport.virtual.<id>``).
EMULATED_CHIPS = ("acr122u", "pn533", "rcs380")
#: Every name a device string may give an emulated chip: its id, and the names people know.
VIRTUAL_CHIPS = {chip: chip for chip in EMULATED_CHIPS}
VIRTUAL_CHIPS |= {"acr122": "acr122u", "scl3711": "pn533", "rc-s380": "rcs380"}
DEFAULT_FIELD = "default"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device string."""

    kind: str  # "auto" | "nfcpy" | "loopback" | "virtual"
    path: str  # the nfcpy path, "loopback:PORT" or "virtual:CHIP@FIELD"
    port: int | None = None
    as_profile: str | None = None
    chip: str | None = None  # virtual: the emulated chip's profile id
    field: str | None = None  # virtual: the shared field's name
    dep_rate: int | None = None  # the NFC-DEP bit rate (kbps) to ask for; None: nfcpy's 424

    @property
    def is_simulated(self) -> bool:
        return self.kind in ("loopback", "virtual") or self.path.startswith("udp")


def parse_device(device: str | None) -> DeviceSpec:
    """Parse a device string; a malformed one raises ValueError (a usage mistake)."""
    if device is None or device.strip() in ("", "auto"):
        return DeviceSpec("auto", "usb")
    device = device.strip()
    if device == "loopback" or device.startswith(("loopback:", "loopback?")):
        return _parse_loopback(device)
    if device.startswith("virtual:"):
        return _parse_virtual(device)
    if device.split(":", 1)[0] in _NFCPY_PREFIXES:
        return DeviceSpec("nfcpy", device)
    raise ValueError(
        f"unknown device {device!r}: use usb[:VID:PID], tty:PORT:DRIVER, udp:HOST:PORT, "
        "loopback[:PORT][?as=PROFILE] or virtual:CHIP[@FIELD]"
    )


#: NFC-DEP bit rates (kbps) by nfcpy's ``brs`` index.
DEP_RATES = (106, 212, 424)


def _parse_virtual(device: str) -> DeviceSpec:
    base, _, query = device.partition("?")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    if set(options) - {"rate"}:
        raise ValueError(f"unknown virtual reader option(s): {', '.join(sorted(options))}")
    rate_text = options.get("rate", [""])[-1]
    if query and rate_text not in [str(rate) for rate in DEP_RATES]:
        raise ValueError(f"rate {rate_text!r}: use one of 106, 212, 424 (kbps)")
    chip_text, _, field = base.removeprefix("virtual:").partition("@")
    chip = VIRTUAL_CHIPS.get(chip_text.lower())
    if chip is None:
        known = ", ".join(EMULATED_CHIPS)
        raise ValueError(f"no virtual chip {chip_text!r}: the emulated chips are {known}")
    from nfcpay.transport.virtual.broker import validate_name

    field = validate_name(field or DEFAULT_FIELD)
    rate = int(rate_text) if rate_text else None
    return DeviceSpec("virtual", f"virtual:{chip}@{field}", chip=chip, field=field, dep_rate=rate)


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
