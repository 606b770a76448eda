"""Account records: email, settings, API key digests, sender IDs, webhook settings (policy 2.1).

Nothing else about an account holder is collected (policy section 4: no KYC, no birth date, no address, no
phone number, no tax id) — the record type has no field for any of it. API keys are stored only as SHA-256
digests under a unique index.

No key names an account (erasure, policy 7.1): LMDB never wipes freed pages, so a deleted key stays in
``data.mdb``. Every database here is keyed by the account's keyed token (``storage.pseudonyms``, 16 bytes,
the name of its key file), never by its id: ``account_records`` token -> the record sealed under the
account's data key (the token as AAD; the id is inside), ``api_key_owners`` digest -> token,
``account_closed_at`` token -> closure time, ``account_shred_queue`` token -> "" (a deletion a crash
interrupted). Once the data key is shredded nothing here leads back to the id. An environment of the
older layout (keyed by the id) is moved to this one when the store is opened (:func:`_migrate`).

Durability contract: every method that writes commits and fsyncs (``env.sync(True)``: the core environment
does not sync on commit) before it returns. *Writers:* the engine's account
methods, serialised by a lock. *Readers:* any thread.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import lmdb
import msgpack

from engine.errors import CorruptRecord, KeyUnavailable, UnknownAccount
from storage.account_keys import DATA, PURPOSES, AccountKeys
from storage.full import refusing_when_full
from storage.headroom import storing_new
from storage.pseudonyms import ACCOUNT_TOKEN_BYTES, token_text

log = logging.getLogger(__name__)
_TIME = struct.Struct(">d")

ACTIVE, RESTRICTED, CLOSED = "active", "restricted", "closed"
RETENTION_AFTER_CLOSE_SECONDS = 90 * 86400


@dataclass(frozen=True)
class AccountRecord:
    id: str
    email: str
    created_at: float
    state: str = ACTIVE  # active | restricted | closed
    closed_at: float = 0.0
    key_digests: list[bytes] = field(default_factory=list)
    key_hints: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    webhook_url: str | None = None
    webhook_secrets: list[str] = field(default_factory=list)  # newest first; two during rotation
    webhook_secret_rotated_at: float = 0.0  # when the newest replaced the previous one
    receipt_statuses: list[str] | None = None  # None: every status change
    objections: list[str] = field(default_factory=list)  # processing the holder objected to, e.g. "analytics"
    email_confirmed_at: float = 0.0  # when the holder opened the confirmation link (0: not yet)
    webhook_batch_max: int = 1  # events per POST (1: one event per POST, the default)
    webhook_batch_wait_ms: int = 1000  # how long the first event of a batch may wait for others
    webhook_disabled_url: str | None = None  # the endpoint that answered 410 Gone (until a new PUT)
    webhook_disabled_at: float = 0.0

    def public_view(self) -> dict:
        """What the holder may see of their record (access / portability): no digests, no secrets."""
        data = asdict(self)
        data.pop("key_digests")
        data["webhook_secrets"] = [f"…{s[-4:]}" for s in self.webhook_secrets]
        return data


class AccountStore:
    """Account records in the core LMDB environment, each sealed under its own account's data key and
    filed under the account's keyed token (see the module docstring: no key holds an account id)."""

    def __init__(self, env: lmdb.Environment, keys: AccountKeys,
                 on_deleted: Callable[[bytes], None] | None = None) -> None:
        self.env = env
        self.keys = keys
        self.on_deleted = on_deleted  # told the token after a record and its key are gone (the ledger)
        self._db = env.open_db(b"account_records")
        self._keys = env.open_db(b"api_key_owners")
        self._closures = env.open_db(b"account_closed_at")
        self._pending = env.open_db(b"account_shred_queue")
        self._lock = threading.Lock()
        self.unreadable = 0  # records skipped by all(): their key is missing (a lost key directory)
        self.migrated = _migrate(env, self)

    def token(self, account_id: str) -> bytes:
        return self.keys.token(account_id)

    def create(self, record: AccountRecord,
               also: Callable[[lmdb.Transaction], None] | None = None) -> AccountRecord:
        """Store a new account; ``also(txn)`` writes what must exist with it (its first API key row) in
        the same transaction, so a full store (``StoreFull``) leaves neither, never half an account."""
        token = self.token(record.id)
        with self._lock:
            with self.env.begin() as txn:
                if txn.get(token, db=self._db) is not None:
                    raise ValueError(f"account {record.id} exists")
            self.keys.create(record.id)  # durable before anything is sealed under it
            with storing_new(self.env, "accounts"), self.env.begin(write=True) as txn:
                self._put(txn, record)
                for d in record.key_digests:
                    txn.put(d, token, db=self._keys)
                if also is not None:
                    also(txn)
        self.env.sync(True)
        return record

    def get(self, account_id: str) -> AccountRecord:
        _check_id(account_id)
        token = self.token(account_id)
        with self.env.begin() as txn:
            blob = txn.get(token, db=self._db)
        if blob is None:
            raise UnknownAccount(f"no account {account_id}")
        return self._decode(token, blob)

    def id_by_token(self, token: bytes) -> str | None:
        """The id of the account filed under ``token`` (its pseudonym's 16 bytes), None if there is
        no such account any more (erased, swept) or its record cannot be opened: how the core shows
        the account id of a worker's audit entry that names the account by the core's pseudonym only
        (``engine.core_names``)."""
        if len(token) != ACCOUNT_TOKEN_BYTES:
            return None
        with self.env.begin() as txn:
            blob = txn.get(token, db=self._db)
        if blob is None:
            return None
        try:
            return self._decode(token, blob).id
        except (KeyUnavailable, CorruptRecord):
            return None

    def update(self, account_id: str, change: Callable[[AccountRecord], AccountRecord]) -> AccountRecord:
        """Read-modify-write one record atomically; ``change`` returns the new record."""
        _check_id(account_id)
        token = self.token(account_id)
        with self._lock, refusing_when_full("accounts"), self.env.begin(write=True) as txn:
            blob = txn.get(token, db=self._db)
            if blob is None:
                raise UnknownAccount(f"no account {account_id}")
            old = self._decode(token, blob)
            new = change(old)
            for d in set(old.key_digests) - set(new.key_digests):
                txn.delete(d, db=self._keys)
            for d in set(new.key_digests) - set(old.key_digests):
                txn.put(d, token, db=self._keys)
            self._put(txn, new)
        self.env.sync(True)
        return new

    def set_fields(self, account_id: str, **fields) -> AccountRecord:
        return self.update(account_id, lambda r: replace(r, **fields))

    def delete(self, account_id: str, *, erasure: bool = False) -> bool:
        """Delete the record and shred the account's data key (so stale copies are unreadable too);
        whether there was a record. ``erasure``: its ledger key too, in the same shred - the account's
        key file is unlinked, which needs no space, where shredding one key of two rewrites it (on a full
        key disk ``StoreFull``). The shred is queued (``account_shred_queue``) in the commit that deletes
        the record - even without a record (a former account) - and retried by every sweep until done."""
        _check_id(account_id)
        return self._delete(self.token(account_id), _ERASURE if erasure else b"")

    def _delete(self, token: bytes, shred: bytes = b"") -> bool:
        with self._lock:
            with self.env.begin(write=True) as txn:
                blob = txn.get(token, db=self._db)
                if blob is None and shred != _ERASURE:
                    return False
                if blob is not None:
                    for d in self._digests(token, blob):
                        txn.delete(d, db=self._keys)
                    txn.delete(token, db=self._db)
                txn.delete(token, db=self._closures)
                txn.put(token, shred, db=self._pending)
            self.env.sync(True)
            self._finish_deletion(token, shred)
        return blob is not None

    def _digests(self, token: bytes, blob: bytes) -> list[bytes]:
        try:
            return self._decode(token, blob).key_digests
        except KeyUnavailable:  # no key: find its digests through the index instead
            with self.env.begin() as txn:
                return [bytes(k) for k, v in txn.cursor(db=self._keys) if v == token]

    def _finish_deletion(self, token: bytes, shred: bytes = b"") -> None:
        self.keys.shred_token(token, PURPOSES if shred == _ERASURE else (DATA,))
        with self.env.begin(write=True) as txn:
            txn.delete(token, db=self._pending)
        self.env.sync(True)
        if self.on_deleted is not None:
            self.on_deleted(token)

    def key_index(self) -> dict[bytes, str]:
        """Every API key digest -> account id (loaded once at start; kept in step by the engine). The
        index names each account by its token; the ids come from the records (one unseal per account)."""
        ids = {self.token(r.id): r.id for r in self.all()}
        with self.env.begin() as txn:
            return {bytes(k): ids[bytes(v)] for k, v in txn.cursor(db=self._keys) if bytes(v) in ids}

    def ids(self) -> list[str]:
        """Every readable account's id (each record is unsealed: no key names an account)."""
        return [r.id for r in self.all()]

    def all(self) -> Iterator[AccountRecord]:
        """Every readable record (one whose key is missing is counted in ``unreadable`` and logged)."""
        with self.env.begin() as txn:
            items = [(bytes(k), v) for k, v in txn.cursor(db=self._db)]
        for token, blob in items:
            try:
                yield self._decode(token, blob)
            except KeyUnavailable:
                self.unreadable += 1
                log.error("accounts: ALARM a record has no data key (key directory lost?)")

    def sweep(self, now: float | None = None) -> int:
        """Delete account records closed more than 90 days ago (policy 6) and shred their data keys;
        finish any deletion a crash interrupted. The ledger keeps its rows (``on_deleted``)."""
        now = time.time() if now is None else now
        with self.env.begin() as txn:
            pending = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self._pending)]
            due = [bytes(k) for k, v in txn.cursor(db=self._closures)
                   if now - _TIME.unpack(v)[0] > RETENTION_AFTER_CLOSE_SECONDS]
        with self._lock:
            for token, shred in pending:
                self._finish_deletion(token, shred)
        return sum(self._delete(t) for t in due)

    def _put(self, txn: lmdb.Transaction, record: AccountRecord) -> None:
        token = self.token(record.id)
        sealer = self.keys.sealer_for_token(token, DATA)
        txn.put(token, sealer.seal(msgpack.packb(asdict(record)), token), db=self._db)
        if record.state == CLOSED and record.closed_at:
            txn.put(token, _TIME.pack(record.closed_at), db=self._closures)
        else:
            txn.delete(token, db=self._closures)

    def _decode(self, token: bytes, blob: bytes, aad: bytes | None = None) -> AccountRecord:
        sealer = self.keys.sealer_for_token(token, DATA)  # KeyUnavailable if it is gone
        try:
            return AccountRecord(**msgpack.unpackb(sealer.open(blob, token if aad is None else aad)))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"account record {token_text(token)} does not decode") from exc


