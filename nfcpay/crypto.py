"""Cryptographic building blocks shared by the server and the terminals.

Everything here is built from the ``cryptography`` package, except the Ed25519 check, which
libsodium (PyNaCl) does in half the CPU here (:func:`verify_signature`); nothing is
hand-rolled. The message layouts (usage-auth, presentation, request signing) are
domain-separated and length-prefixed, so no two different inputs can ever produce the same
bytes to MAC or sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from nfcpay.errors import ConfigError

#: Issuer identification number reserved for nfcpay virtual cards. Major industry identifier 9
#: ("national assignment") is never issued for payment cards, so no real card number can
#: collide with a virtual one; the server also refuses to register a real card in this range.
VIRTUAL_CARD_IIN = "990077"
VIRTUAL_CARD_LENGTH = 16
#: Sizes of an Ed25519 public key and signature, in bytes.
SIGNATURE_KEY_BYTES = 32
SIGNATURE_BYTES = 64

_USAGE_AUTH_DOMAIN = b"nfcpay/usage-auth/v1"
#: The layout of the signed presentation. Version 2 signs the payment's purpose; version 1
#: (nfcpay before it) did not, so a merchant could claim any purpose after the target signed.
#: A terminal or server meeting another version says "upgrade nfcpay" (the means record's
#: payload version and the API's ``means.version`` carry it).
PRESENTATION_VERSION = 2
_PRESENTATION_DOMAIN = b"nfcpay/presentation/v2"
_REQUEST_DOMAIN = b"nfcpay/api-request/v1"


def b64e(data: bytes) -> str:
    """URL-safe base64 without padding (ids, keys and MACs in JSON)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Inverse of :func:`b64e`; raises ValueError on anything that is not base64url."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not base64url text")
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


def new_id(prefix: str, nbytes: int = 10) -> str:
    """A random identifier such as ``g_3fz7q2m4k9xw6a5b`` (base32, lowercase)."""
    body = base64.b32encode(secrets.token_bytes(nbytes)).decode("ascii").rstrip("=").lower()
    return f"{prefix}_{body}"


def _framed(domain: bytes, fields: Iterable[bytes]) -> bytes:
    """Domain tag followed by each field with a 4-byte big-endian length prefix."""
    out = bytearray(struct.pack(">H", len(domain)) + domain)
    for field in fields:
        out += struct.pack(">I", len(field)) + field
    return bytes(out)


# --- usage-auth -------------------------------------------------------------------------------


def new_auth_code() -> bytes:
    """A fresh 32-byte secret auth code for one grant."""
    return secrets.token_bytes(32)


def usage_auth(
    auth_code: bytes, grant_id: str, issuing_terminal: str, allowed_terminal: str
) -> bytes:
    """``HMAC-SHA256(auth_code, framed(grant id, issuing terminal, allowed terminal))``."""
    message = _framed(
        _USAGE_AUTH_DOMAIN,
        (grant_id.encode(), issuing_terminal.encode(), allowed_terminal.encode()),
    )
    return hmac.new(auth_code, message, hashlib.sha256).digest()


def usage_auth_matches(
    presented: bytes, auth_code: bytes, grant_id: str, issuing: str, allowed: str
) -> bool:
    """Constant-time check of a presented usage-auth value."""
    return hmac.compare_digest(presented, usage_auth(auth_code, grant_id, issuing, allowed))


# --- terminal keys ----------------------------------------------------------------------------


def generate_terminal_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def private_key_from_bytes(raw: bytes) -> Ed25519PrivateKey:
    if len(raw) != 32:
        raise ConfigError("a terminal private key is 32 raw bytes")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(public_raw: bytes) -> bytes:
    """First 8 bytes of SHA-256 of the raw public key (shown in hello records and UIs)."""
    return hashlib.sha256(public_raw).digest()[:8]


#: How many bytes of a key fingerprint people compare (:func:`format_fingerprint`).
SHOWN_FINGERPRINT_BYTES = 6


def format_fingerprint(fingerprint: bytes) -> str:
    """A key fingerprint as people compare it across two screens: its first
    :data:`SHOWN_FINGERPRINT_BYTES` bytes in groups of four hex digits, ``9F3A-5C7E-1B2D``.

    48 bits: a relay that wants to pass for someone's terminal must register a key whose
    fingerprint begins like that terminal's, about 2**47 key pairs on average.

    >>> format_fingerprint(bytes.fromhex("9f3a5c7e1b2d4f60"))
    '9F3A-5C7E-1B2D'
    """
    if len(fingerprint) < SHOWN_FINGERPRINT_BYTES:
        raise ValueError(f"a key fingerprint has at least {SHOWN_FINGERPRINT_BYTES} bytes")
    digits = fingerprint[:SHOWN_FINGERPRINT_BYTES].hex().upper()
    return "-".join(digits[i : i + 4] for i in range(0, len(digits), 4))


