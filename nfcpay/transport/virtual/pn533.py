"""An emulated SCM SCL3711 (NXP PN533) behind nfcpy's own ``pn533`` driver.

The chip itself is :mod:`nfcpay.transport.virtual.pn53x`; what makes it a PN533 in an
SCL3711, as nfcpy sees it:

* firmware ``33 02 07 07`` (nfcpy prints ``PN533v2.7``) and host frames of up to 265 bytes
  (the driver's Diagnose line test sends exactly that, as an extended frame);
* ReadRegister/WriteRegister answers that start with a status byte (the PN532 has none);
* the EEPROM at A000h that the driver probes (``06 A000``) and then reads in four blocks
  of 64 registers: its string descriptors name the reader. nfcpy takes the product and
  vendor names from there, not from USB (a PN533 bug makes the USB strings unreadable
  after larger frames), so they are what ``str(clf)`` shows: "SCM Micro SCL3711-NFC&RW".
"""

from __future__ import annotations

from typing import Any

import nfc.clf.pn533

from nfcpay.transport.virtual.field import DEFAULT_SLACK
from nfcpay.transport.virtual.pn53x import ChipModel, HostFrames, start_driver

VENDOR = "SCM Micro"
PRODUCT = "SCL3711-NFC&RW"


def _string_tlv(tag: int, text: str) -> bytes:
    """One EEPROM TLV holding a USB string descriptor (bLength, 03h, UTF-16LE)."""
    descriptor = text.encode("utf-16-le")
    descriptor = bytes([len(descriptor) + 2, 3]) + descriptor
    return bytes([tag, len(descriptor)]) + descriptor


#: The EEPROM's 256 bytes: device name (TLV 3), vendor name (TLV 4), then FFh (end).
EEPROM = (_string_tlv(3, PRODUCT) + _string_tlv(4, VENDOR)).ljust(256, b"\xff")

PN533 = ChipModel(
    firmware=bytes.fromhex("33020707"), max_frame=265, register_status=True, eeprom=EEPROM
)


def open_pn533(antenna: Any, *, slack: float = DEFAULT_SLACK) -> nfc.clf.pn533.Device:
    """nfcpy's PN533 driver over a fresh emulated SCL3711 in ``antenna``'s field.

    ``antenna`` is anything with the ``field.Antenna`` API. Closing the device stops the
    chip and releases the antenna (but does not close it: it belongs to the caller).
    """
    link = HostFrames(antenna, PN533, slack=slack, manufacturer=VENDOR, product=PRODUCT)
    return start_driver(link, nfc.clf.pn533.init, antenna.name)
