"""NFC transport: the only package that imports nfcpy.

It carries one complete NDEF message (bytes) per ``send`` between two terminals, over
one of three carriers, and turns every nfcpy failure into an
:class:`nfcpay.errors.TransportError`.

Public API::

    open_reader(device: str | None = None, *, mode: Mode = "auto") -> Reader
    Reader.tap(service: str = "pay", *, offer: bool, carrier: Carrier = "auto",
               timeout: float | None = None, mode: Mode | None = None
               ) -> ContextManager[Channel]
    Reader.plan(*, offer, carrier="auto", mode=None) -> TapPlan    # no RF, just the rules
    Reader.profile: FirmwareProfile;  Reader.describe() -> str;  Reader.close()
    Channel.send(message: bytes, timeout: float = 3.0) -> None
    Channel.receive(timeout: float) -> bytes
    write_tag(reader, message: bytes, *, timeout=None) -> None     # --carrier tag
    read_tag(reader, *, timeout=None) -> bytes
    serve_tag(reader, message=b"", *, taps=1, timeout=None) -> bytes  # be a tag (loopback)
    load_profiles(directory=None) -> tuple[FirmwareProfile, ...];  profile_by_name(name)

Devices: ``usb``, ``usb:072f:2200``, ``tty:USB0:pn532``, ``udp:HOST:PORT``, ``None``
(auto-detect USB) and ``loopback[:PORT][?as=PROFILE]`` — nfcpy's udp driver on 127.0.0.1,
optionally restricted to a real reader's abilities (``loopback:50123?as=acr122u`` refuses
to listen exactly like an ACR122U).

Roles: the waiting side (``offer=True``) listens, the tapping side polls; ``mode`` flips
that where the reader can. A reader asked to do what it cannot raises
:class:`~nfcpay.errors.UnsupportedByReader` naming the reader, the reason and the options.

Carriers (``carrier``): ``llcp`` — connection-oriented LLCP service
``urn:nfc:xsn:nfcpay.org:<service>``, length-prefixed, chunked to the peer's MIU (we announce
1024); ``tt3`` — the listening side emulates a Type 3 tag mailbox the poller reads and
writes within the tap; ``auto`` — the reader profile's first carrier (``llcp`` in every
shipped profile; both sides must agree). The tag carrier is separate: two taps, any
poll-capable readers.

A waiting side and a tapping side::

    from nfcpay.transport import open_reader

    with open_reader("loopback:50123?as=rcs380") as reader:      # merchant, waits
        while True:
            with reader.tap("pay", offer=True) as channel:
                channel.send(challenge)                          # NDEF message bytes
                means = channel.receive(timeout=5)
                channel.send(result_for(means))

    with open_reader("loopback:50123?as=acr122u") as reader:     # customer, taps
        with reader.tap("pay", offer=False, timeout=10) as channel:
            challenge = channel.receive(timeout=5)
            channel.send(payment_means(challenge))
            result = channel.receive(timeout=10)

Timeouts nfcpay sets on nfcpy are in :mod:`nfcpay.transport.timing`.
"""

from __future__ import annotations

from nfcpay.transport.channel import Channel
from nfcpay.transport.device import DeviceSpec, parse_device
from nfcpay.transport.llcp import SERVICE_PREFIX, service_urn
from nfcpay.transport.nfcpy import map_nfc_errors
from nfcpay.transport.profiles import FirmwareProfile, load_profiles, profile_by_name
from nfcpay.transport.reader import Reader, open_reader
from nfcpay.transport.roles import Carrier, Mode, TapPlan
from nfcpay.transport.tag import read_tag, serve_tag, write_tag

__all__ = [
    "SERVICE_PREFIX",
    "Carrier",
    "Channel",
    "DeviceSpec",
    "FirmwareProfile",
    "Mode",
    "Reader",
    "TapPlan",
    "load_profiles",
    "map_nfc_errors",
    "open_reader",
    "parse_device",
    "profile_by_name",
    "read_tag",
    "serve_tag",
    "service_urn",
    "write_tag",
]
