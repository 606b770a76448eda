"""Sealer: AES-256-GCM blobs round-trip, bind their associated data, and reject any tampering."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import CorruptRecord
from storage.crypto import BLOB_OVERHEAD, Sealer, blob_key_id

KEY = bytes(range(32))


@given(plaintext=st.binary(max_size=2000), aad=st.binary(max_size=40),
       key_id=st.integers(0, 0xFFFF_FFFF))
def test_a_sealed_blob_opens_to_its_plaintext_with_the_same_aad(plaintext, aad, key_id):
    sealer = Sealer(KEY, key_id)
    blob = sealer.seal(plaintext, aad)
    assert len(blob) == len(plaintext) + BLOB_OVERHEAD
    assert blob_key_id(blob) == key_id
    assert sealer.open(blob, aad) == plaintext


@given(plaintext=st.binary(min_size=1, max_size=300), data=st.data())
def test_any_single_flipped_bit_makes_open_raise_corrupt_record(plaintext, data):
    sealer = Sealer(KEY, 7)
    blob = bytearray(sealer.seal(plaintext, b"msg_1"))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CorruptRecord):
        sealer.open(bytes(blob), b"msg_1")


@given(plaintext=st.binary(max_size=300), cut=st.integers(0, 400))
def test_a_truncated_blob_raises_corrupt_record(plaintext, cut):
    sealer = Sealer(KEY, 1)
    blob = sealer.seal(plaintext)
    cut = min(cut, len(blob) - 1)
    with pytest.raises(CorruptRecord):
        sealer.open(blob[:cut])


def test_a_blob_does_not_open_under_another_message_id():
    sealer = Sealer(KEY, 1)
    blob = sealer.seal(b"hello", b"msg_a")
    with pytest.raises(CorruptRecord, match="authentication"):
        sealer.open(blob, b"msg_b")


def test_a_blob_does_not_open_under_another_key_even_with_the_same_key_id():
    blob = Sealer(KEY, 3).seal(b"hello")
    with pytest.raises(CorruptRecord):
        Sealer(os.urandom(32), 3).open(blob)


def test_a_blob_sealed_under_another_key_id_names_that_key_in_the_error():
    blob = Sealer(KEY, 3).seal(b"hello")
    with pytest.raises(CorruptRecord, match="key 3"):
        Sealer(KEY, 4).open(blob)


def test_nonces_of_one_sealer_never_repeat():
    sealer = Sealer(KEY)
    nonces = {sealer.seal(b"x")[5:17] for _ in range(5000)}
    assert len(nonces) == 5000


def test_two_sealers_of_the_same_key_draw_different_nonce_fields():
    a, b = Sealer(KEY), Sealer(KEY)
    assert a.seal(b"x")[5:17] != b.seal(b"x")[5:17]


def test_a_key_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError):
        Sealer(b"short")


def test_the_repr_shows_no_key_material():
    assert KEY.hex() not in repr(Sealer(KEY, 9)) and "9" in repr(Sealer(KEY, 9))
