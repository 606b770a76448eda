"""Idempotency keys for ``POST /v1/messages``: a retried request gets the first answer, nothing is sent twice.

A record maps (account id, ``Idempotency-Key``) to (a keyed hash of the request body, HTTP status,
answer body, time). The hash is HMAC-SHA256 under a secret that never leaves the data directory's key
folder: a plain SHA-256 of a short SMS request could be reversed by guessing (destination, sender and a
one-time code are a small space), which would keep a copy of the message body for 24 hours outside the
encrypted, shredded body store. A retry with the same key and the same body replays the stored answer; the same key with a
different body is refused (422). While the first request with a key is still being processed, a
concurrent one with the same key is refused with 409 (it may retry and will then get the replay).

Before the engine sees the request, a *pending* record is made durable; after the durable 202 it is
replaced by the answer. A refused request sent nothing, so its pending record is deleted and a retry
simply re-evaluates it. A pending record left by a process that died mid-request means the outcome is
unknown (the message may or may not have been accepted): a retry then gets 409
``idempotency_outcome_unknown`` rather than risking a second send; the client checks its messages or
uses a new key.

Records are keyed by a keyed HMAC of (account id, ``Idempotency-Key``) under the same secret, never by the
key itself: clients often put an order number or a phone number in it, a natural key that identifies a
person. The answer itself is sealed (AES-256-GCM) under the account's data key, with the record key as AAD:
it echoes the client's ``client_ref`` (as sensitive as the ``Idempotency-Key``, and sealed with the message
record everywhere else), and erasing the account destroys that key, so no answer of an erased account can
be read or replayed again. An answer that cannot be opened is treated like an interrupted request (409).

*Durable:* pending records and answers are written through the group committer and awaited before the
engine is called / before the answer goes out. *Writers:* the committer thread and :meth:`sweep`.
*Readers:* the loop thread. Records are kept 24 hours.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, KeyUnavailable
from engine.http.errors import HttpError
from engine.http.store import GroupCommitter, Put
from storage.crypto import Sealer
from storage.pseudonyms import keyed_hash

DB = b"idempotency"
KEEP_SECONDS = 86400
MAX_KEY_LENGTH = 255
PENDING = 0  # the status of a record whose request is (or was, before a crash) in progress


class StoredAnswer(NamedTuple):
    request_hash: bytes
    status: int
    body: bytes
    at: float


def check_key(key: str) -> str:
    """Validate an ``Idempotency-Key`` header value (1-255 visible ASCII characters)."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(33 <= ord(c) <= 126 for c in key):
        raise HttpError(400, "invalid_idempotency_key",
                        f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} visible ASCII characters")
    return key


def key_of(headers: Mapping[str, str]) -> str | None:
    """The request's ``Idempotency-Key`` (validated by :func:`check_key`), or None without one. Given
    twice it is ambiguous and refused (400 ``invalid_idempotency_key``), like two ``Authorization``
    headers: the first silently won, so a client whose library adds a stale default key beside the
    fresh one had its new request answered with an old request's replay and never sent."""
    values = headers.getall("Idempotency-Key", [])  # type: ignore[attr-defined]  (a CIMultiDict)
    if len(values) > 1:
        raise HttpError(400, "invalid_idempotency_key", "send exactly one Idempotency-Key header")
    return check_key(values[0]) if values else None


def request_hash(body: bytes, secret: bytes) -> bytes:
    """HMAC-SHA256 of the raw request body under ``secret`` (see the module docstring)."""
    return keyed_hash(body, secret)


