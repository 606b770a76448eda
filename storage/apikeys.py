"""API key metadata: per key an id, the hint, when it was created, last used and revoked.

The keys themselves are never stored: the account record holds their SHA-256 digests (the credential check,
``storage.accounts``), and this store holds what a customer needs to manage them — ``GET /v1/keys`` lists
id, hint, created and last used; ``DELETE /v1/keys/{id}`` revokes by id. A key's id is derived from its
digest (``key_`` + 24 hex digits of a hash of the digest), so it names the key without revealing anything
that helps to guess it, and a key created before this store existed has an id too.

Rows are ``<account token (16 bytes)><key id>`` -> msgpack ``[hint, created_at, last_used_at, revoked_at,
account id]`` in the ``api_key_rows`` db of the core environment: filed under the account's keyed token
(``storage.pseudonyms``), never its id — LMDB keeps deleted keys on freed pages —, and sealed under the
account's own data key like its account record (``storage.account_keys``):
when the account is erased or swept that key is destroyed, and every copy of its rows, on live or stale
pages, is unreadable. Revoked keys stay listed (with ``revoked_at``) until :meth:`ApiKeyStore.sweep`
removes them 90 days after revocation (the account-records rule of the retention table: key metadata is an
account setting); erasure deletes an account's rows at once (:meth:`ApiKeyStore.forget_account`), and the
sweep deletes rows whose account's data key is gone. Rows of the older layout (``api_keys``: keyed by
``<account id>/<key id>``) are moved to this one when the store is opened.

Durability contract:

* *Durable:* :meth:`add` and :meth:`revoke` commit and fsync (``env.sync(True)``) before they return.
* *Not guaranteed:* "last used" is kept to the minute and written in the background at most once a minute
  per key (never on the caller's thread); a crash may lose the last minute of it.
* *Writers:* the engine's account methods (add, revoke, forget), the usage writer thread, the sweeper.
  LMDB serialises them. *Readers:* any thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, KeyUnavailable
from storage.account_keys import DATA, AccountKeys
from storage.full import refusing_when_full
from storage.headroom import storing_new
from storage.retention import cutoff

log = logging.getLogger(__name__)

DB = b"api_key_rows"
_OLD_DB = b"api_keys"
_TOKEN = 16
USAGE_RESOLUTION_SECONDS = 60.0


def key_id(digest: bytes) -> str:
    """The public id of the key with this digest."""
    return "key_" + hashlib.sha256(b"smsroute api key id\x00" + digest).hexdigest()[:24]


class ApiKeyInfo(NamedTuple):
    id: str
    hint: str
    created_at: float | None  # None: the key predates this store
    last_used_at: float | None
    revoked_at: float | None


class ApiKeyStore:
    """Sealed metadata rows per (account, key); see the module docstring."""

    def __init__(self, env: lmdb.Environment, keys: AccountKeys) -> None:
        self.env = env
        self._keys = keys
        self._db = env.open_db(DB)
        self._lock = threading.Lock()
        self._written_usage: dict[bytes, float] = {}  # digest -> last used time already written
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="apikey-usage")
        self.migrated = self._migrate()

    # --- writes -------------------------------------------------------------------------------------

    def add(self, account_id: str, digest: bytes, hint: str, now: float | None = None) -> ApiKeyInfo:
        info = self.new_row(digest, hint, now)
        with self._lock, storing_new(self.env, "api_keys"), self.env.begin(write=True) as txn:
            self._put(txn, account_id, info)
        self.env.sync(True)
        return info

    @staticmethod
    def new_row(digest: bytes, hint: str, now: float | None = None) -> ApiKeyInfo:
        """The row of a key created now (not yet written)."""
        return ApiKeyInfo(key_id(digest), hint, time.time() if now is None else now, None, None)

    def add_in(self, txn: lmdb.Transaction, account_id: str, info: ApiKeyInfo) -> None:
        """Write a key's row in the caller's transaction (an account and its first key, together)."""
        self._put(txn, account_id, info)

    def revoke(self, account_id: str, info: ApiKeyInfo, now: float | None = None) -> ApiKeyInfo:
        """Mark ``info`` (a row, or a key that predates this store) revoked."""
        revoked = info._replace(revoked_at=time.time() if now is None else now)
        with self._lock, refusing_when_full("api_keys"), self.env.begin(write=True) as txn:
            self._put(txn, account_id, revoked)
        self.env.sync(True)
        return revoked

    def touch(self, account_id: str, digest: bytes, now: float | None = None) -> None:
        """Note that a key was used (cheap; written in the background at most once a minute)."""
        now = time.time() if now is None else now
        if now - self._written_usage.get(digest, 0.0) < USAGE_RESOLUTION_SECONDS:
            return
        if len(self._written_usage) > 100_000:  # bounded: forgetting only means an earlier write
            self._written_usage.clear()
        self._written_usage[digest] = now
        try:
            self._writer.submit(self._write_usage, account_id, key_id(digest), now)
        except RuntimeError:  # closed: the engine is stopping
            pass

    def _write_usage(self, account_id: str, kid: str, now: float) -> None:
        try:
            with self._lock, self.env.begin(write=True) as txn:
                info = self._get(txn, account_id, kid)
                if info is not None and info.revoked_at is None:
                    self._put(txn, account_id, info._replace(last_used_at=now))
        except KeyUnavailable:
            pass  # the account was erased meanwhile

    def forget_account(self, account_id: str) -> int:
        """Delete every row of the account (erasure); returns how many."""
        with self._lock, self.env.begin(write=True) as txn:
            prefix = self._keys.token(account_id)
            rows = [k for k, _ in txn.cursor(db=self._db).iternext() if k.startswith(prefix)]
            for key in rows:
                txn.delete(key, db=self._db)
        self.env.sync(True)
        return len(rows)

    def sweep(self, now: float) -> int:
        """Delete rows revoked longer ago than the account-records period, and rows of accounts whose
        data key is gone (erased, or swept after closure); returns how many."""
        due = cutoff("account_records", now)
        removed = 0
        with self._lock, self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=self._db)):
                try:
                    info = self._decode(bytes(key), blob)
                except KeyUnavailable:
                    info = None  # the account is gone: its rows are unreadable anyway
                if info is None or (info.revoked_at is not None and info.revoked_at < due):
                    txn.delete(key, db=self._db)
                    removed += 1
        if removed:
            self.env.sync(True)
        return removed

    def close(self) -> None:
        """Write what usage is queued, then stop the usage writer."""
        self._writer.shutdown(wait=True)

    # --- reads --------------------------------------------------------------------------------------

    def for_account(self, account_id: str) -> dict[str, ApiKeyInfo]:
        """Every row of the account by key id."""
        prefix = self._keys.token(account_id)
        out = {}
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            if cursor.set_range(prefix):
                for key, blob in cursor:
                    if not bytes(key).startswith(prefix):
                        break
                    info = self._decode(bytes(key), blob)
                    out[info.id] = info
        return out

    def revoked(self) -> list[tuple[str, str, float]]:
        """``(account id, key id, revoked at)`` of every revoked key still kept (rows of accounts whose
        data key is gone are skipped: they name no one any more)."""
        out, corrupt = [], 0
        with self.env.begin() as txn:
            for key, blob in txn.cursor(db=self._db):
                try:
                    info = self._decode(bytes(key), blob)
                except KeyUnavailable:
                    continue
                except CorruptRecord:
                    corrupt += 1
                    continue
                if info.revoked_at is not None:
                    out.append((self._account_of(bytes(key), blob), info.id, info.revoked_at))
        if corrupt:
            log.error("api keys: %d metadata rows do not decode; skipped", corrupt)
        return out

    # --- encoding -----------------------------------------------------------------------------------

    def _get(self, txn: lmdb.Transaction, account_id: str, kid: str) -> ApiKeyInfo | None:
        key = self._row(account_id, kid)
        blob = txn.get(key, db=self._db)
        return None if blob is None else self._decode(key, blob)

    def _put(self, txn: lmdb.Transaction, account_id: str, info: ApiKeyInfo) -> None:
        key = self._row(account_id, info.id)
        value = msgpack.packb([info.hint, info.created_at, info.last_used_at, info.revoked_at, account_id])
        txn.put(key, self._keys.sealer_for_token(key[:_TOKEN], DATA).seal(value, key), db=self._db)

    def _fields(self, key: bytes, blob: bytes) -> list:
        """The row's stored fields; ``KeyUnavailable`` when its account's data key is gone."""
        sealer = self._keys.sealer_for_token(key[:_TOKEN], DATA)
        try:
            return msgpack.unpackb(sealer.open(blob, key))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"API key row {key[_TOKEN:].decode(errors='replace')} does not decode") \
                from exc

    def _decode(self, key: bytes, blob: bytes) -> ApiKeyInfo:
        hint, created, used, revoked, _ = self._fields(key, blob)
        return ApiKeyInfo(key[_TOKEN:].decode(), hint, created, used, revoked)

    def _account_of(self, key: bytes, blob: bytes) -> str:
        return self._fields(key, blob)[4]

    def _row(self, account_id: str, kid: str) -> bytes:
        return self._keys.token(account_id) + kid.encode()

    def _migrate(self) -> int:
        """Move rows of the older layout (``<account id>/<key id>``, sealed with that key as AAD) to
        this one; rows whose account's data key is gone are dropped. Returns how many moved."""
        with self.env.begin() as txn:
            if txn.get(_OLD_DB) is None:  # no database of the older layout
                return 0
        old = self.env.open_db(_OLD_DB)
        moved = 0
        with self._lock, self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=old)):
                account_id, kid = bytes(key).decode().split("/", 1)
                try:
                    sealer = self._keys.sealer(account_id, DATA)
                    hint, created, used, revoked = msgpack.unpackb(sealer.open(bytes(blob), bytes(key)))
                except (KeyUnavailable, CorruptRecord):
                    continue
                self._put(txn, account_id, ApiKeyInfo(kid, hint, created, used, revoked))
                moved += 1
            txn.drop(old, delete=True)
        self.env.sync(True)
        return moved