def fingerprints_match(claimed: bytes, registered: bytes) -> bool:
    """Whether a fingerprint a terminal claims is its registered key's (constant time)."""
    return hmac.compare_digest(claimed, registered)


def verify_signature(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """True if ``signature`` is a valid Ed25519 signature of ``message`` by ``public_raw``.

    The server checks two per approval (the merchant's request, the target's presentation),
    the one cost an approval cannot avoid: libsodium's check takes 53 µs here against 104 µs
    for ``cryptography``'s (``scripts/bench_server.py`` times it as the server calls it). It
    is also the stricter of the two: it refuses small-order keys and non-canonical
    signatures, which no terminal's key or signature is."""
    if len(public_raw) != SIGNATURE_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        crypto_sign_open(signature + message, public_raw)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


# --- what gets signed -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GrantShare:
    """One grant in a payment means: the grant id and the part of the bill it pays."""

    grant_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class Presentation:
    """What a target terminal signs to present its payment means, field by field.

    Binding the merchant's fresh challenge ``nonce``, the merchant, the amount, the purpose
    (the category the payment is made for) and every grant share makes a copied NFC payload
    useless at any other counter, for any other amount or purpose, or twice. A group payment
    also binds its bill and split mode.

    It is built in exactly two places: from the NFC records the target and the merchant hold
    (:func:`nfcpay.records.presentation.presentation`) and from the merchant's API request
    (:func:`nfcpay.server.services.rules.presentation`); :meth:`message` gives the bytes.
    """

    nonce: bytes
    merchant_id: str
    amount: int
    currency: str
    purpose: str
    presenting_terminal: str
    grants: tuple[GrantShare, ...]
    own_source_id: str | None
    own_amount: int
    bill_id: str | None
    split_mode: str

    def message(self) -> bytes:
        """The signed bytes (layout :data:`PRESENTATION_VERSION`)."""
        fields = [
            self.nonce,
            self.merchant_id.encode(),
            str(self.amount).encode(),
            self.currency.encode(),
            self.purpose.encode(),
            self.presenting_terminal.encode(),
            str(len(self.grants)).encode(),
        ]
        for share in self.grants:
            fields += [share.grant_id.encode(), str(share.amount).encode()]
        fields += [(self.own_source_id or "").encode(), str(self.own_amount).encode()]
        fields += [(self.bill_id or "").encode(), self.split_mode.encode()]
        return _framed(_PRESENTATION_DOMAIN, fields)


def request_message(
    method: str, path: str, timestamp: int, nonce: str, terminal_id: str, body: bytes
) -> bytes:
    """The bytes a terminal signs for one API call (method, path, time, nonce, body digest)."""
    return _framed(
        _REQUEST_DOMAIN,
        (
            method.upper().encode(),
            path.encode(),
            str(timestamp).encode(),
            nonce.encode(),
            terminal_id.encode(),
            hashlib.sha256(body).digest(),
        ),
    )


# --- field encryption -------------------------------------------------------------------------


class FieldCipher:
    """AES-256-GCM for sensitive columns (card numbers). Each value gets a fresh nonce.

    ``context`` (e.g. the funding source id) is bound as associated data, so a ciphertext
    copied into another row does not decrypt.
    """

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ConfigError("the server master key must be 32 bytes")
        self._aead = AESGCM(master_key)

    def encrypt(self, plaintext: str, context: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plaintext.encode(), context.encode())

    def decrypt(self, blob: bytes, context: str) -> str:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], context.encode()).decode()
        except InvalidTag:
            raise ConfigError(
                "a stored card number does not decrypt: wrong master key or tampered row"
            ) from None


# --- card numbers -----------------------------------------------------------------------------


def luhn_check_digit(partial: str) -> str:
    """The Luhn digit that makes ``partial + digit`` valid."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) >= 2 and luhn_check_digit(number[:-1]) == number[-1]


def new_virtual_card_number() -> str:
    """A Luhn-valid 16-digit number in nfcpay's reserved range."""
    body_len = VIRTUAL_CARD_LENGTH - len(VIRTUAL_CARD_IIN) - 1
    body = "".join(secrets.choice("0123456789") for _ in range(body_len))
    partial = VIRTUAL_CARD_IIN + body
    return partial + luhn_check_digit(partial)


def is_virtual_card_number(number: str) -> bool:
    return number.startswith(VIRTUAL_CARD_IIN)


def mask_card_number(number: str) -> str:
    """First 6 and last 4 digits at most: ``411111******1111``."""
    if len(number) <= 10:
        return "*" * len(number)
    return number[:6] + "*" * (len(number) - 10) + number[-4:]