def _migrate(env: lmdb.Environment, store: AccountStore) -> int:
    """Move records of the older layout (keyed by the plaintext account id, the digest index and the
    closure and shred queues naming it) to the token layout, in one transaction; returns how many
    records moved. A record whose data key is gone is dropped (nothing could read it). The old
    databases are deleted; their freed pages keep the ids until LMDB reuses them (a compacting copy of
    the environment, ``lmdb.Environment.copy(path, compact=True)``, leaves them out)."""
    old = _open_old(env)
    if old is None:
        return 0
    moved = 0
    with store._lock, env.begin(write=True) as txn:
        records, digests, closures, pending = (old[name] for name in _OLD_DBS)
        for key, blob in list(txn.cursor(db=records)):
            token = store.token(bytes(key).decode())
            try:
                record = store._decode(token, bytes(blob), aad=bytes(key))
            except KeyUnavailable:
                log.error("accounts: an old-layout record has no data key; dropped at migration")
                continue
            store._put(txn, record)
            moved += 1
        for digest, account_id in list(txn.cursor(db=digests)):
            txn.put(bytes(digest), store.token(bytes(account_id).decode()), db=store._keys)
        for key, when in list(txn.cursor(db=closures)):
            txn.put(store.token(bytes(key).decode()), bytes(when), db=store._closures)
        for key in list(txn.cursor(db=pending).iternext(values=False)):
            txn.put(store.token(bytes(key).decode()), b"", db=store._pending)
        for db in old.values():
            txn.drop(db, delete=True)
    env.sync(True)
    log.info("accounts: %d records moved to the token layout", moved)
    return moved


_ERASURE = b"erasure"  # a queued shred's value: both keys of the account (else its data key alone)

_OLD_DBS = (b"accounts", b"api_key_digests", b"account_closures", b"account_shred_pending")


def _open_old(env: lmdb.Environment) -> dict[bytes, object] | None:
    """The older layout's databases, or None when there are none (a new or migrated environment)."""
    with env.begin() as txn:
        if txn.get(_OLD_DBS[0]) is None:  # a named database is a key of the main database
            return None
    return {name: env.open_db(name) for name in _OLD_DBS}


def _check_id(account_id: object) -> None:
    """An id that cannot be an account (empty, too long for an LMDB key, not text) is simply unknown."""
    if not isinstance(account_id, str) or not 0 < len(account_id) <= 64:
        raise UnknownAccount(f"no account {str(account_id)[:64]!r}")
