"""Account records: email, settings, API key digests, sender IDs, webhook settings (policy 2.1).

Nothing else about an account holder is collected (policy section 4: no KYC, no birth date, no address, no
phone number, no tax id) — the record type has no field for any of it. Records are encrypted at rest with the
``accounts`` store key; API keys are stored only as SHA-256 digests under a unique index.

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
from storage.account_keys import DATA, AccountKeys

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
    """Account records in the core LMDB environment, each sealed under its own account's data key."""

    def __init__(self, env: lmdb.Environment, keys: AccountKeys,
                 on_deleted: Callable[[str], None] | None = None) -> None:
        self.env = env
        self.keys = keys
        self.on_deleted = on_deleted  # told after a record and its key are gone (the ledger's rule)
        self._db = env.open_db(b"accounts")
        self._keys = env.open_db(b"api_key_digests")
        self._closures = env.open_db(b"account_closures")
        self._pending = env.open_db(b"account_shred_pending")
        self._lock = threading.Lock()
        self.unreadable = 0  # records skipped by all(): their key is missing (a lost key directory)

    def create(self, record: AccountRecord) -> AccountRecord:
        with self._lock:
            with self.env.begin() as txn:
                if txn.get(record.id.encode(), db=self._db) is not None:
                    raise ValueError(f"account {record.id} exists")
            self.keys.create(record.id)  # durable before anything is sealed under it
            with self.env.begin(write=True) as txn:
                self._put(txn, record)
                for d in record.key_digests:
                    txn.put(d, record.id.encode(), db=self._keys)
        self.env.sync(True)
        return record

    def get(self, account_id: str) -> AccountRecord:
        _check_id(account_id)
        with self.env.begin() as txn:
            blob = txn.get(account_id.encode(), db=self._db)
        if blob is None:
            raise UnknownAccount(f"no account {account_id}")
        return self._decode(account_id, blob)

    def update(self, account_id: str, change: Callable[[AccountRecord], AccountRecord]) -> AccountRecord:
        """Read-modify-write one record atomically; ``change`` returns the new record."""
        _check_id(account_id)
        with self._lock, self.env.begin(write=True) as txn:
            blob = txn.get(account_id.encode(), db=self._db)
            if blob is None:
                raise UnknownAccount(f"no account {account_id}")
            old = self._decode(account_id, blob)
            new = change(old)
            for d in set(old.key_digests) - set(new.key_digests):
                txn.delete(d, db=self._keys)
            for d in set(new.key_digests) - set(old.key_digests):
                txn.put(d, account_id.encode(), db=self._keys)
            self._put(txn, new)
        self.env.sync(True)
        return new

    def set_fields(self, account_id: str, **fields) -> AccountRecord:
        return self.update(account_id, lambda r: replace(r, **fields))

    def delete(self, account_id: str) -> bool:
        """Delete the record and shred the account's data key (so stale copies are unreadable too)."""
        _check_id(account_id)
        key = account_id.encode()
        with self._lock:
            with self.env.begin(write=True) as txn:
                blob = txn.get(key, db=self._db)
                if blob is None:
                    return False
                for d in self._digests(account_id, blob):
                    txn.delete(d, db=self._keys)
                txn.delete(key, db=self._db)
                txn.delete(key, db=self._closures)
                txn.put(key, b"", db=self._pending)
            self.env.sync(True)
            self._finish_deletion(account_id)
        return True

    def _digests(self, account_id: str, blob: bytes) -> list[bytes]:
        try:
            return self._decode(account_id, blob).key_digests
        except KeyUnavailable:  # no key: find its digests through the index instead
            with self.env.begin() as txn:
                return [bytes(k) for k, v in txn.cursor(db=self._keys) if v == account_id.encode()]

    def _finish_deletion(self, account_id: str) -> None:
        self.keys.shred(account_id, (DATA,))
        with self.env.begin(write=True) as txn:
            txn.delete(account_id.encode(), db=self._pending)
        self.env.sync(True)
        if self.on_deleted is not None:
            self.on_deleted(account_id)

    def key_index(self) -> dict[bytes, str]:
        """Every API key digest -> account id (loaded once at start; kept in step by the engine)."""
        with self.env.begin() as txn:
            return {bytes(k): v.decode() for k, v in txn.cursor(db=self._keys)}

    def ids(self) -> list[str]:
        """Every account id (no record is decrypted)."""
        with self.env.begin() as txn:
            return [k.decode() for k in txn.cursor(db=self._db).iternext(values=False)]

    def all(self) -> Iterator[AccountRecord]:
        """Every readable record (one whose key is missing is counted in ``unreadable`` and logged)."""
        with self.env.begin() as txn:
            items = [(k.decode(), v) for k, v in txn.cursor(db=self._db)]
        for account_id, blob in items:
            try:
                yield self._decode(account_id, blob)
            except KeyUnavailable:
                self.unreadable += 1
                log.error("accounts: ALARM a record has no data key (key directory lost?)")

    def sweep(self, now: float | None = None) -> int:
        """Delete account records closed more than 90 days ago (policy 6) and shred their data keys;
        finish any deletion a crash interrupted. The ledger keeps its rows (``on_deleted``)."""
        now = time.time() if now is None else now
        with self.env.begin() as txn:
            pending = [k.decode() for k in txn.cursor(db=self._pending).iternext(values=False)]
            due = [k.decode() for k, v in txn.cursor(db=self._closures)
                   if now - _TIME.unpack(v)[0] > RETENTION_AFTER_CLOSE_SECONDS]
        with self._lock:
            for account_id in pending:
                self._finish_deletion(account_id)
        return sum(self.delete(a) for a in due)

    def _put(self, txn: lmdb.Transaction, record: AccountRecord) -> None:
        key = record.id.encode()
        sealer = self.keys.sealer(record.id, DATA)
        txn.put(key, sealer.seal(msgpack.packb(asdict(record)), key), db=self._db)
        if record.state == CLOSED and record.closed_at:
            txn.put(key, _TIME.pack(record.closed_at), db=self._closures)
        else:
            txn.delete(key, db=self._closures)

    def _decode(self, account_id: str, blob: bytes) -> AccountRecord:
        sealer = self.keys.sealer(account_id, DATA)  # KeyUnavailable if it is gone
        try:
            return AccountRecord(**msgpack.unpackb(sealer.open(blob, account_id.encode())))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"account record {account_id} does not decode") from exc


def _check_id(account_id: object) -> None:
    """An id that cannot be an account (empty, too long for an LMDB key, not text) is simply unknown."""
    if not isinstance(account_id, str) or not 0 < len(account_id) <= 64:
        raise UnknownAccount(f"no account {str(account_id)[:64]!r}")
