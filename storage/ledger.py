"""The billing ledger: every credit and debit, in integer micro-USD, kept 7 years (policy section 6).

Entries are append-only and idempotent: a debit is keyed by its message id, a refund by its message id and a
deposit by ``(chain, tx_hash)``, so a retried write never bills or credits twice. Balances are kept beside
the entries in the same transaction, so they can never disagree with the entries.

What is stored, and why erasure never rewrites a row:

* Each entry is sealed under the ledger's store key (AES-256-GCM, its sequence number as associated data)::

      [kind, account token, amount, at, natural key, identifiers]

  *account token* is the keyed HMAC of the account id (``storage.pseudonyms``): balances and entries are
  keyed by it from the first write, never by the account id. *natural key* is the keyed HMAC of
  ``(kind, chain, reference)``, the idempotency key (so a transaction hash, which leads to a wallet on a
  public chain, is never stored as a key). *identifiers* — account id, reference (message id or transaction
  hash), chain and from-address — are sealed once more, under the account's **ledger key**
  (``storage.account_keys``).
* Erasure destroys that ledger key (crypto-shredding): the identifiers of every copy of the account's rows,
  on live or stale pages and in backups, become unreadable, while kinds, amounts, times and the token stay
  readable for the 7-year AML/tax carve-out. No row is rewritten, so a hash chain over the sealed entries
  (a later issue) stays verifiable after erasure. A row written after the key is gone (a late debit of an
  erased account) is stored without identifiers.
* A balance row is ``balance, entry count, account-deleted flag`` under the token. It is deleted together
  with the account's last entry, once the account itself is deleted (erased, or swept 90 days after
  closure), and the ledger key with it (retention row ``balances_of_deleted_accounts``). An active
  account's balance is never swept, even when all its entries are.

Durability contract: ``apply`` writes one batch in one transaction, fsynced when ``durable`` (deposits,
refunds). Debits are written with ``durable=False`` (no fsync of their own; the next durable write or
``sync`` covers them): each POP keeps owing its debits (``storage.owed_debits``) until the ledger has
synced them and said so, so a power loss between the write and the sync loses none. *Writers:* the ledger actor
(entries); the sweeper and account deletion (retention, the deleted flag) in their own transactions, which
LMDB serialises. *Readers:* any thread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, KeyUnavailable, StorageError, StoreFull
from storage.account_keys import LEDGER, AccountKeys
from storage.crypto import Sealer
from storage.pseudonyms import token_text

DEBIT, DEPOSIT, REFUND = "debit", "deposit", "refund"
RETENTION_SECONDS = 7 * 365 * 86400
_BALANCE = struct.Struct(">qQB")  # balance, entries, flags
_DELETED = 1


class LedgerEntry(NamedTuple):
    seq: int
    kind: str  # debit | deposit | refund
    account_id: str  # the account id; its pseudonym (psn_…) once the identifiers are shredded
    amount_micro_usd: int  # signed: debits negative
    reference: str  # message id for debits/refunds, tx hash for deposits ("" once shredded)
    at: float
    chain: str = ""
    from_address: str = ""  # the deposit's from-address (policy 2.1: accounting and fraud detection)


class _Stored(NamedTuple):
    kind: str
    token: bytes
    amount: int
    at: float
    natural_key: bytes
    identifiers: bytes  # sealed under the account's ledger key; b"" if it had none


class LedgerStore:
    """Encrypted, idempotent ledger entries and the balances they add up to."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, keys: AccountKeys) -> None:
        self.env = env
        self._sealer = sealer
        self.keys = keys
        self._entries = env.open_db(b"ledger")
        self._idem = env.open_db(b"ledger_idempotency")
        self._balances = env.open_db(b"balances")
        self.identifiers_dropped = 0  # rows written without identifiers (the account's key was gone)
        with env.begin() as txn:
            cursor = txn.cursor(db=self._entries)
            self._next_seq = int.from_bytes(cursor.key(), "big") + 1 if cursor.last() else 1

    def idempotency_key(self, kind: str, reference: str, chain: str = "") -> bytes:
        """The keyed HMAC under which an entry's natural key is stored."""
        return self.keys.pseudonyms.natural_key(kind, chain, reference)

    def apply(self, entries: Iterable[tuple[str, str, int, str, float, str, str]], *,
              durable: bool = True) -> list[tuple[LedgerEntry, bool]]:
        """Write ``(kind, account_id, amount, reference, at, chain, from_address)`` rows in one txn.

        Returns each row's entry and whether it was new (False: a repeat, nothing written).
        """
        out: list[tuple[LedgerEntry, bool]] = []
        deltas: dict[bytes, list[int]] = {}  # token -> [amount, entries]
        sealers: dict[bytes, Sealer | None] = {}  # one key-cache lookup per account and batch
        try:
            with self.env.begin(write=True) as txn:
                seq = self._next_seq
                for kind, account_id, amount, ref, at, chain, from_address in entries:
                    idem = self.idempotency_key(kind, ref, chain)
                    existing = txn.get(idem, db=self._idem)
                    if existing is not None:
                        out.append((self._read(txn, existing), False))
                        continue
                    key = seq.to_bytes(8, "big")
                    token = self.keys.token(account_id)
                    if token not in sealers:
                        sealers[token] = self._ledger_key(token)
                    idents = self._seal_identifiers(sealers[token], key, account_id, ref, chain,
                                                    from_address)
                    stored = _Stored(kind, token, amount, at, idem, idents)
                    txn.put(key, self._sealer.seal(msgpack.packb(tuple(stored)), key),
                            db=self._entries)
                    txn.put(idem, key, db=self._idem)
                    delta = deltas.setdefault(token, [0, 0])
                    delta[0] += amount
                    delta[1] += 1
                    entry = LedgerEntry(seq, kind, account_id, amount, ref, at, chain, from_address)
                    out.append((entry, True))
                    seq += 1
                for token, (amount, count) in deltas.items():  # one balance write per account
                    balance, entries_n, flags = self._balance_row(txn, token)
                    txn.put(token, _BALANCE.pack(balance + amount, entries_n + count, flags),
                            db=self._balances)
            self._next_seq = seq
            if durable:
                self.env.sync(True)
        except lmdb.MapFullError as exc:
            raise StoreFull("the ledger store is full") from exc
        except lmdb.Error as exc:
            raise StorageError(f"the ledger write failed: {type(exc).__name__}") from exc
        return out

    def sync(self) -> None:
        """Make every entry written so far durable (one fsync)."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise StorageError(f"the ledger sync failed: {type(exc).__name__}") from exc

    def _ledger_key(self, token: bytes) -> Sealer | None:
        try:
            return self.keys.sealer_for_token(token, LEDGER)
        except KeyUnavailable:
            return None  # erased (or past retention): its identifiers must not be written again

    def _seal_identifiers(self, sealer: Sealer | None, key: bytes, account_id: str, ref: str,
                          chain: str, from_address: str) -> bytes:
        if sealer is None:
            self.identifiers_dropped += 1
            return b""
        return sealer.seal(msgpack.packb([account_id, ref, chain, from_address]), key)

    def balance(self, account_id: str) -> int:
        """The balance of an account (by its id, or by its pseudonym ``psn_…`` once erased)."""
        with self.env.begin() as txn:
            return self._balance_row(txn, self._token(account_id))[0]

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
                stored = self._open(key, blob)
                if kind is None or stored.kind == kind:
                    return self._entry(key, stored)
        return None

    def entries(self, account_id: str | None = None) -> Iterator[LedgerEntry]:
        """Every entry, or one account's (by its id or pseudonym); only matching rows are opened."""
        token = None if account_id is None else self._token(account_id)
        with self.env.begin() as txn:
            items = list(txn.cursor(db=self._entries))
        for key, blob in items:
            stored = self._open(key, blob)
            if token is None or stored.token == token:
                yield self._entry(key, stored)

    # --- erasure and deletion -------------------------------------------------------------------

    def forget_account(self, account_id: str) -> int:
        """Erasure's carve-out: shred the account's ledger key, so the identifiers of all its rows (every
        copy) are unreadable, and mark its balance row as belonging to a deleted account. Amounts, kinds,
        times and the pseudonym stay. Returns how many rows the account has."""
        self.keys.shred(account_id, (LEDGER,))
        return self.account_deleted(account_id)

    def account_deleted(self, account_id: str) -> int:
        """The account's record is gone (erased or swept): its balance row now ends with its last entry.
        Returns how many entries it still has."""
        token = self.keys.token(account_id)
        with self.env.begin(write=True) as txn:
            balance, count, flags = self._balance_row(txn, token)
            if count:
                txn.put(token, _BALANCE.pack(balance, count, flags | _DELETED), db=self._balances)
            else:
                txn.delete(token, db=self._balances)
        self.env.sync(True)
        if not count:
            self.keys.shred_token(token, (LEDGER,))
        return count

    def sweep(self, now: float) -> int:
        """Delete entries older than 7 years (policy 6: AML/tax retention), oldest first; then the
        balance row (and ledger key) of each deleted account whose last entry that was.

        An active account keeps its balance row: it is the sum of what remains plus what was swept.
        """
        cutoff = now - RETENTION_SECONDS
        removed, emptied = 0, []
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._entries)
            counts: dict[bytes, int] = {}
            while cursor.first():
                stored = self._open(cursor.key(), cursor.value())
                if stored.at >= cutoff:
                    break
                txn.delete(stored.natural_key, db=self._idem)
                cursor.delete()
                counts[stored.token] = counts.get(stored.token, 0) + 1
                removed += 1
            for token, n in counts.items():
                balance, count, flags = self._balance_row(txn, token)
                left = max(0, count - n)
                if left == 0 and flags & _DELETED:
                    txn.delete(token, db=self._balances)
                    emptied.append(token)
                else:
                    txn.put(token, _BALANCE.pack(balance, left, flags), db=self._balances)
        for token in emptied:
            self.keys.shred_token(token, (LEDGER,))
        return removed

    # --- decoding -------------------------------------------------------------------------------

    def _token(self, account_id: str) -> bytes:
        if account_id.startswith("psn_") and len(account_id) == 36:
            return bytes.fromhex(account_id[4:])
        return self.keys.token(account_id)

    def _balance_row(self, txn: lmdb.Transaction, token: bytes) -> tuple[int, int, int]:
        raw = txn.get(token, db=self._balances)
        return _BALANCE.unpack(raw) if raw is not None else (0, 0, 0)

    def _read(self, txn: lmdb.Transaction, key: bytes) -> LedgerEntry:
        return self._entry(key, self._open(key, txn.get(key, db=self._entries)))

    def _open(self, key: bytes, blob: bytes) -> _Stored:
        try:
            kind, token, amount, at, idem, idents = msgpack.unpackb(self._sealer.open(blob, key))
            return _Stored(kind, token, amount, at, idem, idents)
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"ledger entry {int.from_bytes(key, 'big')} does not decode") from exc

    def _entry(self, key: bytes, stored: _Stored) -> LedgerEntry:
        seq = int.from_bytes(key, "big")
        account_id, ref, chain, address = token_text(stored.token), "", "", ""
        if stored.identifiers:
            try:
                sealer = self.keys.sealer_for_token(stored.token, LEDGER)
                account_id, ref, chain, address = msgpack.unpackb(sealer.open(stored.identifiers, key))
            except KeyUnavailable:
                pass  # shredded: the row is pseudonymous from now on
        return LedgerEntry(seq, stored.kind, account_id, stored.amount, ref, stored.at, chain, address)
