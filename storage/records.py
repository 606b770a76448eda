"""Message records: the delivery-receipt metadata of every message (policy 2.2), kept 90 days.

A record holds destination, sender ID, times, status and routing metadata — never the body (that lives in
``storage.bodies`` and is gone within 24 h). Each record is sealed under its account's data key
(``storage.account_keys``), so erasing the account (destroying that key) makes every copy of its records
unreadable, stale LMDB pages included. The stored value is ``account token (16 bytes) | sealed record``: the
keyed token (``storage.pseudonyms``), never the account id, tells a reader which key opens it.

Durability contract:

* *Durable:* ``put_many`` writes inside the caller's write transaction; the POP commits records and bodies
  together in one fsynced transaction before it acknowledges the customer.
* *Writers:* the POP actor that owns the environment (and the retention sweep, serialised by LMDB's writer
  lock). *Readers:* any thread.
* *Open index:* a message that is not final has an entry in ``open`` (value ``b"1"`` once its carrier
  acknowledged it). Recovery after a crash resumes exactly those messages.
* *Account index:* ``by_account`` holds ``account token | message key`` for every record (no value,
  nothing readable: the token is keyed), written in the same transaction as the record and deleted with
  it, so an account's messages are listed newest first without reading anyone else's
  (:meth:`MessageRecords.page`). A store from before the index is indexed once when it is opened.
* *Erasure and sweep* (:meth:`delete_many`, :meth:`sweep`) run on a store full for new messages: they
  delete in transactions that fit its reserve (``storage.headroom``), each durable on its own; one
  interrupted midway leaves some of its records, which the next run (the erasure asked again, the next
  sweep) deletes.
* *Not guaranteed:* status updates that were not yet committed when the process died; the message is then
  resumed from its last committed state.
* *Erased accounts:* a record whose account key is gone is treated as absent by every reader, and a write
  for such an account is skipped (``put_many`` returns how many): only an erasure removes a key, and it first
  ends the account's messages at every POP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, KeyUnavailable
from engine.ids import id_bytes, id_from_bytes, min_key_for_time
from engine.status import FINAL
from storage.account_keys import DATA, AccountKeys
from storage.crypto import Sealer
from storage.full import refusing_when_full
from storage.headroom import batch_size, in_batches
from storage.packing import pack
from storage.pseudonyms import ACCOUNT_TOKEN_BYTES

_T = ACCOUNT_TOKEN_BYTES

RETENTION_SECONDS = 90 * 86400
MESSAGE_STORE = "message"  # the name a full POP store is refused and counted with (``storage.full``)
_PAGES_PER_RECORD = 3  # a record's delete changes the records, open and by-account trees


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
    refunded_micro_usd: int = 0  # the price credited back: no carrier ever acknowledged the message
    client_ref: str | None = None  # the customer's own reference (sealed with the rest of the record)

    def to_dict(self) -> dict:
        return self._asdict()

    def as_tuple(self) -> tuple:
        """The stored form (as :meth:`LiveRecord.as_tuple`)."""
        return tuple(self)


class LiveRecord:
    """The working copy of a :class:`MessageRecord` that a POP changes in place while the message is in
    flight (its attempts, carrier, acknowledgement, status), instead of building a new named tuple for
    every change (``_replace`` cost ~1.5 µs a time, several times per message). It is written with the
    same fields in the same order, so a stored record reads back as a ``MessageRecord``.
    """

    __slots__ = MessageRecord._fields

    def __init__(self, message_id, account_id, to, sender, country, pop, carrier, encoding, segments, price_micro_usd, submitted_at, updated_at, status, error, validity_seconds, callback_url, attempts, carrier_acked_at, carrier_ids=(), refunded_micro_usd=0, client_ref=None) -> None:  # noqa: PLR0913 - one argument per stored field
        self.message_id = message_id
        self.account_id = account_id
        self.to = to
        self.sender = sender
        self.country = country
        self.pop = pop
        self.carrier = carrier
        self.encoding = encoding
        self.segments = segments
        self.price_micro_usd = price_micro_usd
        self.submitted_at = submitted_at
        self.updated_at = updated_at
        self.status = status
        self.error = error
        self.validity_seconds = validity_seconds
        self.callback_url = callback_url
        self.attempts = attempts
        self.carrier_acked_at = carrier_acked_at
        self.carrier_ids = carrier_ids
        self.refunded_micro_usd = refunded_micro_usd
        self.client_ref = client_ref

    @classmethod
    def of(cls, record: MessageRecord) -> LiveRecord:
        return cls(*record)

    def as_tuple(self) -> tuple:
        """The stored form: the fields in :class:`MessageRecord` order."""
        return (self.message_id, self.account_id, self.to, self.sender, self.country, self.pop, self.carrier, self.encoding, self.segments, self.price_micro_usd, self.submitted_at, self.updated_at, self.status, self.error, self.validity_seconds, self.callback_url, self.attempts, self.carrier_acked_at, self.carrier_ids, self.refunded_micro_usd, self.client_ref)

    def frozen(self) -> MessageRecord:
        return MessageRecord(*self.as_tuple())


class MessageRecords:
    """Message records of one POP environment, each sealed under its account's data key."""

    def __init__(self, env: lmdb.Environment, keys: AccountKeys) -> None:
        self.env = env
        self.keys = keys
        self._db = env.open_db(b"records")
        self._open = env.open_db(b"records_open")
        self._by_account = env.open_db(b"records_by_account")
        self._index_existing()

    def put_many(self, txn: lmdb.Transaction, records: Iterable[MessageRecord | LiveRecord], *,
                 stored_before: bool = False) -> int:
        """Insert or overwrite records inside ``txn`` and keep the open index in step; returns how many
        were skipped because their account was erased (the caller counts them once its transaction
        commits). ``stored_before``: every record is an update of one written earlier, so its
        by-account index row is there already (not written again: one B-tree write fewer per status
        change)."""
        skipped = 0
        batch_keys: dict[str, tuple[bytes, Sealer | None]] = {}  # one key-cache lookup per account
        rows, open_rows, closed, index_rows = [], [], [], []
        for rec in records:
            key = id_bytes(rec.message_id)
            found = batch_keys.get(rec.account_id)
            if found is None:
                found = batch_keys[rec.account_id] = self._account_key(rec.account_id)
            token, sealer = found
            if sealer is None:
                skipped += 1  # the account was erased: nothing of it may be written again
                continue
            rows.append((key, token + sealer.seal(pack(rec.as_tuple()), key)))
            if not stored_before:
                index_rows.append((token + key, b""))
            if rec.status in FINAL:
                closed.append(key)
            else:
                open_rows.append((key, b"1" if rec.carrier_acked_at else b"0"))
        if rows:  # one C call per table instead of a put each
            txn.cursor(db=self._db).putmulti(rows)
        if open_rows:
            txn.cursor(db=self._open).putmulti(open_rows)
        if index_rows:
            txn.cursor(db=self._by_account).putmulti(index_rows)
        delete = txn.delete
        for key in closed:
            delete(key, db=self._open)
        return skipped

    def _account_key(self, account_id: str) -> tuple[bytes, Sealer | None]:
        token = self.keys.token(account_id)
        try:
            return token, self.keys.sealer_for_token(token, DATA)
        except KeyUnavailable:
            return token, None

    def get(self, message_id: str) -> MessageRecord | None:
        try:
            key = id_bytes(message_id)
        except ValueError:
            return None
        with self.env.begin() as txn:
            blob = txn.get(key, db=self._db)
        return None if blob is None else self._decode_or_none(key, blob)

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
                rec = self._decode_or_none(key, blob)
            except CorruptRecord as exc:
                if on_corrupt is None:
                    raise
                on_corrupt(id_from_bytes(key), exc)
                continue
            if rec is not None:
                yield rec

    def since(self, t: float) -> Iterator[MessageRecord]:
        """Every record created at or after ``t`` (a range scan over time-ordered keys)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            items = list(cursor.iternext()) if cursor.set_range(min_key_for_time(t)) else []
        for key, blob in items:
            rec = self._decode_or_none(key, blob)
            if rec is not None:
                yield rec

    def scan(self, chunk: int = 1000) -> Iterator[MessageRecord]:
        """Every record in id (= time) order, read ``chunk`` at a time in short read transactions
        (reconciliation walks the whole store without holding its pages or its records in memory)."""
        start: bytes | None = b""
        while start is not None:
            records, start = self.chunk_from(start, chunk)
            yield from records

    def chunk_from(self, start: bytes, limit: int) -> tuple[list[MessageRecord], bytes | None]:
        """Up to ``limit`` stored records from key ``start`` on (fewer where an erased account's records
        no longer open), and where the next page starts (None: the end)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            items = []
            if cursor.set_range(start):
                for item in cursor:
                    items.append((bytes(item[0]), bytes(item[1])))
                    if len(items) == limit:
                        break
        records = [r for key, blob in items if (r := self._decode_or_none(key, blob)) is not None]
        return records, (items[-1][0] + b"\x00" if len(items) == limit else None)

    def for_account(self, account_id: str) -> Iterator[MessageRecord]:
        """Every record of one account (a scan of the keys' token prefixes: data-subject access and
        erasure only; only the account's own records are decrypted)."""
        token = self.keys.token(account_id)
        with self.env.begin() as txn:
            items = [(k, v) for k, v in txn.cursor(db=self._db) if v[:_T] == token]
        for key, blob in items:
            rec = self._decode_or_none(key, blob)
            if rec is not None and rec.account_id == account_id:
                yield rec

    def ids_for_account(self, account_id: str) -> list[str]:
        """The ids of one account's records, without decrypting any (erasure)."""
        token = self.keys.token(account_id)
        with self.env.begin() as txn:
            return [id_from_bytes(k) for k, v in txn.cursor(db=self._db) if v[:_T] == token]

    def delete_many(self, message_ids: Iterable[str]) -> int:
        """Delete these records (erasure); how many were there. Runs on a store full for new messages:
        in transactions that fit its reserve (``storage.headroom``), each durable on its own."""
        keys = [id_bytes(mid) for mid in message_ids]
        n = 0
        for batch in in_batches(self.env, keys, _PAGES_PER_RECORD):
            with refusing_when_full(MESSAGE_STORE), self.env.begin(write=True) as txn:
                n += sum(self._delete(txn, key) for key in batch)
        return n

    def _delete(self, txn: lmdb.Transaction, key: bytes) -> int:
        blob = txn.get(key, db=self._db)
        if blob is None:
            return 0
        txn.delete(bytes(blob[:_T]) + key, db=self._by_account)
        txn.delete(key, db=self._open)
        return int(txn.delete(key, db=self._db))

    def page(self, account_id: str, *, before: bytes | None, after: bytes, limit: int,
             statuses: frozenset[str] | None, max_scan: int
             ) -> tuple[list[MessageRecord], bytes | None]:
        """Up to ``limit`` of the account's records with ``after <= key < before``, newest first, and
        where to resume: None when the range is exhausted, else the key of the last record examined
        (every newer one was). At most ``max_scan`` records are read, so a status filter on a long
        history costs a bounded amount per page."""
        token = self.keys.token(account_id)
        high = token + (before if before is not None else b"\xff" * 16)
        out: list[MessageRecord] = []
        last: bytes | None = None
        scanned = 0
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._by_account)
            found = cursor.set_range(high)
            found = cursor.prev() if found else cursor.last()
            while found:
                index_key = cursor.key()
                if index_key[:_T] != token or index_key[_T:] < after:
                    return out, None
                if len(out) >= limit or scanned >= max_scan:
                    return out, last
                scanned += 1
                last = key = bytes(index_key[_T:])
                blob = txn.get(key, db=self._db)
                rec = None if blob is None else self._decode_or_none(key, blob)
                if rec is not None and rec.account_id == account_id and (
                        statuses is None or rec.status in statuses):
                    out.append(rec)
                found = cursor.prev()
        return out, None

    def _index_existing(self) -> None:
        """Index the records of a store written before the account index: records but no index entry
        (checked in a read transaction first, so a start on a full disk writes nothing)."""
        with self.env.begin() as txn:
            indexed = txn.stat(self._by_account)["entries"]
            if indexed or not txn.stat(self._db)["entries"]:
                return
        with self.env.begin(write=True) as txn:
            txn.cursor(db=self._by_account).putmulti(
                (bytes(blob[:_T]) + bytes(key), b"") for key, blob in txn.cursor(db=self._db))

    def sweep(self, now: float, retention_seconds: float = RETENTION_SECONDS) -> int:
        """Delete final records older than the retention period (ids are time-ordered: a prefix scan), in
        transactions that fit the store's reserve (``storage.headroom``: it runs on a full store too)."""
        cutoff = min_key_for_time(now - retention_seconds)
        size = batch_size(self.env, _PAGES_PER_RECORD)
        deleted, start = 0, b""
        while start is not None:
            with refusing_when_full(MESSAGE_STORE), self.env.begin(write=True) as txn:
                n, start = self._sweep_batch(txn, start, cutoff, size)
            deleted += n
        return deleted

    def _sweep_batch(self, txn: lmdb.Transaction, start: bytes, cutoff: bytes, size: int
                     ) -> tuple[int, bytes | None]:
        """Up to ``size`` swept from ``start`` on; how many, and where the next batch starts (None: done)."""
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(start):
            return 0, None
        deleted = 0
        while (key := cursor.key()) and key < cutoff:  # b"" once the last record is deleted
            if deleted == size:
                return deleted, bytes(key)
            if txn.get(key, db=self._open) is not None:
                if not cursor.next():  # still open: never swept from under its POP
                    break
                continue
            txn.delete(bytes(cursor.value()[:_T]) + key, db=self._by_account)
            if not cursor.delete():
                break
            deleted += 1
        return deleted, None

    def count(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db)["entries"]

    def _decode_or_none(self, key: bytes, value: bytes) -> MessageRecord | None:
        """The record, or None if its account's key is gone (erased: the record no longer exists)."""
        if len(value) < _T:
            raise CorruptRecord(f"message record {id_from_bytes(key)} is truncated")
        try:
            sealer = self.keys.sealer_for_token(bytes(value[:_T]), DATA)
        except KeyUnavailable:
            return None
        try:
            fields = msgpack.unpackb(sealer.open(bytes(value[_T:]), key), use_list=False)
            return MessageRecord(*fields)
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"message record {id_from_bytes(key)} does not decode") from exc
