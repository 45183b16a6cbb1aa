from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcpay import crypto
from nfcpay.errors import ConfigError


def test_usage_auth_is_bound_to_every_field() -> None:
    code = crypto.new_auth_code()
    base = crypto.usage_auth(code, "g_1", "t_user", "t_target")
    assert len(base) == 32
    assert crypto.usage_auth_matches(base, code, "g_1", "t_user", "t_target")
    assert not crypto.usage_auth_matches(base, code, "g_2", "t_user", "t_target")
    assert not crypto.usage_auth_matches(base, code, "g_1", "t_other", "t_target")
    assert not crypto.usage_auth_matches(base, code, "g_1", "t_user", "t_stranger")
    assert not crypto.usage_auth_matches(base, crypto.new_auth_code(), "g_1", "t_user", "t_target")


def test_usage_auth_framing_prevents_concatenation_collisions() -> None:
    code = b"k" * 32
    assert crypto.usage_auth(code, "g_1t", "_u", "x") != crypto.usage_auth(code, "g_1", "t_u", "x")


def test_presentation_signature_round_trip_and_binding() -> None:
    key = crypto.generate_terminal_key()
    public = crypto.public_key_bytes(key)
    presented = crypto.Presentation(
        nonce=b"c" * 16,
        merchant_id="m_1",
        amount=1000,
        currency="KRW",
        purpose="5812",
        presenting_terminal="t_1",
        grants=(crypto.GrantShare("g_1", 1000),),
        own_source_id=None,
        own_amount=0,
        bill_id=None,
        split_mode="exact",
    )
    message = presented.message()
    signature = key.sign(message)
    assert crypto.verify_signature(public, signature, message)
    changed = dataclasses.replace(presented, amount=1001).message()
    assert not crypto.verify_signature(public, signature, changed)
    claimed = dataclasses.replace(presented, purpose="5999").message()
    assert not crypto.verify_signature(public, signature, claimed)
    assert not crypto.verify_signature(b"short", signature, message)


def test_field_cipher_binds_context_and_key() -> None:
    cipher = crypto.FieldCipher(b"m" * 32)
    blob = cipher.encrypt("4111111111111111", "src_1")
    assert b"4111" not in blob
    assert cipher.decrypt(blob, "src_1") == "4111111111111111"
    with pytest.raises(ConfigError):
        cipher.decrypt(blob, "src_2")
    with pytest.raises(ConfigError):
        crypto.FieldCipher(b"x" * 32).decrypt(blob, "src_1")
    with pytest.raises(ConfigError):
        crypto.FieldCipher(b"short")


def test_virtual_card_numbers_are_luhn_valid_and_reserved() -> None:
    for _ in range(50):
        number = crypto.new_virtual_card_number()
        assert len(number) == 16
        assert crypto.luhn_valid(number)
        assert crypto.is_virtual_card_number(number)
    assert crypto.luhn_valid("4111111111111111")
    assert not crypto.luhn_valid("4111111111111112")
    assert not crypto.luhn_valid("41x1")


def test_mask_card_number_shows_at_most_first6_last4() -> None:
    assert crypto.mask_card_number("4111111111111111") == "411111******1111"
    assert crypto.mask_card_number("1234") == "****"


@given(st.binary(max_size=64))
def test_b64_round_trip(data: bytes) -> None:
    assert crypto.b64d(crypto.b64e(data)) == data


def test_b64d_refuses_garbage() -> None:
    with pytest.raises(ValueError):
        crypto.b64d("not base64!")


def _openssl_verifies(public: bytes, signature: bytes, message: bytes) -> bool:
    """The reference: ``cryptography``'s (OpenSSL's) Ed25519 check."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@given(
    message=st.binary(max_size=512),
    flip=st.integers(min_value=0, max_value=8 * 64 - 1),
    change=st.sampled_from(["none", "message", "signature", "key", "cut", "longer"]),
)
def test_the_signature_check_agrees_with_openssl(message: bytes, flip: int, change: str) -> None:
    """libsodium checks what the server verifies; on a terminal's genuine signature, and on
    every kind of change to one, it answers as cryptography's check does."""
    key = crypto.generate_terminal_key()
    public = crypto.public_key_bytes(key)
    signature = key.sign(message)
    if change == "message":
        message += b"!"
    elif change == "signature":
        flipped = bytearray(signature)
        flipped[flip // 8] ^= 1 << (flip % 8)
        signature = bytes(flipped)
    elif change == "key":
        public = crypto.public_key_bytes(crypto.generate_terminal_key())
    elif change == "cut":
        signature = signature[:-1]
    elif change == "longer":
        signature += b"\0"
    expected = _openssl_verifies(public, signature, message)
    assert crypto.verify_signature(public, signature, message) is expected
    assert expected is (change == "none")
