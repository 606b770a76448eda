"""The durable webhook outbox of one POP: status changes waiting to be POSTed to the customer.

Why it lives in the POP's environment: an event is written in the SAME transaction as the status change
it announces (the POP's group commit), so a crash can never keep the one without the other — after
``kill -9`` every committed status change whose webhook was not yet delivered is still here, and is
delivered after the restart. Delivery is at least once: an event delivered just before a crash, whose
removal was not committed yet, is sent again with the same event id (receivers deduplicate on it).

Layout: key = 8-byte big-endian sequence number (the POP's order of events, hence each message's events
in order); value = ``account token (16 bytes) | sealed event`` — sealed under the account's data key
(``storage.account_keys``) with the key as AAD, like the message record, so an erased account's pending
events are unreadable and dropped.

Retry schedule (``webhook_retry``, same key): ``attempt`` (u32, the sends already made) and ``next_at``
(f64, unix seconds: not sent again before) of an event whose delivery failed and waits for a retry. Two
numbers and no personal data, so not sealed; written only for an event still in the outbox, deleted with
it. After a restart the dispatcher resumes the backoff where it was (no burst of every pending event at
once at a receiver that was failing, and the attempt count goes on).

Durability contract:

* *Durable:* :meth:`add` and :meth:`remove` write inside the POP's fsynced group-commit transaction.
* *Writers:* the POP actor (and the retention sweep, serialised by LMDB's writer lock). *Readers:* any
  thread (:meth:`pending` at start-up of the webhook dispatcher).
* *Bounded:* the POP stores at most its share of ``[http] webhook_max_backlog``; beyond it an event is
  not stored (counted as dropped by the POP).
* *Retention:* an event older than the retry window (1 day) is swept (``webhook_events`` in
  ``storage.retention``), with its retry schedule, in transactions that fit the store's reserve
  (``storage.headroom``: the sweep runs on a store full for new messages), each durable on its own.
* *Not guaranteed:* order across messages, or across POPs.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator

import lmdb
import msgpack

from engine.errors import KeyUnavailable
from engine.messages import StatusItem
from storage.account_keys import DATA, AccountKeys
from storage.full import refusing_when_full
from storage.headroom import in_batches
from storage.packing import pack
from storage.pseudonyms import ACCOUNT_TOKEN_BYTES
from storage.records import MESSAGE_STORE
from storage.retention import cutoff

log = logging.getLogger(__name__)
_T = ACCOUNT_TOKEN_BYTES
_SEQ = struct.Struct(">Q")
_RETRY = struct.Struct(">Id")  # attempt, next_at


class WebhookOutbox:
    """Pending webhook events of one POP environment, in sequence order."""

    def __init__(self, env: lmdb.Environment, keys: AccountKeys) -> None:
        self.env = env
        self.keys = keys
        self._db = env.open_db(b"webhook_outbox")
        self._retry_db = env.open_db(b"webhook_retry")
        with env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            self._next = _SEQ.unpack(cursor.key())[0] + 1 if cursor.last() else 1
            self._count = txn.stat(self._db)["entries"]

    @property
    def count(self) -> int:
        """Events stored (as of the last commit through this object)."""
        return self._count

    def entries(self, txn: lmdb.Transaction) -> int:
        """Events stored as ``txn`` sees them, its own uncommitted writes included (a group commit writes
        several batches of one POP in one transaction: each is bounded by what the ones before added)."""
        return txn.stat(self._db)["entries"]

    def add(self, txn: lmdb.Transaction, events: Iterable[StatusItem]) -> list[int]:
        """Store ``events`` inside ``txn``; their sequence numbers, in order. An event whose account key
        is gone (erased) is skipped (sequence 0)."""
        seqs = []
        for event in events:
            token = self.keys.token(event.account_id)
            try:
                sealer = self.keys.sealer_for_token(token, DATA)
            except KeyUnavailable:
                seqs.append(0)
                continue
            seq = self._next
            self._next += 1
            key = _SEQ.pack(seq)
            txn.put(key, token + sealer.seal(pack(tuple(event)), key), db=self._db)
            seqs.append(seq)
        return seqs

    def remove(self, txn: lmdb.Transaction, seqs: Iterable[int]) -> int:
        """Delete delivered (or given-up) events, and their retry schedule, inside ``txn``; how many
        events were there."""
        removed = 0
        for seq in seqs:
            key = _SEQ.pack(seq)
            removed += txn.delete(key, db=self._db)
            txn.delete(key, db=self._retry_db)
        return removed

    def set_retry(self, txn: lmdb.Transaction, seqs: Iterable[int], attempt: int,
                  next_at: float) -> int:
        """Record inside ``txn`` that these events were sent ``attempt`` times and wait until
        ``next_at``; an event no longer stored is skipped. How many were recorded."""
        value = _RETRY.pack(min(max(0, attempt), 0xFFFFFFFF), next_at)
        recorded = 0
        for seq in seqs:
            key = _SEQ.pack(seq)
            if txn.get(key, db=self._db) is not None:
                txn.put(key, value, db=self._retry_db)
                recorded += 1
        return recorded

    def retries(self) -> dict[int, tuple[int, float]]:
        """The retry schedule of the stored events that have one: ``seq -> (attempt, next_at)``."""
        with self.env.begin() as txn:
            return {_SEQ.unpack(bytes(k))[0]: _RETRY.unpack(bytes(v))
                    for k, v in txn.cursor(db=self._retry_db)}

    def committed(self, added: int, removed: int) -> None:
        """The transaction that added and removed these many events is committed."""
        self._count += added - removed

    def pending(self) -> Iterator[tuple[int, StatusItem]]:
        """Every stored event, oldest first (events of erased accounts are left out)."""
        with self.env.begin() as txn:
            items = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self._db)]
        for key, blob in items:
            try:
                sealer = self.keys.sealer_for_token(blob[:_T], DATA)
                yield _SEQ.unpack(key)[0], StatusItem(*msgpack.unpackb(sealer.open(blob[_T:], key)))
            except KeyUnavailable:
                continue
            except Exception:  # one undecodable event must not stop the others
                log.error("webhook outbox: event %d does not decode; skipped", _SEQ.unpack(key)[0])

    def sweep(self, now: float) -> int:
        """Delete events older than the retry window (their delivery was given up); how many. In
        transactions that fit the store's reserve (``storage.headroom``: it runs on a full store too)."""
        limit = cutoff("webhook_events", now)
        with self.env.begin() as txn:
            stale = [key for key, blob in ((bytes(k), bytes(v)) for k, v in txn.cursor(db=self._db))
                     if (at := self._time_of(key, blob)) is None or at < limit]
        removed = 0
        for batch in in_batches(self.env, stale, pages_per_item=2):  # the event and its retry schedule
            with refusing_when_full(MESSAGE_STORE), self.env.begin(write=True) as txn:
                for key in batch:
                    removed += txn.delete(key, db=self._db)
                    txn.delete(key, db=self._retry_db)
        self._count = max(0, self._count - removed)
        return removed

    def _time_of(self, key: bytes, blob: bytes) -> float | None:
        try:
            sealer = self.keys.sealer_for_token(blob[:_T], DATA)
            return float(msgpack.unpackb(sealer.open(blob[_T:], key))[3])  # StatusItem.at
        except Exception:  # erased account or undecodable: nothing can ever deliver it
            return None
