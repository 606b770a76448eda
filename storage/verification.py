"""One-time proofs: e-mailed links (account confirmation, request verification) and wallet challenges.

Why it exists: an e-mail address is confirmed, and a data-subject request verified, by something only the
holder can present once: a random token mailed to the address of record, or a signature over a server
challenge by a wallet that paid into the account. Both are single use and expire, so neither a leaked link
nor a captured signature can be replayed.

* Link tokens: 32 random bytes (hex in the link). Only their SHA-256 digest is stored (like API keys), as
  the key of ``link_tokens``; the value (purpose, subject id, expiry) is sealed.
* Challenges: ``chl_`` + 32 random hex (16 bytes) -> sealed (account id, request type, nonce, message, expiry). The
  message is what the wallet signs; it names the service, account, request type, nonce and expiry.

Redeeming deletes the entry in the same transaction that reads it: a second use finds nothing
(:class:`~engine.errors.ChallengeInvalid`), whether the first succeeded or not.

Durability contract: every write commits (fsync: the environment syncs on commit) before it returns.
*Writers:* any thread. *Readers:* any thread. :meth:`sweep` deletes expired entries.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import ChallengeInvalid
from storage.crypto import Sealer

__all__ = ["Challenge", "Challenges", "LinkTokens"]


class LinkTokens:
    """Single-use, expiring tokens for mailed links; stored as digests.

    *Durable:* ``issue`` and ``redeem`` commit (fsync) before they return, so a redeemed token stays
    used after ``kill -9``. *Writers/readers:* any thread.
    """

    def __init__(self, env: lmdb.Environment, sealer: Sealer) -> None:
        self.env = env
        self._sealer = sealer
        self._db = env.open_db(b"link_tokens")

    def issue(self, purpose: str, subject: str, ttl_seconds: float,
              now: float | None = None) -> tuple[str, float]:
        """A new token for ``subject`` (an account or request id); (token, expires_at)."""
        now = time.time() if now is None else now
        token = secrets.token_hex(32)
        key = hashlib.sha256(token.encode()).digest()
        expires = now + ttl_seconds
        with self.env.begin(write=True) as txn:
            txn.put(key, self._sealer.seal(msgpack.packb([purpose, subject, expires]), key),
                    db=self._db)
        return token, expires

    def redeem(self, purpose: str, token: str, now: float | None = None) -> str:
        """The subject of a valid token, consumed; ``ChallengeInvalid`` if unknown, used or expired."""
        now = time.time() if now is None else now
        if not isinstance(token, str) or len(token) != 64:
            raise ChallengeInvalid("the link is not valid")
        key = hashlib.sha256(token.encode()).digest()
        with self.env.begin(write=True) as txn:
            blob = txn.pop(key, db=self._db)
        if blob is None:
            raise ChallengeInvalid("the link is unknown or was already used")
        kind, subject, expires = msgpack.unpackb(self._sealer.open(blob, key))
        if kind != purpose:
            raise ChallengeInvalid("the link is not for this purpose")
        if expires < now:
            raise ChallengeInvalid("the link has expired")
        return subject

    def sweep(self, now: float) -> int:
        return _sweep_expired(self.env, self._db, self._sealer, now, expiry_index=2)


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

    def __init__(self, env: lmdb.Environment, sealer: Sealer) -> None:
        self.env = env
        self._sealer = sealer
        self._db = env.open_db(b"wallet_challenges")

    def issue(self, account_id: str, request_type: str, ttl_seconds: float,
              now: float | None = None) -> Challenge:
        now = time.time() if now is None else now
        challenge_id = "chl_" + secrets.token_hex(16)
        nonce = secrets.token_hex(16)
        expires = now + ttl_seconds
        message = (f"smsroute data-subject request\naccount: {account_id}\ntype: {request_type}\n"
                   f"nonce: {nonce}\nexpires: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires))}")
        challenge = Challenge(challenge_id, account_id, request_type, message, expires)
        key = challenge_id.encode()
        with self.env.begin(write=True) as txn:
            txn.put(key, self._sealer.seal(msgpack.packb(list(challenge[1:])), key), db=self._db)
        return challenge

    def take(self, challenge_id: str, now: float | None = None) -> Challenge:
        """The challenge, consumed (a second take fails); ``ChallengeInvalid`` if unknown or expired."""
        now = time.time() if now is None else now
        key = challenge_id.encode() if isinstance(challenge_id, str) else b""
        with self.env.begin(write=True) as txn:
            blob = txn.pop(key, db=self._db) if key else None
        if blob is None:
            raise ChallengeInvalid("the challenge is unknown or was already used")
        challenge = Challenge(challenge_id, *msgpack.unpackb(self._sealer.open(blob, key)))
        if challenge.expires_at < now:
            raise ChallengeInvalid("the challenge has expired")
        return challenge

    def sweep(self, now: float) -> int:
        return _sweep_expired(self.env, self._db, self._sealer, now, expiry_index=3)


def _sweep_expired(env: lmdb.Environment, db, sealer: Sealer, now: float, expiry_index: int) -> int:
    removed = 0
    with env.begin(write=True) as txn:
        for key, blob in list(txn.cursor(db=db)):
            if msgpack.unpackb(sealer.open(blob, bytes(key)))[expiry_index] < now:
                txn.delete(key, db=db)
                removed += 1
    return removed
