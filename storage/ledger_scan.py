"""Reading the ledger without holding it: short read transactions for long walks, and one snapshot
transaction where entries and balances must agree (``storage.ledger`` uses both; reconciliation the
snapshot).

A walk over millions of entries (an export, the whole ledger) reads ``CHUNK`` keys per read transaction,
so it never pins old pages for long (an LMDB reader that stays open keeps the writer from reusing them,
and the file grows).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import lmdb

from engine.errors import CorruptRecord
from storage.ledger_balances import BalanceRow
from storage.ledger_entries import IndexRow, Sealed

if TYPE_CHECKING:
    from storage.ledger import LedgerStore

__all__ = ["CHUNK", "LedgerSnapshot", "chunks"]

CHUNK = 256  # keys read per read transaction


def chunks(env: lmdb.Environment, db, prefix: bytes = b"") -> Iterator[list[tuple[bytes, bytes]]]:
    """Every ``(key, value)`` of ``db`` whose key starts with ``prefix``, in key order, ``CHUNK`` at a
    time, each chunk read in a transaction of its own."""
    start = prefix
    while True:
        with env.begin() as txn:
            cursor = txn.cursor(db=db)
            chunk: list[tuple[bytes, bytes]] = []
            if cursor.set_range(start):
                for key, value in cursor:
                    if not key.startswith(prefix) or len(chunk) == CHUNK:
                        break
                    chunk.append((bytes(key), bytes(value)))
        if chunk:
            yield chunk
        if len(chunk) < CHUNK:
            return
        start = chunk[-1][0] + b"\x00"


class LedgerSnapshot:
    """The ledger as of one read transaction (entries, balances and index agree)."""

    def __init__(self, store: LedgerStore, txn: lmdb.Transaction) -> None:
        self._store, self._txn = store, txn

    def entries(self) -> Iterator[tuple[bytes, Sealed | CorruptRecord]]:
        """``(key, opened entry)`` of every entry, in sequence order; an entry that does not open
        comes as its ``CorruptRecord`` (the walk goes on)."""
        for key, value in self._txn.cursor(db=self._store._entries):
            try:
                yield bytes(key), self._store._open(key, value)
            except CorruptRecord as exc:
                yield bytes(key), exc

    def balances(self) -> Iterator[tuple[bytes, BalanceRow]]:
        return self._store.balance_rows.all(self._txn)

    def index_row(self, natural_key: bytes) -> IndexRow | None:
        """Where the item with this natural key is recorded."""
        raw = self._txn.get(natural_key, db=self._store._idem)
        return None if raw is None else IndexRow.unpack(raw)
