"""SealedRecords: the shared shape of the small privacy stores (dataclass records, sealed, by id).

Why it exists: data-subject requests, incidents and support cases are each a handful of sealed records
read and changed one at a time; this holds the one way to store them, so each store module keeps only its
own fields, transitions and retention.

Every value is the msgpack of a dataclass, sealed under the store's key with the record id as AAD. Writes
commit (fsync: the environment syncs on commit) before they return; read-modify-write is serialised by a
lock. Readers: any thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from typing import Generic, TypeVar

import lmdb
import msgpack

from engine.errors import CorruptRecord, UnknownAccount
from storage.crypto import Sealer
from storage.full import refusing_when_full
from storage.headroom import storing_new

R = TypeVar("R")


class SealedRecords(Generic[R]):
    """Sealed dataclass records by id. *Durable:* every write commits (fsync) before it returns.
    *Writers:* any thread; read-modify-write serialised by ``lock``. *Readers:* any thread."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, db: bytes, record_type: type[R],
                 label: str, *, encode: Callable[[R, bytes], dict] | None = None,
                 decode: Callable[[dict, bytes], R] | None = None, store: str = "privacy") -> None:
        """``encode``/``decode`` (record, db key) map a record to the stored dict and back, for a
        store that seals some fields under another key (``storage.dsar``); default: its fields.
        ``store``: the environment's name a full map is refused with (``StoreFull``, ``storage.full``)."""
        self.env = env
        self._sealer = sealer
        self._db = env.open_db(db)
        self._type = record_type
        self._label = label
        self._encode = encode or (lambda record, key: asdict(record))
        self._decode_doc = decode or (lambda doc, key: record_type(**doc))
        self.lock = threading.Lock()
        self._store = store

    def put(self, record: R) -> R:
        """Store a new or changed record; refused while the store is down to its reserve (``storage.headroom``)."""
        with self.lock, storing_new(self.env, self._store), self.env.begin(write=True) as txn:
            self._put(txn, record)
        return record

    def put_many(self, records: list[R], *, delete: Iterable[str] = ()) -> list[R]:
        """Store several records (and delete those with the ids ``delete``) in one transaction: all or
        none (records that belong together, e.g. the holds of one order, never left out of step by a
        failure between them)."""
        with self.lock, storing_new(self.env, self._store), self.env.begin(write=True) as txn:
            for record in records:
                self._put(txn, record)
            for record_id in delete:
                txn.delete(record_id.encode(), db=self._db)
        return records

    def get(self, record_id: str) -> R:
        with self.env.begin() as txn:
            blob = txn.get(record_id.encode(), db=self._db)
        if blob is None:
            raise UnknownAccount(f"no {self._label} {record_id}")
        return self._decode(record_id.encode(), blob)

    def all(self) -> Iterator[R]:
        with self.env.begin() as txn:
            items = [(bytes(k), v) for k, v in txn.cursor(db=self._db)]
        for key, blob in items:
            yield self._decode(key, blob)

    def update(self, record_id: str, change: Callable[[R], R]) -> R:
        key = record_id.encode()
        with self.lock, refusing_when_full(self._store), self.env.begin(write=True) as txn:
            blob = txn.get(key, db=self._db)
            if blob is None:
                raise UnknownAccount(f"no {self._label} {record_id}")
            new = change(self._decode(key, blob))
            self._put(txn, new)
        return new

    def delete_where(self, due: Callable[[R], bool]) -> int:
        removed = 0
        with self.lock, refusing_when_full(self._store), self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=self._db)):
                if due(self._decode(bytes(key), blob)):
                    txn.delete(key, db=self._db)
                    removed += 1
        return removed

    # --- inside a caller's transaction: for a store that keeps rows of its own beside each record ----

    def get_in(self, txn: lmdb.Transaction, record_id: str) -> R:
        blob = txn.get(record_id.encode(), db=self._db)
        if blob is None:
            raise UnknownAccount(f"no {self._label} {record_id}")
        return self._decode(record_id.encode(), blob)

    def ids_in(self, txn: lmdb.Transaction) -> list[str]:
        return [bytes(key).decode() for key in txn.cursor(db=self._db).iternext(values=False)]

    def put_in(self, txn: lmdb.Transaction, record: R) -> None:
        self._put(txn, record)

    def delete_in(self, txn: lmdb.Transaction, record_id: str) -> None:
        txn.delete(record_id.encode(), db=self._db)

    def _put(self, txn: lmdb.Transaction, record: R) -> None:
        key = record.id.encode()  # type: ignore[attr-defined]
        txn.put(key, self._sealer.seal(msgpack.packb(self._encode(record, key)), key), db=self._db)

    def _decode(self, key: bytes, blob: bytes) -> R:
        try:
            return self._decode_doc(msgpack.unpackb(self._sealer.open(blob, key)), key)
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"{self._label} {key.decode()} does not decode") from exc
