"""Message records: the delivery-receipt metadata of every message (policy 2.2), kept 90 days.

A record holds destination, sender ID, times, status and routing metadata — never the body (that lives in
``storage.bodies`` and is gone within 24 h). Records are encrypted at rest with the ``records`` store key.

Durability contract:

* *Durable:* ``put_many`` writes inside the caller's write transaction; the POP commits records and bodies
  together in one fsynced transaction before it acknowledges the customer.
* *Writers:* the POP actor that owns the environment (and the retention sweep, serialised by LMDB's writer
  lock). *Readers:* any thread.
* *Open index:* a message that is not final has an entry in ``open`` (value ``b"1"`` once its carrier
  acknowledged it). Recovery after a crash resumes exactly those messages.
* *Not guaranteed:* status updates that were not yet committed when the process died; the message is then
  resumed from its last committed state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord
from engine.ids import id_bytes, id_from_bytes, min_key_for_time
from engine.status import FINAL
from storage.crypto import Sealer

RETENTION_SECONDS = 90 * 86400


class MessageRecord(NamedTuple):
    message_id: str
    account_id: str
    to: str
    sender: str
    country: str
    pop: str
    carrier: str
    encoding: str
    segments: int
    price_micro_usd: int
    submitted_at: float
    updated_at: float
    status: str
    error: str
    validity_seconds: int
    callback_url: str | None
    attempts: int
    carrier_acked_at: float  # 0.0 until the carrier acknowledged every part
    carrier_ids: tuple[str, ...] = ()  # the carrier's message id per part: receipts match after restart

    def to_dict(self) -> dict:
        return self._asdict()


class MessageRecords:
    """Encrypted message records of one POP environment."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer) -> None:
        self.env = env
        self._sealer = sealer
        self._db = env.open_db(b"records")
        self._open = env.open_db(b"records_open")

    def put_many(self, txn: lmdb.Transaction, records: Iterable[MessageRecord]) -> None:
        """Insert or overwrite records inside ``txn`` and keep the open index in step."""
        seal = self._sealer.seal
        for rec in records:
            key = id_bytes(rec.message_id)
            txn.put(key, seal(msgpack.packb(tuple(rec)), key), db=self._db)
            if rec.status in FINAL:
                txn.delete(key, db=self._open)
            else:
                txn.put(key, b"1" if rec.carrier_acked_at else b"0", db=self._open)

    def get(self, message_id: str) -> MessageRecord | None:
        try:
            key = id_bytes(message_id)
        except ValueError:
            return None
        with self.env.begin() as txn:
            blob = txn.get(key, db=self._db)
        return None if blob is None else self._decode(key, blob)

    def open_records(self, on_corrupt: Callable[[str, Exception], None] | None = None
                     ) -> Iterator[MessageRecord]:
        """Every record that is not final (in id order), for recovery. A record that does not decode
        raises ``CorruptRecord``, or with ``on_corrupt`` is reported to it and skipped."""
        with self.env.begin() as txn:
            keys = [k for k, _ in txn.cursor(db=self._open)]
            blobs = [(k, txn.get(k, db=self._db)) for k in keys]
        for key, blob in blobs:
            if blob is None:
                continue
            try:
                yield self._decode(key, blob)
            except CorruptRecord as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(id_from_bytes(key), exc)

    def since(self, t: float) -> Iterator[MessageRecord]:
        """Every record created at or after ``t`` (a range scan over time-ordered keys)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            items = list(cursor.iternext()) if cursor.set_range(min_key_for_time(t)) else []
        for key, blob in items:
            yield self._decode(key, blob)

    def for_account(self, account_id: str) -> Iterator[MessageRecord]:
        """Every record of one account (a full scan: data-subject access and erasure only)."""
        with self.env.begin() as txn:
            items = list(txn.cursor(db=self._db))
        for key, blob in items:
            rec = self._decode(key, blob)
            if rec.account_id == account_id:
                yield rec

    def delete_many(self, message_ids: Iterable[str]) -> int:
        n = 0
        with self.env.begin(write=True) as txn:
            for mid in message_ids:
                key = id_bytes(mid)
                n += txn.delete(key, db=self._db)
                txn.delete(key, db=self._open)
        return n

    def sweep(self, now: float, retention_seconds: float = RETENTION_SECONDS) -> int:
        """Delete final records older than the retention period (ids are time-ordered: a prefix scan)."""
        cutoff = min_key_for_time(now - retention_seconds)
        deleted = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._db)
            if not cursor.first():
                return 0
            while (key := cursor.key()) and key < cutoff:  # b"" once the last record is deleted
                if txn.get(key, db=self._open) is not None:
                    if not cursor.next():  # still open: never swept from under its POP
                        break
                    continue
                if not cursor.delete():
                    break
                deleted += 1
        return deleted

    def count(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db)["entries"]

    def _decode(self, key: bytes, blob: bytes) -> MessageRecord:
        try:
            fields = msgpack.unpackb(self._sealer.open(blob, key), use_list=False)
            return MessageRecord(*fields)
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"message record {id_from_bytes(key)} does not decode") from exc
