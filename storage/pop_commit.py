"""A POP's group commit: everything it must write, collected between two commits, written in one go.

Between two ``Flush`` messages a POP collects new messages (record + encrypted body), record updates (the
latest per message), body discards and refund bookkeeping; :meth:`PopCommit.write` writes all of it in ONE
transaction of the POP's LMDB environment. One fsync covers every message of the batch.

Durability contract:

* *Durable:* ``write`` returns only after the transaction is committed and fsynced (the POP environments
  are opened with ``sync=True``); the POP acknowledges customers, sends debits and refunds and emits status
  events only after that.
* *Atomic:* a message's final record and the refund it is owed (``storage.refunds``) are in the same
  transaction, so a crash can never keep one without the other; likewise a new message and its owed debit
  (``storage.owed_debits``), and a status change and its webhook event (``storage.webhook_outbox``).
* *On failure* (``StorageError`` / ``StoreFull``) nothing of the batch is written; updates, discards and
  refund bookkeeping stay pending for the next ``write``; the new messages are the caller's to refuse.
* *Writers:* the POP actor only. *Readers:* any thread (the stores' own read transactions).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import lmdb

from engine.errors import StorageError, StoreFull
from engine.messages import RefundItem
from storage.records import LiveRecord, MessageRecord


class PopCommit:
    def __init__(self, store, body_ttl_seconds: float, expiry_grace_seconds: float) -> None:
        self.env, self.records, self.bodies, self.owed = (store.env, store.records, store.bodies,
                                                          store.refunds)
        self.owed_debits = store.debits
        self.ttl = body_ttl_seconds
        self.grace = expiry_grace_seconds
        self.dirty: dict[str, LiveRecord] = {}  # the live record of each changed message
        self.discards: list[str] = []  # bodies no longer needed
        self.refunds: list[RefundItem] = []  # refunds decided, owed from this commit on
        self.refunded: list[str] = []  # refunds the ledger has written: no longer owed
        self.debited: list[int] = []  # debit batches the ledger has made durable: no longer owed
        self.last_batch = 0  # the debit batch of the new messages of the last successful write
        self.hooks = None  # engine.webhook_events.WebhookEvents: webhook outbox writes and removals
        self.stored = None  # after a write: (seqs, items) stored in the webhook outbox, or None

    def __bool__(self) -> bool:
        return bool(self.dirty or self.discards or self.refunds or self.refunded or self.debited
                    or self.hooks)

    def write(self, new: Sequence, accepted_events: Sequence = ()) -> list[RefundItem]:
        """Commit ``new`` (objects with ``record`` and ``body``) and everything pending, with the webhook
        events of the changes (``accepted_events``: those of ``new``); return the refunds that are owed
        durably from now on (for the ledger). The debits of ``new`` are owed from now on too, as batch
        ``last_batch`` (``storage.owed_debits``)."""
        dirty, discards, refunds, refunded = self.dirty, self.discards, self.refunds, self.refunded
        debited = self.debited
        self.dirty, self.discards, self.refunds, self.refunded, self.debited = {}, [], [], [], []
        now = time.time()
        try:
            with self.env.begin(write=True) as txn:
                if new:
                    self.records.put_many(txn, [f.record for f in new])
                if dirty:  # (a changed message was written as new in an earlier commit)
                    self.records.put_many(txn, dirty.values(), stored_before=True)
                self.bodies.put_many(txn, [(f.record.message_id, f.body, self._body_expiry(f.record, now),
                                            f.record.account_id) for f in new])
                if discards:
                    self.bodies.discard_many(txn, discards)
                if refunds:
                    self.owed.add(txn, [r.message_id for r in refunds])
                if refunded:
                    self.owed.remove(txn, refunded)
                batch = self.owed_debits.add(txn, [f.record.message_id for f in new]) if new else 0
                if debited:
                    self.owed_debits.remove(txn, debited)
                if self.hooks is not None:
                    self.stored = self.hooks.write(txn, list(accepted_events))
        except (lmdb.Error, StorageError) as exc:
            if self.hooks is not None:
                self.hooks.failed()
            dirty.update(self.dirty)  # keep it all for the next write; nothing accepted is dropped
            self.dirty = dirty
            self.discards = discards + self.discards
            self.refunds = refunds + self.refunds
            self.refunded = refunded + self.refunded
            self.debited = debited + self.debited
            if isinstance(exc, StorageError):
                raise
            if isinstance(exc, lmdb.MapFullError):
                raise StoreFull("message store is full") from exc
            raise StorageError(f"message store write failed: {type(exc).__name__}") from exc
        self.last_batch = batch
        if self.hooks is not None:
            self.hooks.committed()
        return refunds

    def forget_account(self, account_id: str) -> None:
        """Erasure: pending record updates of the account are not written back."""
        self.dirty = {mid: r for mid, r in self.dirty.items() if r.account_id != account_id}

    def _body_expiry(self, rec: MessageRecord, now: float) -> float:
        """A body is never needed past its message's validity (nor kept past the 24 h ceiling)."""
        return min(now + self.ttl, rec.submitted_at + rec.validity_seconds + self.grace)
