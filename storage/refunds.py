"""Refunds a POP owes: message ids whose refund may not be in the ledger yet.

A message that ends without any carrier acknowledgement is refunded. The POP decides that in the same
fsynced transaction that writes the message's final record (with ``refunded_micro_usd``) and adds its id
here; the ledger then writes the idempotent ``refund`` entry and answers ``RefundsRecorded``, and the POP
removes the id in a later commit. An id still here at start-up is a refund a crash may have lost: the
start-up reconciliation (``Runtime._reconcile_refunds``) writes the ledger entry if it is missing and clears
the id, so every owed refund is credited exactly once.

Durability contract: *Durable:* ``add`` writes inside the POP's group-commit transaction (fsynced) with the
final record. *Writers:* the POP actor that owns the environment; start-up reconciliation before any actor
runs. *Readers:* the same. Keys are message ids (time-ordered, no personal data); values are empty.
"""

from __future__ import annotations

from collections.abc import Iterable

import lmdb

from engine.ids import id_bytes, id_from_bytes


class OwedRefunds:
    def __init__(self, env: lmdb.Environment) -> None:
        self.env = env
        self._db = env.open_db(b"refunds_owed")

    def add(self, txn: lmdb.Transaction, message_ids: Iterable[str]) -> None:
        for mid in message_ids:
            txn.put(id_bytes(mid), b"", db=self._db)

    def remove(self, txn: lmdb.Transaction, message_ids: Iterable[str]) -> None:
        for mid in message_ids:
            txn.delete(id_bytes(mid), db=self._db)

    def all(self) -> list[str]:
        with self.env.begin() as txn:
            return [id_from_bytes(k) for k, _ in txn.cursor(db=self._db)]

    def clear(self, message_ids: Iterable[str]) -> None:
        with self.env.begin(write=True) as txn:
            self.remove(txn, message_ids)
