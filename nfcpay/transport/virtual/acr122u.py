"""An emulated ACS ACR122U (its 8051 firmware and the NXP PN532 behind it) for nfcpy's
own ``acr122`` driver.

The ACR122U is a PC/SC (USB CCID) reader; nfcpy bypasses PC/SC and tunnels PN532
commands through the CCID escape command: the host writes ``PC_to_RDR_Escape``
(``6F LEN(4, little-endian) slot seq 00 00 00 | payload``) and reads one
``RDR_to_PC_DataBlock`` (``80 LEN(4) slot seq status error chain | answer``). There are no
PN53x frames and no ACK frames on this link; the reader's firmware answers these payloads:

* ``FF 00 48 00 00``: its version string, ``ACR122U203`` (the driver wants major 2);
* ``FF 00 51 P2 00``: set the PICC operating parameter (the driver switches automatic
  polling off with 7Fh); the answer is the new value;
* ``FF 00 40 P2 04 T1 T2 N link``: LED and buzzer; the answer is ``90`` and the LED state
  (bit 0 red, bit 1 green) after the state and mask bits of P2;
* ``FF 00 00 00 Lc | D4 cmd …``: a PN532 command; the answer is ``D5 cmd+1 … 90 00``, or
  ``63 00`` when the PN532 refused it (the PN53x error frame);
* the PN53x ACK frame ``00 00 FF 00 FF 00`` (what the driver sends to cancel): the running
  PN532 command is aborted, answer ``90 00``.

``62 …`` (ICC power on) answers the ATR ``3B 00``; until then the block's status byte says
"no ICC present" (02h), as upstream's captured frames show.

Sizes, preserved on purpose: PN532 frames of up to 254 bytes (nfcpy's
``host_command_frame_max_size``: 252 bytes of data to exchange, 251 back). The driver
packs ``Lc`` into one byte, so a longer PN532 command raises ``ValueError`` in nfcpy before
any byte is sent — an NFC-DEP frame at nfcpy's default 254-byte length reduction is
exactly that long (``DEP_REQ`` of 255 bytes plus ``D4 42``); nfcpay sizes its NFC-DEP
frames by the reader's profile (``transport.llc.DepInitiator``) instead of hiding this here.

A new escape command while a PN532 command still runs aborts it (the driver only sends
one after it gave up waiting), so a late answer never reaches the wrong command.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import Any

import nfc.clf.acr122

from nfcpay.transport.virtual.field import DEFAULT_SLACK
from nfcpay.transport.virtual.pn53x import ACK, ChipModel, HostLink, start_driver

MANUFACTURER = "ACS"
PRODUCT = "ACR122U PICC Interface"  # the driver names the device by its first word
VERSION = b"ACR122U203"

PN532 = ChipModel(
    firmware=bytes.fromhex("32010407"), max_frame=254, register_status=False, power_down=True
)

ESCAPE, ICC_POWER_ON, DATA_BLOCK = 0x6F, 0x62, 0x80
NO_ICC, ICC_ACTIVE = 0x02, 0x00
HEADER = struct.Struct("<BIBBBBB")  # type, length, slot, sequence, three more bytes
SUCCESS, FAILED = b"\x90\x00", b"\x63\x00"
ATR = b"\x3b\x00"
GET_VERSION = bytes.fromhex("ff00480000")
PICC_PARAMETER, LED_CONTROL, PN532_COMMAND = b"\xff\x00\x51", b"\xff\x00\x40", b"\xff\x00\x00\x00"


def open_acr122u(antenna: Any, *, slack: float = DEFAULT_SLACK) -> nfc.clf.acr122.Device:
    """nfcpy's ACR122U driver over a fresh emulated ACR122U in ``antenna``'s field.

    ``antenna`` is anything with the ``field.Antenna`` API. Closing the device stops the
    chip and releases the antenna (but does not close it: it belongs to the caller).
    """
    link = Acr122u(antenna, slack=slack)
    return start_driver(link, nfc.clf.acr122.init, antenna.name)


class Acr122u(HostLink):
    """The reader's firmware between the CCID escape and the PN532."""

    def __init__(self, antenna: Any, *, slack: float = DEFAULT_SLACK) -> None:
        super().__init__(antenna, PN532, slack=slack, manufacturer=MANUFACTURER, product=PRODUCT)
        self._icc_status = NO_ICC
        self._led = 0

    def _host_write(self, frame: bytes) -> None:
        if len(frame) < HEADER.size:
            return  # not a CCID message: a real reader stalls, the host's read times out
        kind, length, slot, sequence = HEADER.unpack_from(frame)[:4]
        payload = frame[HEADER.size : HEADER.size + length]
        reply = functools.partial(self._block, slot, sequence)
        if kind == ICC_POWER_ON:
            self._icc_status = ICC_ACTIVE
            reply(ATR)
        elif kind == ESCAPE:
            self._escape(payload, reply)

    def _escape(self, payload: bytes, reply: Callable[[bytes], None]) -> None:
        if payload == GET_VERSION:
            reply(VERSION)
        elif payload[:3] == PICC_PARAMETER and len(payload) == 5:
            reply(payload[3:4])
        elif payload[:3] == LED_CONTROL and len(payload) == 9:
            mask = payload[3] >> 2 & 0b11
            self._led = self._led & ~mask | payload[3] & mask
            reply(bytes([0x90, self._led]))
        elif payload == ACK:
            self._restart()
            reply(SUCCESS)
        elif payload[:4] == PN532_COMMAND and len(payload) == 5 + payload[4]:
            self._restart()
            self.chip.submit(payload[5:], functools.partial(self._pn532_answer, reply))
        else:
            reply(FAILED)

    @staticmethod
    def _pn532_answer(reply: Callable[[bytes], None], answer: bytes | None) -> None:
        reply(answer + SUCCESS if answer is not None else FAILED)

    def _block(self, slot: int, sequence: int, answer: bytes) -> None:
        header = HEADER.pack(DATA_BLOCK, len(answer), slot, sequence, self._icc_status, 0x81, 0)
        self.usb.to_host(header + answer)
