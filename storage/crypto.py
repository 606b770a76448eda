"""AES-256-GCM sealing of small records: the one place smsroute encrypts data at rest.

Why it exists: message bodies, account records and receipt metadata are stored encrypted (privacy policy 9),
and bodies are erased by destroying their key (crypto-shredding, see ``storage.keys``). Every encrypted value
in every store is a *blob* made here::

    blob = b"\\x01" | key_id (4 bytes, big-endian) | nonce (12 bytes) | ciphertext | tag (16 bytes)

* ``key_id`` names the data key (a body window, a store key, a hold key), so a reader can pick the key and
  an operator can see which key a stale page depended on. It is not secret.
* The header (version + key id) is authenticated together with the caller's associated data (for a body:
  its message id), so a blob cannot be moved to another record or relabelled with another key id.
* Nonces follow the deterministic construction of NIST SP 800-38D 8.2.1: an 8-byte random field drawn per
  :class:`Sealer` instance plus a 4-byte invocation counter (cheaper than ``os.urandom`` per call); the field
  is redrawn before the counter wraps. Two instances of the same key collide only if their 64-bit random
  fields collide.

:meth:`Sealer.open` raises :class:`~engine.errors.CorruptRecord` on any failure (short blob, unknown
version, wrong key id, failed authentication) and never returns unauthenticated bytes.
"""

from __future__ import annotations

import itertools
import os
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engine.errors import CorruptRecord

__all__ = ["BLOB_OVERHEAD", "BLOB_VERSION", "KEY_BYTES", "Sealer", "blob_key_id"]

BLOB_VERSION = 1
KEY_BYTES = 32
_HEADER = 5  # version byte + 4-byte key id
_NONCE = 12
_TAG = 16
BLOB_OVERHEAD = _HEADER + _NONCE + _TAG
_MAX_KEY_ID = 0xFFFF_FFFF
_COUNTER_LIMIT = 1 << 32


def blob_key_id(blob: bytes) -> int:
    """The key id a blob was sealed under (raises ``CorruptRecord`` if it is not a blob)."""
    if len(blob) < BLOB_OVERHEAD or blob[0] != BLOB_VERSION:
        raise CorruptRecord(f"not an encrypted record (length {len(blob)})")
    return int.from_bytes(blob[1:_HEADER], "big")


class Sealer:
    """AES-256-GCM under one 32-byte key. Thread-safe: ``seal``/``open`` may run in any thread."""

    __slots__ = ("key_id", "_aead", "_header", "_state", "_lock")

    def __init__(self, key: bytes, key_id: int = 0) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an AES-256 key is {KEY_BYTES} bytes, got {len(key)}")
        if not 0 <= key_id <= _MAX_KEY_ID:
            raise ValueError(f"key_id must fit in 4 bytes, got {key_id}")
        self.key_id = key_id
        self._aead = AESGCM(key)
        self._header = bytes([BLOB_VERSION]) + key_id.to_bytes(4, "big")
        self._lock = threading.Lock()
        self._state = (os.urandom(8), itertools.count())  # (random field, invocation counter)

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt ``plaintext``; ``aad`` (e.g. the message id) is authenticated, not stored."""
        salt, counter = self._state  # one tuple, so salt and counter always belong together
        n = next(counter)  # itertools.count is atomic under the GIL
        if n >= _COUNTER_LIMIT:
            salt, n = self._reseed(counter)
        nonce = salt + n.to_bytes(4, "big")
        header = self._header
        return header + nonce + self._aead.encrypt(nonce, plaintext, header + aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        """Decrypt a blob from :meth:`seal` with the same ``aad``; ``CorruptRecord`` on any failure."""
        header = self._header
        if len(blob) < BLOB_OVERHEAD or blob[:_HEADER] != header:
            if len(blob) >= BLOB_OVERHEAD and blob[0] == BLOB_VERSION:
                raise CorruptRecord(
                    f"record sealed under key {blob_key_id(blob)}, not key {self.key_id}"
                )
            raise CorruptRecord(f"not an encrypted record (length {len(blob)})")
        try:
            return self._aead.decrypt(blob[_HEADER:_HEADER + _NONCE], blob[_HEADER + _NONCE:],
                                      header + aad)
        except InvalidTag:
            raise CorruptRecord(
                f"record failed authentication under key {self.key_id} (tampered, truncated or "
                "bound to another id)"
            ) from None

    def _reseed(self, exhausted: itertools.count) -> tuple[bytes, int]:
        with self._lock:
            if self._state[1] is exhausted:
                self._state = (os.urandom(8), itertools.count())
            salt, counter = self._state
            return salt, next(counter)

    def __repr__(self) -> str:  # never show key material
        return f"Sealer(key_id={self.key_id})"
