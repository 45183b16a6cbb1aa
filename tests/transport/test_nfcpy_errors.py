"""Every nfcpy exception becomes an nfcpay transport error, raised from the original."""

from __future__ import annotations

import errno

import nfc.clf
import nfc.llcp
import nfc.tag
import nfc.tag.tt3
import pytest

from nfcpay import errors
from nfcpay.transport.nfcpy import NFC_ERROR_MAP, map_nfc_errors


def subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= subclasses(sub)
    return found


CLF_ERRORS = sorted({nfc.clf.Error} | subclasses(nfc.clf.Error), key=lambda c: c.__name__)


@pytest.mark.parametrize("nfc_error", CLF_ERRORS, ids=lambda c: c.__name__)
def test_every_clf_error_has_its_own_mapping(nfc_error):
    assert nfc_error in NFC_ERROR_MAP, f"nfc.clf.{nfc_error.__name__} is not mapped explicitly"
    with pytest.raises(errors.TransportError) as caught, map_nfc_errors("testing"):
        raise nfc_error("boom")
    assert isinstance(caught.value, NFC_ERROR_MAP[nfc_error][0])
    assert caught.value.__cause__.__class__ is nfc_error
    assert caught.value.message.startswith("testing: ")
    assert nfc_error.__name__ in caught.value.message


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (nfc.clf.UnsupportedTargetError("no"), errors.UnsupportedByReader),
        (nfc.clf.BrokenLinkError("RFOFF"), errors.LinkLost),
        (nfc.clf.TimeoutError("late"), errors.ExchangeTimeout),
        (nfc.clf.ProtocolError("bad"), errors.ProtocolViolation),
        (nfc.tag.tt3.Type3TagCommandError(nfc.tag.TIMEOUT_ERROR), errors.LinkLost),
        (nfc.llcp.ConnectRefused(2), errors.ProtocolViolation),
        (nfc.llcp.Error(errno.EPIPE), errors.LinkLost),
        (OSError(errno.EACCES, "Permission denied"), errors.ReaderAccessDenied),
        (OSError(errno.EBUSY, "Device busy"), errors.ReaderAccessDenied),
        (OSError(errno.ENODEV, "No such device"), errors.ReaderNotFound),
    ],
)
def test_family_mapping(raised, expected):
    with pytest.raises(expected) as caught, map_nfc_errors("doing"):
        raise raised
    assert caught.value.__cause__ is raised


def test_unrelated_errors_pass_through():
    with pytest.raises(KeyError), map_nfc_errors("doing"):
        raise KeyError("ours")
    with pytest.raises(OSError), map_nfc_errors("doing"):
        raise OSError(errno.ENOSPC, "disk full")


def test_nfcpay_errors_pass_untouched():
    original = errors.LinkLost("gone")
    with pytest.raises(errors.LinkLost) as caught, map_nfc_errors("doing"):
        raise original
    assert caught.value is original


def test_a_loopback_port_that_etc_services_names_opens_like_any_other():
    """nfcpy's udp driver turned 57000 into "dircproxy" and then failed int() on it."""
    import socket

    from nfcpay.transport.nfcpy import open_loopback

    named = socket.getnameinfo(("127.0.0.1", 57000), socket.NI_NUMERICHOST)[1]
    clf = open_loopback("127.0.0.1", 57000)
    try:
        assert clf.device.addr == ("127.0.0.1", 57000), named
    finally:
        clf.close()
