"""Debits a POP owes the ledger: its accepted messages, in batches, until the ledger says they are durable.

Why here and not read back by someone else: the ledger may run in another process or on another host
(issue 12), and core NATS delivers at most once. So the POP that accepted a message keeps, in the same
fsynced transaction as the message itself, a note that its debit is owed; it sends the debits to the
ledger (``DebitMessages`` with the batch number), and forgets the note only when the ledger answers
``DebitsRecorded`` for that batch - which the ledger does only after an fsync that covers those debits.
A batch not answered in time is sent again, and every owed batch is sent again when the POP starts; the
ledger's debits are idempotent on message id, so a repeat never bills twice. This replaces start-up
"reconciliation" that read every POP's records from the ledger's side.

One row per group commit, not per message: key = the batch number (8 bytes, big-endian, increasing),
value = the batch's message ids (16 bytes each, concatenated). Message ids are no personal data, so the
rows are not sealed; everything else a debit needs is read back from the (sealed) message record when a
batch is sent again.

Durability contract: *Durable:* ``add`` writes inside the POP's group-commit transaction (fsynced) with
the messages it lists; ``remove`` inside a later one. *Writers:* the POP actor that owns the environment.
*Readers:* the same actor (``all`` at start-up).
"""

from __future__ import annotations

from collections.abc import Iterable

import lmdb

from engine.ids import id_bytes, id_from_bytes


class OwedDebits:
    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env
        self._db = env.open_db(b"debits_owed")
        with env.begin() as txn:
            cursor = txn.cursor(db=self._db)
            self._next = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 1

    def add(self, txn: lmdb.Transaction, message_ids: Iterable[str]) -> int:
        """Note that the debits of ``message_ids`` are owed; returns the batch number (a transaction that
        is not committed leaves a gap in the numbers, which is harmless)."""
        batch = self._next
        self._next += 1
        txn.put(batch.to_bytes(8, "big"), b"".join(id_bytes(mid) for mid in message_ids),
                db=self._db)
        return batch

    def remove(self, txn: lmdb.Transaction, batches: Iterable[int]) -> None:
        for batch in batches:
            txn.delete(batch.to_bytes(8, "big"), db=self._db)

    def all(self) -> dict[int, list[str]]:
        """Every batch still owed, oldest first: ``{batch: [message id, ...]}``."""
        with self.env.begin() as txn:
            rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=self._db)]
        return {int.from_bytes(k, "big"): [id_from_bytes(v[i:i + 16]) for i in range(0, len(v), 16)]
                for k, v in rows}
