"""The billing ledger: every credit and debit, in integer micro-USD, kept 7 years (policy section 6).

Items are append-only and idempotent: a debit is keyed by its message id, a refund by its message id, a
deposit by ``(chain, tx_hash)`` and an adjustment by the operator's key for it, so a retried write never
bills, refunds or credits twice. A deposit or adjustment whose key is already recorded with another
account, amount, from-address or reason is refused (``DepositConflict`` / ``AdjustmentConflict``) and
nothing is written. Balances are kept beside the entries in the same transaction, so they can never
disagree with them.

What is stored (``storage.ledger_entries`` has the entry format, ``storage.ledger_chain`` the chain):

* ``ledger``: sequence number -> ``previous link | sealed entry``. One entry holds one account's items of
  one kind from one write: a batch of debits costs one seal, one identifier seal and one chain link however
  many messages it bills (per message: one keyed BLAKE2b and one index row).
* ``ledger_idempotency``: natural key (keyed hash) -> where the item is; ``ledger_by_account``: account
  token | sequence number -> the first and last time in the entry (an account's entries without a scan);
  ``balances``: token -> balance, items, flags, carried (the sum of swept entries), low-balance threshold;
  ``ledger_meta``: the chain's head and retention anchor.
* Identifiers (account id, references, chain, from-address, reason) are sealed under the account's ledger
  key. Erasure destroys that key: every copy of them becomes unreadable, while kinds, amounts and times
  stay under the account's token for the 7-year AML/tax carve-out. No row is ever rewritten, so the hash
  chain over the sealed entries verifies after any erasure. An item written after the key is gone (a late
  debit of an erased account) is stored without identifiers.
* A balance row is deleted together with the account's last entry once the account itself is deleted
  (erased, or swept 90 days after closure), and the ledger key with it. An active account's balance row is
  never swept: it is what was swept (``carried``) plus the entries kept.

Low balance: an account may have a threshold. The write that takes its balance below it reports a
:class:`LowBalance` once (a flag in the balance row, in the same transaction); the flag clears when the
balance is back at or above the threshold, so the next crossing reports again.

Durability contract: ``write`` writes one batch in one transaction, made durable before it returns when
``durable`` (deposits, adjustments, refunds: ``env.sync(True)`` after the commit). Debits are written with
``durable=False``: the core environment is opened ``metasync=False`` (``storage.env``), so their commit
still fsyncs the data pages it wrote, but the meta page that makes them current is synced only by the next
commit's fsync or ``sync`` - a power loss before that may undo the write, never corrupt the environment.
Each POP keeps owing its debits (``storage.owed_debits``) until the ledger has synced them and said so, so
such a loss loses none. *Writers:* the
ledger actor (entries, thresholds); the sweeper and account deletion (retention, the deleted flag) in
their own transactions, which LMDB serialises. *Readers:* any thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import lmdb

from engine.errors import (
    KeyUnavailable,
    StorageError,
    StoreFull,
)
from storage.account_keys import LEDGER, AccountKeys
from storage.crypto import Sealer
from storage.full import is_full_disk, store_full
from storage.ledger_balances import BalanceRow, Balances, LowBalance
from storage.ledger_chain import Anchor, Chain, ChainReport
from storage.ledger_entries import (
    ADJUSTMENT,
    DEBIT,
    DEPOSIT,
    REFUND,
    EntryCodec,
    IndexRow,
    LedgerEntry,
    Sealed,
)
from storage.ledger_scan import LedgerSnapshot, chunks
from storage.ledger_write import (
    BUCKET_SHIFT,
    SPAN,
    BatchWrite,
    NaturalKeys,
    Posting,
    Written,
    message_bucket,
)
from storage.retention import RETENTION

log = logging.getLogger(__name__)

__all__ = ["ADJUSTMENT", "DEBIT", "DEPOSIT", "REFUND", "RETENTION_SECONDS", "BalanceRow", "LedgerEntry",
           "LedgerSnapshot", "LedgerStore", "LowBalance", "Posting", "Written"]

LEDGER_STORE = "ledger"  # its name in store_full refusals and their metric
RETENTION_SECONDS = RETENTION["billing_ledger"].seconds  # 7 calendar years (storage.retention)
_T = 16  # account token bytes
_TIME_KEYS = b"time_keyed_since"  # ledger_meta: debits of messages before this (ms) may have old keys
LEGACY_MARGIN_MS = 86_400_000  # hosts' clocks may disagree: old keys are looked for a day further


class LedgerStore:
    """Encrypted, idempotent, hash-chained ledger entries and the balances they add up to."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, keys: AccountKeys) -> None:
        self.env = env
        self.keys = keys
        self.codec = EntryCodec(sealer, keys)
        self.chain = Chain(env, keys.pseudonyms.subkey("ledger-chain"))
        self.natural_keys = NaturalKeys(keys.pseudonyms.subkey("ledger-natural-key"))
        self._entries = env.open_db(b"ledger")
        self._idem = env.open_db(b"ledger_idempotency")
        self._by_account = env.open_db(b"ledger_by_account")
        self.balance_rows = Balances(env)
        self._balances = self.balance_rows.db
        self._meta = env.open_db(b"ledger_meta")
        self.identifiers_dropped = 0  # items written without identifiers (the account's key was gone)
        self.writes = 0  # write transactions committed (each one a group of rows; the bench counts them)
        with env.begin() as txn:
            self._next_seq = self.chain.head(txn)[0] + 1
            marker = txn.get(_TIME_KEYS, db=self._meta)
            if marker is not None:
                self.legacy_before_ms = int.from_bytes(marker, "big")
            elif txn.stat(self._idem)["entries"]:  # written before debits' keys were time-ordered
                self.legacy_before_ms = int(time.time() * 1000) + LEGACY_MARGIN_MS
            else:
                self.legacy_before_ms = 0  # (a new ledger: no old key anywhere)
        self._marked = marker is not None  # the first write records legacy_before_ms

    def natural_key(self, kind: str, reference: str, scope: str = "") -> bytes:
        """The keyed hash an item is found by (``storage.ledger_write.NaturalKeys``)."""
        return self.natural_keys.of(kind, reference, scope)

    def legacy_row(self, txn: lmdb.Transaction, kind: str, reference: str) -> bytes | None:
        """The index row of a debit or refund written before their keys were time-ordered (a ledger
        made by an earlier version), or None. Only a message created before the upgrade (and a day's
        margin for clocks) can have one, so a new message costs no second lookup."""
        bucket = message_bucket(reference)
        if bucket is None or (bucket << BUCKET_SHIFT) >= self.legacy_before_ms:
            return None
        return txn.get(self.natural_keys.legacy_of(kind, reference), db=self._idem)

    def _index_row(self, txn: lmdb.Transaction, kind: str, reference: str, scope: str) -> bytes | None:
        raw = txn.get(self.natural_key(kind, reference, scope), db=self._idem)
        if raw is None and self.legacy_before_ms and kind in (DEBIT, REFUND) and not scope:
            raw = self.legacy_row(txn, kind, reference)
        return raw

    # --- writing ---------------------------------------------------------------------------------

    def apply(self, rows: Iterable[Sequence], *, durable: bool = True) -> list[tuple[LedgerEntry, bool]]:
        """:meth:`write` without the low-balance crossings: each row's item and whether it is new."""
        return self.write(rows, durable=durable).results

    def write(self, rows: Iterable[Sequence], *, durable: bool = True, answers: bool = True) -> Written:
        """Write ``(kind, account_id, amount, reference, at, chain, from_address[, reason, actor])``
        rows in one transaction. A repeat writes nothing and answers with the recorded item; a
        conflicting deposit or adjustment raises (nothing of the batch is written). ``answers=False``
        (the debits' hot path) leaves ``results`` empty."""
        try:
            with self.env.begin(write=True) as txn:
                batch = BatchWrite(self, txn, self._next_seq)
                batch.plan(rows)
                low = batch.write()
                results = batch.results() if answers else []
                if not self._marked:
                    txn.put(_TIME_KEYS, self.legacy_before_ms.to_bytes(8, "big"), db=self._meta)
            self._marked = True
            self._next_seq = batch.next_seq
            self.writes += 1
            if durable:
                self.env.sync(True)
        except lmdb.Error as exc:
            raise self._failed("write", exc) from exc
        return Written(results, low)

    def _failed(self, what: str, exc: lmdb.Error) -> StorageError:
        """The error a failed write or sync is refused with: its map or its disk full is ``store_full``
        for the ``ledger`` store, counted in ``smsroute_store_full_refusals_total`` (the ledger actor logs
        it, once and then a summary: ``storage.full_alarm``); before, a full disk was a bare
        ``storage_error``, uncounted."""
        if isinstance(exc, lmdb.MapFullError) or is_full_disk(exc, self.env.path()):
            return store_full(LEDGER_STORE, logged=False)
        return StorageError(f"the ledger {what} failed: {type(exc).__name__}")

    def ledger_key(self, token: bytes) -> Sealer | None:
        """The account's ledger key; None once it is gone (its identifiers are not written again)."""
        try:
            return self.keys.sealer_for_token(token, LEDGER)
        except KeyUnavailable:
            return None

    def set_threshold(self, account_id: str, threshold_micro_usd: int) -> LowBalance | None:
        """Set the account's low-balance threshold (0: none), fsynced; a :class:`LowBalance` if the
        balance is already below it (reported once, like a crossing)."""
        token = self.keys.token(account_id)
        with self.env.begin(write=True) as txn:
            row, crossed = self.balance_rows.set_threshold(txn, token, threshold_micro_usd)
        self.env.sync(True)
        return LowBalance(account_id, row.balance, row.threshold, 0) if crossed else None

    # --- reading ---------------------------------------------------------------------------------

    def balance(self, account_id: str) -> int:
        """The balance of an account (by its id, or by its pseudonym ``psn_…`` once erased)."""
        return self.balance_row(account_id).balance

    def balance_row(self, account_id: str) -> BalanceRow:
        with self.env.begin() as txn:
            return self.balance_rows.get(txn, self._token(account_id))

    def head(self) -> tuple[int, bytes]:
        """The chain's head: the newest entry's sequence number and link."""
        with self.env.begin() as txn:
            return self.chain.head(txn)

    def has(self, kind: str, reference: str, scope: str = "") -> bool:
        """Whether an item of that natural key is recorded (by the index: what makes writes
        idempotent)."""
        with self.env.begin() as txn:
            return self._index_row(txn, kind, reference, scope) is not None

    def recorded(self, kind: str, reference: str, scope: str = "") -> bool:
        """Whether the index names the item *and* its entry is there (reconciliation: an entry
        deleted from under its index row is not a record of it)."""
        with self.env.begin() as txn:
            raw = self._index_row(txn, kind, reference, scope)
            return raw is not None and txn.get(IndexRow.unpack(raw).seq.to_bytes(8, "big"),
                                               db=self._entries) is not None

    def locate(self, kind: str, reference: str, scope: str = "") -> IndexRow | None:
        """Where the item of that natural key is recorded (entry and position), or None."""
        with self.env.begin() as txn:
            raw = self._index_row(txn, kind, reference, scope)
        return None if raw is None else IndexRow.unpack(raw)

    def find(self, kind: str, reference: str, scope: str = "") -> LedgerEntry | None:
        """The recorded item of that natural key, or None."""
        where = self.locate(kind, reference, scope)
        return None if where is None else self.items(where.seq)[where.item]

    def items(self, seq: int) -> list[LedgerEntry]:
        """The items of entry ``seq`` (``StorageError`` if there is none)."""
        with self.env.begin() as txn:
            return self._items(txn, seq)

    def last_entry(self, kind: str | None = None) -> LedgerEntry | None:
        """The newest item (of ``kind``, if given)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._entries)
            if not cursor.last():
                return None
            for key, value in cursor.iterprev():
                entry = self._open(key, value)
                if kind is None or entry.kind == kind:
                    return self.codec.items(bytes(key), entry)[-1]
        return None

    def entries(self, account_id: str | None = None, since: float = float("-inf"),
                until: float = float("inf")) -> Iterator[LedgerEntry]:
        """Every item, or one account's (by its id or pseudonym), with ``since <= at < until``, in
        sequence order; only the account's own entries are opened."""
        for key, entry in self.sealed_entries(account_id, since, until):
            for item in self.codec.items(key, entry):
                if since <= item.at < until:
                    yield item

    def sealed_entries(self, account_id: str | None = None, since: float = float("-inf"),
                       until: float = float("inf")) -> Iterator[tuple[bytes, Sealed]]:
        """``(key, opened entry)`` in sequence order (of one account, and overlapping the period), read
        in short transactions (``storage.ledger_scan``)."""
        if account_id is None:
            for chunk in chunks(self.env, self._entries):
                for key, value in chunk:
                    yield key, self._open(key, value)
            return
        token = self._token(account_id)
        for chunk in chunks(self.env, self._by_account, token):
            wanted = [k[_T:] for k, span in chunk if _overlaps(SPAN.unpack(span), since, until)]
            with self.env.begin() as txn:
                values = [(key, txn.get(key, db=self._entries)) for key in wanted]
            for key, value in values:
                if value is not None:  # swept meanwhile
                    yield key, self._open(key, value)

    @contextmanager
    def snapshot(self) -> Iterator[LedgerSnapshot]:
        """One read transaction: entries, balances and the index as of one instant."""
        with self.env.begin() as txn:
            yield LedgerSnapshot(self, txn)

    def verify(self, *, authenticate: bool = True) -> ChainReport:
        """Walk the hash chain (and open every entry, unless ``authenticate=False``) in one read
        transaction; report every broken place (``storage.ledger_chain``)."""
        with self.env.begin() as txn:
            opens = self.codec.authenticates if authenticate else None
            return self.chain.verify(txn, txn.cursor(db=self._entries), opens)

    def sync(self) -> None:
        """Make every entry written so far durable (one fsync)."""
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise self._failed("sync", exc) from exc

    # --- erasure and deletion -------------------------------------------------------------------

    def forget_account(self, account_id: str) -> int:
        """Erasure's carve-out: shred the account's ledger key, so the identifiers of all its items
        (every copy) are unreadable, and mark its balance row as belonging to a deleted account.
        Amounts, kinds, times and the pseudonym stay. Returns how many items the account has.

        On a full key disk shredding this one key (its data key still there) needs space to rewrite the
        account's key file: ``StoreFull`` is logged and the erasure goes on, because it queues the shred
        of both keys in the commit that deletes the account (``AccountStore.delete(erasure=True)``), an
        unlink that needs no space."""
        token = self.keys.token(account_id)
        try:
            self.keys.shred_token(token, (LEDGER,))
        except StoreFull:
            log.warning("ledger: an erased account's ledger key cannot be shredded alone (key directory "
                        "full); the erasure shreds it with the account's data key")
            return self._mark_deleted(token)
        return self.account_token_deleted(token)

    def account_deleted(self, account_id: str) -> int:
        """The account's record is gone (erased or swept): its balance row now ends with its last entry.
        Returns how many items it still has."""
        return self.account_token_deleted(self.keys.token(account_id))

    def account_token_deleted(self, token: bytes) -> int:
        """:meth:`account_deleted` by the account's token (the account store knows no more of it)."""
        items = self._mark_deleted(token)
        if not items:
            self.keys.shred_token(token, (LEDGER,))
        return items

    def _mark_deleted(self, token: bytes) -> int:
        with self.env.begin(write=True) as txn:
            items = self.balance_rows.mark_deleted(txn, token)
        self.env.sync(True)
        return items

    def sweep(self, now: float) -> int:
        """Delete entries older than 7 years (policy 6: AML/tax retention), oldest first, moving the
        chain's anchor past them; then the balance row (and ledger key) of each deleted account whose
        last entry that was. An active account keeps its balance row (``carried`` holds what was swept).
        Returns how many items were deleted."""
        cutoff = now - RETENTION_SECONDS
        removed, swept, emptied = 0, {}, []
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._entries)
            anchor = None
            while cursor.first():
                key, value = bytes(cursor.key()), bytes(cursor.value())
                entry = self._open(key, value)
                if max(entry.ats) >= cutoff:
                    break
                for item in range(len(entry.amounts)):
                    txn.delete(entry.natural_key(item), db=self._idem)
                txn.delete(entry.token + key, db=self._by_account)
                cursor.delete()
                seq = int.from_bytes(key, "big")
                anchor = Anchor(seq + 1, self.chain.link(seq, value), max(entry.ats))
                total = swept.setdefault(entry.token, [0, 0])
                total[0] += sum(entry.amounts)
                total[1] += len(entry.amounts)
                removed += len(entry.amounts)
            if anchor is not None:
                self.chain.set_anchor(txn, anchor)
            for token, (amount, n) in swept.items():
                if self.balance_rows.swept(txn, token, amount, n):
                    emptied.append(token)
        for token in emptied:
            self.keys.shred_token(token, (LEDGER,))
        return removed

    # --- decoding -------------------------------------------------------------------------------

    def _token(self, account_id: str) -> bytes:
        if account_id.startswith("psn_") and len(account_id) == 36:
            return bytes.fromhex(account_id[4:])
        return self.keys.token(account_id)

    def _items(self, txn: lmdb.Transaction, seq: int) -> list[LedgerEntry]:
        key = seq.to_bytes(8, "big")
        value = txn.get(key, db=self._entries)
        if value is None:
            raise StorageError(f"ledger entry {seq} is indexed but missing")
        return self.codec.items(key, self._open(key, value))

    def _open(self, key: bytes, value: bytes) -> Sealed:
        return self.codec.open(bytes(key), bytes(value[32:]))


def _overlaps(span: tuple[float, float], since: float, until: float) -> bool:
    return span[1] >= since and span[0] < until
