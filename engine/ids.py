"""Time-ordered identifiers (UUIDv7-like), so LMDB writes append at the end of the B-tree.

A message id is ``"msg_"`` + 32 hex digits: a 48-bit millisecond timestamp, a 16-bit sequence that keeps ids
from one generator strictly increasing within a millisecond, and 64 random bits. ``id_bytes`` gives the
16-byte LMDB key; ``id_time`` the creation time.

>>> g = IdGenerator()
>>> a, b = g.new(), g.new()
>>> a < b and len(a) == 36 and id_bytes(a)[:6] == bytes.fromhex(a[4:16])
True
"""

from __future__ import annotations

import math
import os
import random
import re
import secrets
import threading
import time

PREFIX = "msg_"
_fromhex = bytes.fromhex
_ACCOUNT_ID = re.compile(r"acc_[0-9a-f]{16}")


class IdGenerator:
    """Thread-safe generator of strictly increasing message ids."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        # Uniqueness, not secrecy: ids are no credential (reads are authorised by account), so a PRNG
        # seeded from the OS is enough and ~10x cheaper than a urandom syscall per id.
        self._random = random.Random(os.urandom(16)).getrandbits
        self._lock = threading.Lock()
        self._last_ms = 0
        self._seq = 0

    def new(self) -> str:
        with self._lock:
            ms = int(self._clock() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._seq += 1
                if self._seq > 0xFFFF:  # more than 65,536 ids in one ms: borrow the next ms
                    ms += 1
                    self._seq = 0
            else:
                self._seq = 0
            self._last_ms = ms
            seq = self._seq
        return f"{PREFIX}{ms:012x}{seq:04x}{self._random(64):016x}"


def is_message_id(text: str) -> bool:
    """True exactly when :func:`id_bytes` takes ``text``: callers check with this and then convert, so
    the two must agree (``bytes.fromhex`` skips spaces, so a 36-character text with two of them once
    passed here and failed there — a 500 for a listing cursor)."""
    try:
        id_bytes(text)
    except ValueError:
        return False
    return True


def id_bytes(message_id: str) -> bytes:
    """The 16-byte key of a message id (raises ValueError if it is not one).

    Called several times for every message (its record twice, its body, its owed debit): the cheap
    checks come first and the success path makes no other call than ``bytes.fromhex``."""
    try:
        if len(message_id) == 36 and message_id[:4] == PREFIX:
            key = _fromhex(message_id[4:])  # (skips whitespace: hence the length check after it)
            if len(key) == 16:
                return key
    except (ValueError, TypeError):
        pass
    raise ValueError(f"not a message id: {message_id!r}")


def id_from_bytes(key: bytes) -> str:
    return PREFIX + key.hex()


def id_time(message_id: str) -> float:
    """Creation time (unix seconds) encoded in a message id."""
    return int(message_id[4:16], 16) / 1000.0


def min_key_for_time(t: float) -> bytes:
    """The smallest 16-byte key of any id created at or after ``t`` (for range scans by age): exactly
    the ids whose :func:`id_time` is ``>= t`` are at or above it (the first such millisecond, found with
    the float division ``id_time`` does, not a truncation: ``t`` between two milliseconds no longer
    lets the earlier one in)."""
    ms = math.ceil(t * 1000)
    while ms / 1000.0 < t:
        ms += 1
    while ms > 0 and (ms - 1) / 1000.0 >= t:
        ms -= 1
    return max(ms, 0).to_bytes(6, "big") + bytes(10)


def new_account_id() -> str:
    """A new account id: ``"acc_"`` + 16 hex digits (64 random bits; unlike a message id it is looked up,
    never scanned in order)."""
    return "acc_" + secrets.token_hex(8)


def is_account_id(text: str) -> bool:
    """True exactly for the shape :func:`new_account_id` makes (a worker starts a session only for such
    a name: ``actors.supervisor``)."""
    return isinstance(text, str) and _ACCOUNT_ID.fullmatch(text) is not None
