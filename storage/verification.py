"""One-time proofs: e-mailed links (account confirmation, request verification) and wallet challenges.

Why it exists: an e-mail address is confirmed, and a data-subject request verified, by something only the
holder can present once: a random token mailed to the address of record, or a signature over a server
challenge by a wallet that paid into the account. Both are single use and expire, so neither a leaked link
nor a captured signature can be replayed.

* Link tokens: 32 random bytes (hex in the link). Only their SHA-256 digest is stored (like API keys), as
  the key of ``link_tokens``; the value (purpose, subject id, expiry) is sealed.
* Challenges: ``chl_`` + 32 random hex (16 bytes) -> sealed (account id, request type, nonce, message, expiry). The
  message is what the wallet signs; it names the service, account, request type, nonce and expiry.

Erasure (policy 7.1): a link or a challenge names its account (a confirmation link its id, a verification
link its request, a challenge its id in the signed message). LMDB never wipes freed pages (``storage.env``),
so deleting an entry does not erase it: each value is sealed under the **data key of its account**
(``storage.account_keys``), the key erasure destroys. A value is a 25-byte header — format byte ``0x02``,
the account's keyed token (``storage.pseudonyms``), the expiry (big-endian double) — then the sealed msgpack
(the db key as AAD). A challenge for a *former* account (its record and data key swept 90 days after
closure, its ledger rows kept: ``engine.privacy.former``) is sealed under the account's **ledger key**
instead (format byte ``0x03``), which erasure destroys too. :meth:`LinkTokens.forget_account` and :meth:`Challenges.forget_account` (called by the
erasure) delete the account's pending entries; any copy left on a stale page no longer opens, and an entry
whose key is gone is refused as unknown. Sweeping reads expiry from the header, never a key.
Values of an older version (a bare blob sealed under the store-wide key) are still read with ``legacy``.

Redeeming deletes the entry in the same transaction that reads it: a second use finds nothing
(:class:`~engine.errors.ChallengeInvalid`), whether the first succeeded or not.

Durability contract: every write commits (fsync: the environment syncs on commit) before it returns; a
full store refuses it with ``StoreFull`` (``storage.full``) and keeps every entry it has.
*Writers:* any thread. *Readers:* any thread. :meth:`sweep` deletes expired entries.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import ChallengeInvalid, CorruptRecord, KeyUnavailable
from storage.account_keys import DATA, LEDGER, AccountKeys
from storage.crypto import BLOB_VERSION, Sealer
from storage.full import refusing_when_full
from storage.headroom import delete_in_batches, storing_new

__all__ = ["Challenge", "Challenges", "LinkTokens"]

_FORMAT = 0x02  # never BLOB_VERSION: a bare sealed blob is an entry of the older format
_FORMATS = {_FORMAT: DATA, 0x03: LEDGER}  # format byte -> the account key the body is sealed under
_FORMAT_OF = {purpose: fmt for fmt, purpose in _FORMATS.items()}
_HEADER = struct.Struct(">B16sd")  # format, account token, expires


class _AccountSealed:
    """The shared value layout of both stores: header (format, account token, expiry) + sealed body."""

    def __init__(self, env: lmdb.Environment, db: bytes, account_keys: AccountKeys,
                 legacy: Sealer | None) -> None:
        self.env = env
        self._keys = account_keys
        self._legacy = legacy
        self._db = env.open_db(db)

    def put(self, key: bytes, account_id: str, expires: float, doc: list, purpose: str = DATA) -> None:
        token = self._keys.token(account_id)
        sealer = self._keys.sealer_for_token(token, purpose)  # KeyUnavailable: an erased account
        value = _HEADER.pack(_FORMAT_OF[purpose], token, expires) + sealer.seal(msgpack.packb(doc), key)
        with storing_new(self.env, "privacy"), self.env.begin(write=True) as txn:
            txn.put(key, value, db=self._db)

    def take(self, key: bytes) -> list | None:
        """The entry's document, deleted in the same transaction; None if unknown, used, or its
        account's key is gone (erased)."""
        with refusing_when_full("privacy"), self.env.begin(write=True) as txn:
            blob = txn.pop(key, db=self._db)
        if blob is None:
            return None
        return self._open(key, bytes(blob))

    def forget(self, account_id: str, legacy_mine: Callable[[list], bool]) -> int:
        """Erasure: delete every entry of the account; how many. Runs on a store full for new entries
        (``storage.headroom``: in batches its reserve holds)."""
        token = self._keys.token(account_id)

        def mine(key: bytes, blob: bytes) -> bool:
            if blob[0] in _FORMATS:
                return _HEADER.unpack_from(blob)[1] == token
            doc = self._open(key, blob)  # an older entry: open it to see whose it is
            return doc is not None and legacy_mine(doc)

        return delete_in_batches(self.env, self._db, self._keys_where(mine), "privacy")

    def sweep(self, now: float, expiry_index: int) -> int:
        """Retention: delete the expired entries; how many (in batches, like :meth:`forget`)."""

        def expired(key: bytes, blob: bytes) -> bool:
            if blob[0] in _FORMATS:
                return _HEADER.unpack_from(blob)[2] < now
            doc = self._open(key, blob)
            return (doc[expiry_index] if doc is not None else 0.0) < now

        return delete_in_batches(self.env, self._db, self._keys_where(expired), "privacy")

    def _keys_where(self, chosen: Callable[[bytes, bytes], bool]) -> list[bytes]:
        with self.env.begin() as txn:
            return [key for key, blob in ((bytes(k), bytes(v)) for k, v in txn.cursor(db=self._db))
                    if chosen(key, blob)]

    def _open(self, key: bytes, blob: bytes) -> list | None:
        if blob[0] in _FORMATS:
            token = _HEADER.unpack_from(blob)[1]
            try:
                sealer = self._keys.sealer_for_token(token, _FORMATS[blob[0]])
            except KeyUnavailable:
                return None  # its account was erased: the entry is gone with it
            return msgpack.unpackb(sealer.open(blob[_HEADER.size:], key))
        if blob[0] == BLOB_VERSION and self._legacy is not None:
            return msgpack.unpackb(self._legacy.open(blob, key))
        raise CorruptRecord(f"one-time proof {key.hex()[:16]}… has an unknown format")


