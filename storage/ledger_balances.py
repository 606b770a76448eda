"""The ledger's balance rows: one per account token, written in the same transaction as its entries.

A row is ``balance, items, flags, carried, threshold`` (big-endian ``>qQBqq``):

* *balance* — what the account may spend, in micro-USD: always *carried* plus the sum of its items;
* *items* — how many items it still has in the ledger (the row goes with the last one once the account is
  deleted: the ``DELETED`` flag);
* *carried* — the sum of the items the 7-year retention sweep deleted (so the balance of an active account
  outlives its oldest entries, and reconciliation can still check it);
* *threshold* — the low-balance threshold (0: none) and the ``LOW_NOTIFIED`` flag: set by the write that
  takes the balance below it (reported once), cleared when the balance is back at or above it.

Durability: rows are changed only inside the ledger's write transactions (``storage.ledger``), whose
contract they share. Readers: any thread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import lmdb

__all__ = ["BalanceRow", "Balances", "LowBalance"]

_ROW = struct.Struct(">qQBqq")
DELETED, LOW_NOTIFIED = 1, 2


class BalanceRow(NamedTuple):
    balance: int = 0
    items: int = 0
    flags: int = 0
    carried: int = 0  # the sum of the amounts of swept entries
    threshold: int = 0  # low-balance threshold in micro-USD (0: none)

    @property
    def deleted(self) -> bool:
        return bool(self.flags & DELETED)


class LowBalance(NamedTuple):
    """A write took the account's balance below its threshold (reported once per crossing)."""

    account_id: str
    balance_micro_usd: int
    threshold_micro_usd: int
    seq: int  # the entry that crossed it (0: the threshold was set above the balance)


class Balances:
    """The ``balances`` database of the ledger's environment."""

    def __init__(self, env: lmdb.Environment) -> None:
        self.db = env.open_db(b"balances")

    def get(self, txn: lmdb.Transaction, token: bytes) -> BalanceRow:
        raw = txn.get(token, db=self.db)
        return BalanceRow(*_ROW.unpack(raw)) if raw is not None else BalanceRow()

    def all(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, BalanceRow]]:
        for token, raw in txn.cursor(db=self.db):
            yield bytes(token), BalanceRow(*_ROW.unpack(raw))

    def add(self, txn: lmdb.Transaction, token: bytes, amount: int, items: int) -> tuple[BalanceRow, bool]:
        """Add a write's items; the new row, and whether the balance just went below the threshold."""
        row = self.get(txn, token)
        return self._put(txn, token, row._replace(balance=row.balance + amount, items=row.items + items))

    def set_threshold(self, txn: lmdb.Transaction, token: bytes,
                      threshold: int) -> tuple[BalanceRow, bool]:
        return self._put(txn, token, self.get(txn, token)._replace(threshold=max(0, threshold)))

    def mark_deleted(self, txn: lmdb.Transaction, token: bytes) -> int:
        """The account is gone: its row now ends with its last item (at once if it has none).
        Returns how many items it has."""
        row = self.get(txn, token)
        if row.items:
            txn.put(token, _ROW.pack(*row._replace(flags=row.flags | DELETED)), db=self.db)
        else:
            txn.delete(token, db=self.db)
        return row.items

    def swept(self, txn: lmdb.Transaction, token: bytes, amount: int, items: int) -> bool:
        """``items`` of the account (adding up to ``amount``) were swept: they are carried from now on.
        True when that was the last item of a deleted account (its row is gone)."""
        row = self.get(txn, token)
        row = row._replace(items=max(0, row.items - items), carried=row.carried + amount)
        if row.items == 0 and row.deleted:
            txn.delete(token, db=self.db)
            return True
        txn.put(token, _ROW.pack(*row), db=self.db)
        return False

    def _put(self, txn: lmdb.Transaction, token: bytes, row: BalanceRow) -> tuple[BalanceRow, bool]:
        row, crossed = _crossing(row)
        txn.put(token, _ROW.pack(*row), db=self.db)
        return row, crossed


def _crossing(row: BalanceRow) -> tuple[BalanceRow, bool]:
    """The row with its low-balance flag brought up to date, and whether it just crossed below."""
    if row.threshold > 0 and row.balance < row.threshold:
        if row.flags & LOW_NOTIFIED:
            return row, False
        return row._replace(flags=row.flags | LOW_NOTIFIED), True
    return row._replace(flags=row.flags & ~LOW_NOTIFIED), False
