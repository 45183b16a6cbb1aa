"""Fuzzing: whatever bytes arrive, decoding returns valid records or raises DecodeError.

Seeds are the encoded sample of every record type plus a multi-record message; mutations
are bit flips, truncations, insertions, deletions and byte overwrites, and plain random
bytes. A success must be a canonical message (re-encodes to the exact input).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcpay.errors import DecodeError
from nfcpay.records import NfcpayRecord, decode_message, encode_message
from nfcpay.records.samples import sample_records

CASES_PER_SEED = 4000
SAMPLES = sample_records()
SEEDS = [encode_message([r]) for r in SAMPLES.values()] + [
    encode_message([SAMPLES["hello"], SAMPLES["grant"], SAMPLES["ack"]])
]
INTERESTING = (0x00, 0x01, 0x17, 0x18, 0x7F, 0x80, 0xBF, 0xF5, 0xF9, 0xFF)
Mutation = Callable[[random.Random, bytearray], bytearray]


def flip_bits(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return data


def truncate(rng: random.Random, data: bytearray) -> bytearray:
    return data[: rng.randrange(len(data))]


def insert(rng: random.Random, data: bytearray) -> bytearray:
    at = rng.randrange(len(data) + 1)
    data[at:at] = rng.randbytes(rng.randint(1, 8))
    return data


def delete(rng: random.Random, data: bytearray) -> bytearray:
    at = rng.randrange(len(data))
    del data[at : at + rng.randint(1, 8)]
    return data


def overwrite(rng: random.Random, data: bytearray) -> bytearray:
    data[rng.randrange(len(data))] = rng.choice(INTERESTING)
    return data


def random_bytes(rng: random.Random, data: bytearray) -> bytearray:
    return bytearray(rng.randbytes(rng.randint(0, len(data))))


MUTATIONS: tuple[Mutation, ...] = (flip_bits, truncate, insert, delete, overwrite, random_bytes)


def decodes_cleanly(octets: bytes) -> bool:
    """True if decoded (and canonical), False if refused with DecodeError; else it raises."""
    try:
        records = decode_message(octets)
    except DecodeError as exc:
        assert exc.message
        return False
    assert records and all(isinstance(r, NfcpayRecord) for r in records)
    assert encode_message(records) == octets
    return True


@pytest.mark.parametrize("seed_index", range(len(SEEDS)))
def test_mutated_encodings_decode_or_raise_decode_error(seed_index: int) -> None:
    rng = random.Random(seed_index)
    seed = SEEDS[seed_index]
    accepted = 0
    for _ in range(CASES_PER_SEED):
        mutation = rng.choice(MUTATIONS)
        accepted += decodes_cleanly(bytes(mutation(rng, bytearray(seed))))
    assert accepted < CASES_PER_SEED  # the mutations did reach the refusal paths


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error(octets: bytes) -> None:
    decodes_cleanly(octets)


@pytest.mark.parametrize(
    "octets",
    [
        "940202419363922cbaee",  # ndeflib: UnicodeDecodeError (non-ASCII TYPE)
        "d20401ee741513e2e82b2ba35b79",  # ndeflib: UnicodeDecodeError (media type)
        "d301050800f21be027e5",  # ndeflib: ValueError (empty absolute-URI type)
        "d301066a52ef45a3744f09518e85",  # ndeflib: ValueError (not an absolute URI)
    ],
)
def test_ndeflib_crashes_found_by_fuzzing_become_decode_errors(octets: str) -> None:
    with pytest.raises(DecodeError, match="malformed NDEF message"):
        decode_message(bytes.fromhex(octets))
