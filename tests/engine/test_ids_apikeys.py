"""Time-ordered message ids and API key digests."""

from __future__ import annotations

import math
import re
import threading

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine import apikeys
from engine.ids import (
    IdGenerator,
    id_bytes,
    id_from_bytes,
    id_time,
    is_message_id,
    min_key_for_time,
)

T0 = 1_790_000_000.0


def test_ids_from_one_generator_strictly_increase_even_within_one_millisecond():
    gen = IdGenerator(clock=lambda: T0)
    ids = [gen.new() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [id_bytes(i) for i in ids] == sorted(id_bytes(i) for i in ids)


def test_more_than_65536_ids_in_one_millisecond_borrow_the_next_millisecond():
    gen = IdGenerator(clock=lambda: T0)
    ids = [gen.new() for _ in range(0x10000 + 2)]
    assert ids == sorted(ids)
    assert id_time(ids[-1]) == pytest.approx(T0 + 0.001)


def test_ids_stay_increasing_when_the_clock_steps_back():
    now = [T0]
    gen = IdGenerator(clock=lambda: now[0])
    a = gen.new()
    now[0] = T0 - 5
    b = gen.new()
    assert b > a


def test_ids_from_many_threads_are_unique():
    gen = IdGenerator()
    out: list[list[str]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        out[i].extend(gen.new() for _ in range(2000))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for part in out for i in part]
    assert len(set(flat)) == len(flat)


@settings(max_examples=200, deadline=None)
@given(t=st.floats(min_value=0, max_value=2**47 / 1000, allow_nan=False))
def test_an_id_encodes_its_creation_time_and_sorts_at_or_after_its_time_key(t):
    mid = IdGenerator(clock=lambda: t).new()
    assert is_message_id(mid) and len(mid) == 36
    assert id_time(mid) == int(t * 1000) / 1000
    assert id_bytes(mid) >= min_key_for_time(id_time(mid))
    # the time key splits ids exactly as their id_time does (the listing's since/until, which must
    # agree with the submitted_at it shows): t between two milliseconds no longer lets the earlier in
    for bound in (t, id_time(mid), math.nextafter(id_time(mid), 0), math.nextafter(id_time(mid), 1e15)):
        assert (id_bytes(mid) >= min_key_for_time(bound)) == (id_time(mid) >= bound)
    assert id_from_bytes(id_bytes(mid)) == mid


@settings(max_examples=100, deadline=None)
@given(a=st.floats(min_value=0, max_value=2**47 / 1000, allow_nan=False),
       b=st.floats(min_value=0, max_value=2**47 / 1000, allow_nan=False))
def test_ids_of_earlier_times_sort_before_ids_of_later_times(a, b):
    if int(a * 1000) == int(b * 1000):
        return
    ia, ib = IdGenerator(clock=lambda: a).new(), IdGenerator(clock=lambda: b).new()
    assert (ia < ib) == (a < b)


@pytest.mark.parametrize("text", ["", "msg_", "msg_" + "z" * 32, "xyz_" + "0" * 32, "msg_" + "0" * 31,
                                  "msg_  " + "0" * 30])  # (bytes.fromhex skips spaces)
def test_strings_that_are_not_message_ids_are_recognised_and_refused(text):
    assert not is_message_id(text)
    with pytest.raises(ValueError):
        id_bytes(text)


_ID = re.compile(r"msg_[0-9a-fA-F]{32}")
_NEAR_IDS = st.builds(lambda prefix, digits: prefix + digits,
                      st.sampled_from(["msg_", "MSG_", "msg", "xsg_", ""]),
                      st.text(alphabet="0123456789abcdefABCDEF g\u0663\u00e9\n", min_size=28,
                              max_size=36))


@settings(max_examples=400, deadline=None)
@example("msg_" + "0" * 30 + "  ")  # 15 bytes: bytes.fromhex skips the spaces, the length is 36
@example("msg_0a" + " 0b" * 10)
@given(value=st.one_of(_NEAR_IDS, st.text(max_size=40), st.binary(max_size=36), st.none(), st.integers()))
def test_id_bytes_takes_exactly_msg_and_32_hex_digits_and_refuses_everything_else(value):
    # id_bytes runs several times per message in the POP's commit; its fast path must still refuse
    # exactly what is not an id (whitespace that bytes.fromhex would skip, non-ASCII digits, bytes)
    if isinstance(value, str) and _ID.fullmatch(value):
        assert id_bytes(value) == bytes.fromhex(value[4:]) and is_message_id(value)
    else:
        with pytest.raises(ValueError):
            id_bytes(value)
        assert not is_message_id(value)


def test_a_new_api_key_has_the_prefix_and_256_random_bits_and_is_never_repeated():
    keys = {apikeys.new_api_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(k.startswith(apikeys.PREFIX) and len(k) == len(apikeys.PREFIX) + 43 for k in keys)


def test_a_key_matches_only_its_own_digest():
    key, other = apikeys.new_api_key(), apikeys.new_api_key()
    d = apikeys.digest(key)
    assert len(d) == 32 and d == apikeys.digest(key)
    assert apikeys.matches([apikeys.digest(other), d], d)
    assert not apikeys.matches([apikeys.digest(other)], d)
    assert not apikeys.matches([], d)


def test_a_key_hint_shows_only_the_prefix_and_last_four_characters():
    key = apikeys.new_api_key()
    hint = apikeys.hint(key)
    assert hint.startswith(apikeys.PREFIX) and hint.endswith(key[-4:])
    assert key[len(apikeys.PREFIX):-4] not in hint


def test_a_presented_key_carries_its_digest_and_never_shows_the_key():
    key = apikeys.new_api_key()
    presented = apikeys.PresentedKey(key)
    assert presented.digest == apikeys.digest(key)
    assert key not in repr(presented) and presented.digest.hex() not in repr(presented)
    assert not hasattr(presented, "__dict__")  # nothing else (the key) can be kept on it
    assert apikeys.digest_of(presented) == apikeys.digest_of(key) == apikeys.digest(key)
    for not_a_key in (None, 42, apikeys.digest(key), [key]):  # a bare digest is not a credential
        assert apikeys.digest_of(not_a_key) is None
