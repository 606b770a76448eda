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

Durability contract:

* *Durable:* :meth:`add` and :meth:`remove` write inside the POP's fsynced group-commit transaction.
* *Writers:* the POP actor (and the retention sweep, serialised by LMDB's writer lock). *Readers:* any
  thread (:meth:`pending` at start-up of the webhook dispatcher).
* *Bounded:* the POP stores at most its share of ``[http] webhook_max_backlog``; beyond it an event is
  not stored (counted as dropped by the POP).
* *Retention:* an event older than the retry window (1 day) is swept (``webhook_events`` in
  ``storage.retention``).
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
from storage.pseudonyms import ACCOUNT_TOKEN_BYTES
from storage.retention import cutoff

log = logging.getLogger(__name__)
_T = ACCOUNT_TOKEN_BYTES
_SEQ = struct.Struct(">Q")


class WebhookOutbox:
    """Pending webhook events of one POP environment, in sequence order."""

    def __init__(self, env: lmdb.Environment, keys: AccountKeys) -> None:
        self.env = env
        self.keys = keys
        self._db = env.open_db(b"webhook_outbox")
        with env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            self._next = _SEQ.unpack(cursor.key())[0] + 1 if cursor.last() else 1
            self._count = txn.stat(self._db)["entries"]

    @property
    def count(self) -> int:
        """Events stored (as of the last commit through this object)."""
        return self._count

    def add(self, txn: lmdb.Transaction, events: Iterable[StatusItem]) -> list[int]:
        """Store ``events`` inside ``txn``; their sequence numbers, in order. An event whose account key
        is gone (erased) is skipped (sequence 0)."""
        seqs = []
        packb = msgpack.packb
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
            txn.put(key, token + sealer.seal(packb(tuple(event)), key), db=self._db)
            seqs.append(seq)
        return seqs

    def remove(self, txn: lmdb.Transaction, seqs: Iterable[int]) -> int:
        """Delete delivered (or given-up) events inside ``txn``; how many were there."""
        return sum(1 for seq in seqs if txn.delete(_SEQ.pack(seq), db=self._db))

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
        """Delete events older than the retry window (their delivery was given up); how many."""
        limit = cutoff("webhook_events", now)
        removed = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._db)
            stale = []
            for key, blob in cursor:
                at = self._time_of(bytes(key), bytes(blob))
                if at is None or at < limit:
                    stale.append(bytes(key))
            for key in stale:
                removed += txn.delete(key, db=self._db)
        self._count = max(0, self._count - removed)
        return removed

    def _time_of(self, key: bytes, blob: bytes) -> float | None:
        try:
            sealer = self.keys.sealer_for_token(blob[:_T], DATA)
            return float(msgpack.unpackb(sealer.open(blob[_T:], key))[3])  # StatusItem.at
        except Exception:  # erased account or undecodable: nothing can ever deliver it
            return None
