"""Account records: email, settings, API key digests, sender IDs, webhook settings (policy 2.1).

Nothing else about an account holder is collected (policy section 4: no KYC, no birth date, no address, no
phone number, no tax id) — the record type has no field for any of it. Records are encrypted at rest with the
``accounts`` store key; API keys are stored only as SHA-256 digests under a unique index.

Durability contract: every method that writes commits and fsyncs (``env.sync(True)``: the core environment
does not sync on commit) before it returns. *Writers:* the engine's account
methods, serialised by a lock. *Readers:* any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import lmdb
import msgpack

from engine.errors import CorruptRecord, UnknownAccount
from storage.crypto import Sealer

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
    receipt_statuses: list[str] | None = None  # None: every status change
    objections: list[str] = field(default_factory=list)  # processing the holder objected to, e.g. "analytics"
    email_confirmed_at: float = 0.0  # when the holder opened the confirmation link (0: not yet)

    def public_view(self) -> dict:
        """What the holder may see of their record (access / portability): no digests, no secrets."""
        data = asdict(self)
        data.pop("key_digests")
        data["webhook_secrets"] = [f"…{s[-4:]}" for s in self.webhook_secrets]
        return data


class AccountStore:
    """Encrypted account records in the core LMDB environment."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer) -> None:
        self.env = env
        self._sealer = sealer
        self._db = env.open_db(b"accounts")
        self._keys = env.open_db(b"api_key_digests")
        self._lock = threading.Lock()

    def create(self, record: AccountRecord) -> AccountRecord:
        with self._lock, self.env.begin(write=True) as txn:
            if txn.get(record.id.encode(), db=self._db) is not None:
                raise ValueError(f"account {record.id} exists")
            self._put(txn, record)
            for d in record.key_digests:
                txn.put(d, record.id.encode(), db=self._keys)
        self.env.sync(True)
        return record

    def get(self, account_id: str) -> AccountRecord:
        with self.env.begin() as txn:
            blob = txn.get(account_id.encode(), db=self._db)
        if blob is None:
            raise UnknownAccount(f"no account {account_id}")
        return self._decode(account_id, blob)

    def update(self, account_id: str, change: Callable[[AccountRecord], AccountRecord]) -> AccountRecord:
        """Read-modify-write one record atomically; ``change`` returns the new record."""
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
        with self._lock, self.env.begin(write=True) as txn:
            blob = txn.get(account_id.encode(), db=self._db)
            if blob is None:
                return False
            for d in self._decode(account_id, blob).key_digests:
                txn.delete(d, db=self._keys)
            deleted = txn.delete(account_id.encode(), db=self._db)
        self.env.sync(True)
        return deleted

    def key_index(self) -> dict[bytes, str]:
        """Every API key digest -> account id (loaded once at start; kept in step by the engine)."""
        with self.env.begin() as txn:
            return {bytes(k): v.decode() for k, v in txn.cursor(db=self._keys)}

    def all(self) -> Iterator[AccountRecord]:
        with self.env.begin() as txn:
            items = [(k.decode(), v) for k, v in txn.cursor(db=self._db)]
        for account_id, blob in items:
            yield self._decode(account_id, blob)

    def sweep(self, now: float | None = None) -> int:
        """Delete account records closed more than 90 days ago (policy 6); the ledger keeps its rows."""
        now = time.time() if now is None else now
        due = [a.id for a in self.all()
               if a.state == CLOSED and a.closed_at and now - a.closed_at > RETENTION_AFTER_CLOSE_SECONDS]
        return sum(self.delete(a) for a in due)

    def _put(self, txn: lmdb.Transaction, record: AccountRecord) -> None:
        key = record.id.encode()
        txn.put(key, self._sealer.seal(msgpack.packb(asdict(record)), key), db=self._db)

    def _decode(self, account_id: str, blob: bytes) -> AccountRecord:
        try:
            return AccountRecord(**msgpack.unpackb(self._sealer.open(blob, account_id.encode())))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"account record {account_id} does not decode") from exc
