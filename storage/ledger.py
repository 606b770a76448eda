"""The billing ledger: every credit and debit, in integer micro-USD, kept 7 years (policy section 6).

Entries are append-only and idempotent: a debit is keyed by its message id and a deposit by
``(chain, tx_hash)``, so a retried write never bills or credits twice. Balances are kept beside the entries in
the same transaction, so they can never disagree with the entries.

Durability contract: ``apply`` writes one batch in one transaction, fsynced when ``durable`` (deposits,
recovery). Debits are written with ``durable=False`` (no fsync of their own; the next durable write or
``sync`` covers them): each is derived from a message record that was fsynced before the customer was
answered, and start-up recovery re-derives any debit a power loss took. *Writer:* the ledger actor only.
*Readers:* any thread. Entries are never deleted; on erasure they are pseudonymised (identifiers replaced
by a keyed token, amounts and times kept), as AML/tax retention requires.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, StorageError, StoreFull
from storage.crypto import Sealer

DEBIT, DEPOSIT, REFUND = "debit", "deposit", "refund"
RETENTION_SECONDS = 7 * 365 * 86400


class LedgerEntry(NamedTuple):
    seq: int
    kind: str  # debit | deposit | refund
    account_id: str
    amount_micro_usd: int  # signed: debits negative
    reference: str  # message id for debits/refunds, tx hash for deposits
    at: float
    chain: str = ""
    from_address: str = ""  # the deposit's from-address (policy 2.1: accounting and fraud detection)


class LedgerStore:
    """Encrypted, idempotent ledger entries and the balances they add up to."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer) -> None:
        self.env = env
        self._sealer = sealer
        self._entries = env.open_db(b"ledger")
        self._idem = env.open_db(b"ledger_idempotency")
        self._balances = env.open_db(b"balances")
        with env.begin() as txn:
            cursor = txn.cursor(db=self._entries)
            self._next_seq = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 1

    @staticmethod
    def idempotency_key(kind: str, reference: str, chain: str = "") -> bytes:
        return f"{kind}:{chain}:{reference}".encode()

    def apply(self, entries: Iterable[tuple[str, str, int, str, float, str, str]], *,
              durable: bool = True) -> list[tuple[LedgerEntry, bool]]:
        """Write ``(kind, account_id, amount, reference, at, chain, from_address)`` rows in one durable txn.

        Returns each row's entry and whether it was new (False: a repeat, nothing written).
        """
        out: list[tuple[LedgerEntry, bool]] = []
        deltas: dict[str, int] = {}
        try:
            with self.env.begin(write=True) as txn:
                seq = self._next_seq
                for kind, account_id, amount, ref, at, chain, from_address in entries:
                    idem = self.idempotency_key(kind, ref, chain)
                    existing = txn.get(idem, db=self._idem)
                    if existing is not None:
                        out.append((self._read(txn, existing), False))
                        continue
                    entry = LedgerEntry(seq, kind, account_id, amount, ref, at, chain, from_address)
                    key = seq.to_bytes(8, "big")
                    txn.put(key, self._sealer.seal(msgpack.packb(tuple(entry)), key), db=self._entries)
                    txn.put(idem, key, db=self._idem)
                    deltas[account_id] = deltas.get(account_id, 0) + amount
                    out.append((entry, True))
                    seq += 1
                for account_id, delta in deltas.items():  # one balance write per account per batch
                    bal_key = account_id.encode()
                    bal = txn.get(bal_key, db=self._balances)
                    balance = int.from_bytes(bal, "big", signed=True) if bal else 0
                    txn.put(bal_key, (balance + delta).to_bytes(8, "big", signed=True),
                            db=self._balances)
            self._next_seq = seq
            if durable:
                self.env.sync(True)
        except lmdb.MapFullError as exc:
            raise StoreFull("the ledger store is full") from exc
        except lmdb.Error as exc:
            raise StorageError(f"the ledger write failed: {type(exc).__name__}") from exc
        return out

    def balance(self, account_id: str) -> int:
        with self.env.begin() as txn:
            bal = txn.get(account_id.encode(), db=self._balances)
        return int.from_bytes(bal, "big", signed=True) if bal else 0

    def has(self, kind: str, reference: str, chain: str = "") -> bool:
        with self.env.begin() as txn:
            return txn.get(self.idempotency_key(kind, reference, chain), db=self._idem) is not None

    def last_entry(self, kind: str | None = None) -> LedgerEntry | None:
        """The newest entry (of ``kind``, if given)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._entries)
            if not cursor.last():
                return None
            for key, blob in cursor.iterprev():
                entry = self._decode(key, blob)
                if kind is None or entry.kind == kind:
                    return entry
        return None

    def entries(self, account_id: str | None = None) -> Iterator[LedgerEntry]:
        with self.env.begin() as txn:
            items = list(txn.cursor(db=self._entries))
        for key, blob in items:
            entry = self._decode(key, blob)
            if account_id is None or entry.account_id == account_id:
                yield entry

    def pseudonymise(self, account_id: str, pepper: bytes) -> int:
        """Erasure carve-out: replace the account id and wallet address of its entries with keyed tokens.

        Amounts, kinds, references and times stay (7-year AML/tax retention); the account's balance row moves
        to the token too. Returns how many entries were rewritten.
        """
        token = pseudonym(account_id, pepper)
        n = 0
        with self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=self._entries)):
                entry = self._decode(key, blob)
                if entry.account_id != account_id:
                    continue
                addr = pseudonym(entry.from_address, pepper) if entry.from_address else ""
                new = entry._replace(account_id=token, from_address=addr)
                txn.put(key, self._sealer.seal(msgpack.packb(tuple(new)), key), db=self._entries)
                n += 1
            bal = txn.pop(account_id.encode(), db=self._balances)
            if bal is not None:
                txn.put(token.encode(), bal, db=self._balances)
        self.env.sync(True)
        return n

    def sweep(self, now: float) -> int:
        """Delete entries older than 7 years (policy 6: AML/tax retention), oldest first.

        Balances are kept: they are the sum of what remains plus what was swept.
        """
        cutoff = now - RETENTION_SECONDS
        removed = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._entries)
            while cursor.first():
                entry = self._decode(cursor.key(), cursor.value())
                if entry.at >= cutoff:
                    break
                txn.delete(self.idempotency_key(entry.kind, entry.reference, entry.chain),
                           db=self._idem)
                cursor.delete()
                removed += 1
        return removed

    def _read(self, txn: lmdb.Transaction, key: bytes) -> LedgerEntry:
        return self._decode(key, txn.get(key, db=self._entries))

    def _decode(self, key: bytes, blob: bytes) -> LedgerEntry:
        try:
            return LedgerEntry(*msgpack.unpackb(self._sealer.open(blob, key)))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"ledger entry {int.from_bytes(key, 'big')} does not decode") from exc


def pseudonym(identifier: str, pepper: bytes) -> str:
    """A stable keyed token for an identifier: the same input gives the same token, unlinkable without
    the pepper."""
    return "psn_" + hmac.new(pepper, identifier.encode(), hashlib.sha256).hexdigest()[:32]