class IdempotencyStore:
    """Stored first answers by (account, key), plus the keys currently being processed."""

    def __init__(self, env: lmdb.Environment, committer: GroupCommitter, secret: bytes = b"", *,
                 sealer_for: Callable[[str], Sealer] | None = None) -> None:
        """``sealer_for(account_id)``: the account's data key (``KeyUnavailable`` once it is erased). A
        stand-in engine without account keys gets one per-process key for every account."""
        self._env = env
        if sealer_for is None:
            process_key = Sealer(os.urandom(32))
            sealer_for = lambda _account_id: process_key  # noqa: E731
        self._sealer_for = sealer_for
        self._db = env.open_db(DB)
        self._committer = committer
        if committer is not None:
            committer.register(DB, self._db)
        self._secret = secret or os.urandom(32)  # the engine passes its durable secret
        self._in_progress: dict[bytes, bytes] = {}

    def _key(self, account_id: str, key: str) -> bytes:
        return hmac.new(self._secret, account_id.encode() + b"\0" + key.encode(),
                        hashlib.sha256).digest()

    def lookup(self, account_id: str, key: str, body_hash: bytes,
               now: float | None = None) -> StoredAnswer | None:
        """The stored answer to replay, or None to proceed; 422 on a body mismatch, 409 while busy.
        A record older than 24 hours counts as absent whether or not the hourly sweep took it yet:
        after 24 hours the same key is a new request, as documented."""
        k = self._key(account_id, key)
        with self._env.begin() as txn:
            raw = txn.get(k, db=self._db)
        stored = self._open(account_id, k, raw) if raw is not None else None
        if stored is not None and stored.at < (time.time() if now is None else now) - KEEP_SECONDS:
            stored = None
        busy = self._in_progress.get(k)
        first_hash = stored.request_hash if stored is not None else busy
        if first_hash is not None and first_hash != body_hash:
            raise HttpError(422, "idempotency_key_reused",
                            "this Idempotency-Key was used with a different request body")
        if busy is None and stored is not None and stored.status == PENDING:
            raise HttpError(409, "idempotency_outcome_unknown",
                            "an earlier request with this Idempotency-Key was interrupted; its "
                            "outcome is unknown: check your messages or use a new key")
        if stored is not None and stored.status != PENDING:
            return stored
        if busy is not None:
            raise HttpError(409, "idempotency_conflict",
                            "a request with this Idempotency-Key is still being processed")
        return None

    def begin(self, account_id: str, key: str, body_hash: bytes) -> None:
        """Mark the key in progress in memory (concurrent retries get 409)."""
        self._in_progress[self._key(account_id, key)] = body_hash

    async def reserve(self, account_id: str, key: str, body_hash: bytes, now: float) -> None:
        """Make the pending record durable (before the engine is asked to send anything)."""
        await self.store(account_id, key, StoredAnswer(body_hash, PENDING, b"", now))

    async def abandon(self, account_id: str, key: str) -> None:
        """Delete the pending record of a request that sent nothing."""
        await self._committer.write([Put(DB, self._key(account_id, key), None)])

    def end(self, account_id: str, key: str) -> None:
        self._in_progress.pop(self._key(account_id, key), None)

    async def store(self, account_id: str, key: str, answer: StoredAnswer) -> None:
        """Make the answer durable (awaits the group commit)."""
        k = self._key(account_id, key)
        if answer.body:
            answer = answer._replace(body=self._sealer_for(account_id).seal(answer.body, k))
        await self._committer.write([Put(DB, k, msgpack.packb(list(answer)))])

    def _open(self, account_id: str, k: bytes, raw: bytes) -> StoredAnswer:
        """The stored record with its answer opened; one that cannot be opened (the account's key is
        gone, or the record is damaged) reads as pending: its outcome is unknown to this process."""
        stored = StoredAnswer(*msgpack.unpackb(raw))
        if stored.status == PENDING or not stored.body:
            return stored
        try:
            return stored._replace(body=self._sealer_for(account_id).open(stored.body, k))
        except (KeyUnavailable, CorruptRecord):
            return stored._replace(status=PENDING, body=b"")

    def sweep(self, now: float) -> int:
        """Delete records older than 24 hours; return how many."""
        deleted = 0
        with self._env.begin(write=True) as txn:
            cur = txn.cursor(db=self._db)
            cur.first()
            while cur.key():
                if StoredAnswer(*msgpack.unpackb(cur.value())).at < now - KEEP_SECONDS:
                    cur.delete()
                    deleted += 1
                elif not cur.next():
                    break
        return deleted
