"""A POP's group commit: everything it must write, collected between two commits, written in one go.

Between two ``Flush`` messages a POP collects new messages (record + encrypted body), record updates (the
latest per message), body discards and refund bookkeeping; on ``Flush`` :meth:`PopCommit.stage` takes all of
it out as one :class:`StagedBatch`, and :meth:`PopCommit.write_staged` writes that inside ONE transaction
(the POP's own, or the one its process's POPs share: ``actors.group_commit``). One fsync covers every
message of the batch.

Durability contract:

* *Durable:* the transaction holding a batch is committed and fsynced (the POP environments are opened with
  ``sync=True``) before :meth:`PopCommit.committed`; the POP acknowledges customers, sends debits and
  refunds and emits status events only after that.
* *Atomic:* a message's final record and the refund it is owed (``storage.refunds``) are in the same
  transaction, so a crash can never keep one without the other; likewise a new message and its owed debit
  (``storage.owed_debits``), and a status change and its webhook event (``storage.webhook_outbox``).
* *On failure* (``StorageError`` / ``StoreFull``, :func:`as_storage_error`) nothing of the batch is written;
  :meth:`PopCommit.unstage` makes its updates, discards and refund bookkeeping pending again for the next
  commit; the new messages are the caller's to refuse.
* *Reserve* (``storage.headroom``): while the environment is down to its reserve, a commit round leaves its
  batches' new messages out (:func:`refuse_new_when_full`, checked once per round, never per message) and
  the POP refuses them ``store_full``; the rest of each batch - status updates, body discards, refund and
  debit bookkeeping, webhook events of messages already accepted - is written, into the reserve if need
  be: it finishes messages the customer was already told about.
* *Writers:* the POP actor, or — when the POPs of a process share an environment — the committer actor
  writing the batches the POPs staged (:meth:`PopCommit.stage`, ``actors.group_commit``) on the same
  dispatcher thread. *Readers:* any thread (the stores' own read transactions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from engine.errors import StorageError, StoreFull
from engine.messages import RefundItem
from storage.full import is_full_disk, store_full
from storage.headroom import has_headroom
from storage.records import MESSAGE_STORE, LiveRecord

log = logging.getLogger(__name__)


@dataclass
class StagedBatch:
    """What one POP's ``Flush`` collected, taken out of :class:`PopCommit` to be written by a group commit
    (``actors.group_commit``), with what the write produced."""

    new: list  # Delivery objects (record + body) of the new messages
    accepted: list  # their status events
    dirty: dict
    discards: list
    refunds: list
    refunded: list
    debited: list
    hooks: tuple | None  # engine.webhook_events.WebhookEvents.stage()
    admitted: list  # (Delivery, AcceptItem): the POP's own, to answer after the commit
    debit_batch: int = 0
    stored: tuple | None = None  # (seqs, items) stored in the webhook outbox
    hook_writes: tuple[int, int, int] = (0, 0, 0)
    unsealable: int = 0  # records skipped: their account was erased meanwhile
    events: list = field(default_factory=list)  # the POP's status events of the batch's changes
    acks: list = field(default_factory=list)  # and its carrier acknowledgements, told after the commit
    receipts: dict = field(default_factory=dict)  # carrier -> receipt tokens, answered after the commit
    refused: list = field(default_factory=list)  # (Delivery, AcceptItem) refused: the store is full
    refused_error: StoreFull | None = None

    def refuse_new(self, error: StoreFull) -> None:
        """The store is down to its reserve: the batch's new messages (and their accepted events) are
        left out, for the POP to refuse with ``error``; its other changes are still written."""
        self.refused, self.refused_error = self.refused + self.admitted, error
        self.new, self.accepted, self.admitted = [], [], []


def refuse_new_when_full(env: Any, batches: Sequence[StagedBatch]) -> None:
    """Once per commit round, before its transaction: while ``env`` is down to its reserve
    (``storage.headroom``), every new message of ``batches`` is refused (``StagedBatch.refuse_new``).
    Nothing is checked per message, and a round without new messages is not checked at all."""
    if not any(b.new for b in batches):
        return
    if not has_headroom(env):  # (counted here, logged by the POPs: storage.space_watch)
        err = store_full(MESSAGE_STORE, logged=False)
        for b in batches:
            b.refuse_new(err)


def is_store_full(exc: BaseException, where: str | Path) -> bool:
    """Whether a commit of the store at ``where`` failed for lack of space (its map, or its disk)."""
    return isinstance(exc, (lmdb.MapFullError, StoreFull)) or is_full_disk(exc, where)


def as_storage_error(exc: BaseException, where: str | Path) -> StorageError:
    """The error a failed commit of the store at ``where`` is refused with: a full map, or no space
    left on the device, is ``StoreFull`` - counted as the ``message`` store's (``storage.full``), so the
    customer is told ``store_full`` and ``/metrics`` shows it, and logged by the POP's
    ``storage.space_watch`` (once when it starts, then a summary a minute); before, a full disk was a bare
    ``storage_error`` and a log line naming only LMDB's exception class."""
    if isinstance(exc, StorageError):
        return exc
    if is_store_full(exc, where):
        return store_full(MESSAGE_STORE, logged=False)
    return StorageError(f"message store write failed: {type(exc).__name__}")


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
        self.hooks = None  # engine.webhook_events.WebhookEvents: webhook outbox writes and removals
        self.unsealable = 0  # record writes skipped because the account's key is gone (erased)

    def __bool__(self) -> bool:
        return bool(self.dirty or self.discards or self.refunds or self.refunded or self.debited
                    or self.hooks)

    # --- a batch staged for a group commit (actors.group_commit) -----------------------------------

    def stage(self, new: Sequence, accepted: Sequence, admitted: Sequence = ()) -> StagedBatch:
        """Take everything pending (and ``new``, with their ``accepted`` events) out into a batch that
        another transaction will write; nothing is written here. ``admitted`` rides along for the POP."""
        batch = StagedBatch(list(new), list(accepted), self.dirty, self.discards, self.refunds,
                            self.refunded, self.debited,
                            self.hooks.stage() if self.hooks is not None else None, list(admitted))
        self.dirty, self.discards, self.refunds, self.refunded, self.debited = {}, [], [], [], []
        return batch

    def write_staged(self, txn: lmdb.Transaction, b: StagedBatch) -> None:
        """Write a staged batch inside ``txn`` (the caller commits); its outcome is kept on it."""
        now = time.time()
        b.unsealable = 0
        if b.new:
            b.unsealable += self.records.put_many(txn, [f.record for f in b.new])
        if b.dirty:
            b.unsealable += self.records.put_many(txn, b.dirty.values(), stored_before=True)
        if b.new:  # (a batch of status changes alone needs no body key: it commits without one)
            ttl_end, grace = now + self.ttl, self.grace
            bodies = []
            for f in b.new:  # a body is never needed past its message's validity (nor kept past the TTL)
                r = f.record
                bodies.append((r.message_id, f.body,
                               min(ttl_end, r.submitted_at + r.validity_seconds + grace), r.account_id))
            self.bodies.put_many(txn, bodies)
        if b.discards:
            self.bodies.discard_many(txn, b.discards)
        if b.refunds:
            self.owed.add(txn, [r.message_id for r in b.refunds])
        if b.refunded:
            self.owed.remove(txn, b.refunded)
        b.debit_batch = self.owed_debits.add(txn, [f.record.message_id for f in b.new]) if b.new else 0
        if b.debited:
            self.owed_debits.remove(txn, b.debited)
        if self.hooks is not None and b.hooks is not None:
            b.stored, b.hook_writes = self.hooks.write(txn, b.accepted, b.hooks)

    def committed(self, b: StagedBatch) -> None:
        """The transaction that held ``b`` is durable: what its write found is counted now, once (a
        batch whose group transaction failed was written again alone, see ``actors.group_commit``)."""
        if self.hooks is not None:
            self.hooks.committed(b.hook_writes)
        if b.unsealable:
            self.unsealable += b.unsealable
            log.warning("records: %d writes skipped, their account's data key is gone", b.unsealable)

    def unstage(self, b: StagedBatch) -> None:
        """A staged batch was not written: everything but its new messages is pending again (the newer
        state of a message wins)."""
        b.dirty.update(self.dirty)
        self.dirty = b.dirty
        self.discards = b.discards + self.discards
        self.refunds = b.refunds + self.refunds
        self.refunded = b.refunded + self.refunded
        self.debited = b.debited + self.debited
        if b.hooks is not None and self.hooks is not None:
            self.hooks.unstage(b.hooks)

    def forget_account(self, account_id: str) -> None:
        """Erasure: pending record updates of the account are not written back."""
        self.dirty = {mid: r for mid, r in self.dirty.items() if r.account_id != account_id}