class LinkTokens:
    """Single-use, expiring tokens for mailed links; stored as digests.

    *Durable:* ``issue`` and ``redeem`` commit (fsync) before they return, so a redeemed token stays
    used after ``kill -9``. *Writers/readers:* any thread.
    """

    def __init__(self, env: lmdb.Environment, account_keys: AccountKeys, *,
                 legacy: Sealer | None = None) -> None:
        self.env = env
        self._store = _AccountSealed(env, b"link_tokens", account_keys, legacy)

    def issue(self, purpose: str, subject: str, ttl_seconds: float,
              now: float | None = None, *, account_id: str) -> tuple[str, float]:
        """A new token for ``subject`` (an account or request id) of ``account_id`` (whose data key
        seals it); (token, expires_at). ``KeyUnavailable`` if the account has no data key (erased)."""
        now = time.time() if now is None else now
        token = secrets.token_hex(32)
        key = hashlib.sha256(token.encode()).digest()
        expires = now + ttl_seconds
        self._store.put(key, account_id, expires, [purpose, subject, expires])
        return token, expires

    def redeem(self, purpose: str, token: str, now: float | None = None) -> str:
        """The subject of a valid token, consumed; ``ChallengeInvalid`` if unknown, used or expired."""
        now = time.time() if now is None else now
        if not isinstance(token, str) or len(token) != 64:
            raise ChallengeInvalid("the link is not valid")
        doc = self._store.take(hashlib.sha256(token.encode()).digest())
        if doc is None:
            raise ChallengeInvalid("the link is unknown or was already used")
        kind, subject, expires = doc
        if kind != purpose:
            raise ChallengeInvalid("the link is not for this purpose")
        if expires < now:
            raise ChallengeInvalid("the link has expired")
        return subject

    def forget_account(self, account_id: str, subjects: Iterable[str] = ()) -> int:
        """Erasure: delete the account's pending links (they can never be used again); how many.
        ``subjects`` (its request ids) find the older entries, which name no account token."""
        subjects = {*subjects}
        return self._store.forget(account_id, lambda doc: doc[1] in subjects
                                  or str(doc[1]).startswith(account_id + ":"))

    def sweep(self, now: float) -> int:
        return self._store.sweep(now, expiry_index=2)


class Challenge(NamedTuple):
    challenge_id: str
    account_id: str
    request_type: str
    message: str
    expires_at: float


class Challenges:
    """Single-use, expiring messages for a wallet to sign.

    *Durable:* ``issue`` and ``take`` commit (fsync) before they return: a taken challenge stays used
    after ``kill -9`` (no replay). *Writers/readers:* any thread.
    """

    def __init__(self, env: lmdb.Environment, account_keys: AccountKeys, *,
                 legacy: Sealer | None = None) -> None:
        self.env = env
        self._store = _AccountSealed(env, b"wallet_challenges", account_keys, legacy)

    def issue(self, account_id: str, request_type: str, ttl_seconds: float,
              now: float | None = None, *, purpose: str = DATA) -> Challenge:
        """A new challenge, sealed under the account's ``purpose`` key (``LEDGER`` for a former
        account, whose data key is gone); ``KeyUnavailable`` if that key does not exist."""
        now = time.time() if now is None else now
        challenge_id = "chl_" + secrets.token_hex(16)
        nonce = secrets.token_hex(16)
        expires = now + ttl_seconds
        message = (f"smsroute data-subject request\naccount: {account_id}\ntype: {request_type}\n"
                   f"nonce: {nonce}\nexpires: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires))}")
        challenge = Challenge(challenge_id, account_id, request_type, message, expires)
        self._store.put(challenge_id.encode(), account_id, expires, list(challenge[1:]), purpose)
        return challenge

    def take(self, challenge_id: str, now: float | None = None) -> Challenge:
        """The challenge, consumed (a second take fails); ``ChallengeInvalid`` if unknown or expired."""
        now = time.time() if now is None else now
        key = challenge_id.encode() if isinstance(challenge_id, str) else b""
        doc = self._store.take(key) if key else None
        if doc is None:
            raise ChallengeInvalid("the challenge is unknown or was already used")
        challenge = Challenge(challenge_id, *doc)
        if challenge.expires_at < now:
            raise ChallengeInvalid("the challenge has expired")
        return challenge

    def forget_account(self, account_id: str) -> int:
        """Erasure: delete the account's pending challenges; how many."""
        return self._store.forget(account_id, lambda doc: doc[0] == account_id)

    def sweep(self, now: float) -> int:
        return self._store.sweep(now, expiry_index=3)
