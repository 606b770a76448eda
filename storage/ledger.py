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

Durability contract: ``write`` writes one batch in one transaction, fsynced when ``durable`` (deposits,
adjustments, refunds). Debits are written with ``durable=False`` (no fsync of their own; the next durable
write or ``sync`` covers them): each POP keeps owing its debits (``storage.owed_debits``) until the ledger
has synced them and said so, so a power loss between the write and the sync loses none. *Writers:* the
ledger actor (entries, thresholds); the sweeper and account deletion (retention, the deleted flag) in
their own transactions, which LMDB serialises. *Readers:* any thread.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import lmdb

from engine.errors import (
    AdjustmentConflict,
    CorruptRecord,
    DepositConflict,
    KeyUnavailable,
    StorageError,
    StoreFull,
)
from storage.account_keys import LEDGER, AccountKeys
from storage.crypto import Sealer
from storage.ledger_chain import Anchor, Chain, ChainReport
from storage.ledger_entries import (
    _INDEX,
    ADJUSTMENT,
    BATCHED,
    DEBIT,
    DEPOSIT,
    KEY_BYTES,
    REFUND,
    EntryCodec,
    IndexRow,
    LedgerEntry,
    Sealed,
)

__all__ = ["ADJUSTMENT", "DEBIT", "DEPOSIT", "REFUND", "RETENTION_SECONDS", "BalanceRow", "LedgerEntry",
           "LedgerSnapshot", "LedgerStore", "LowBalance", "Posting", "Written"]

RETENTION_SECONDS = 7 * 365 * 86400
MAX_ITEMS = 4096  # items per entry (a bigger batch of one account is split)
_BALANCE = struct.Struct(">qQBqq")  # balance, items, flags, carried, threshold
_SPAN = struct.Struct(">dd")  # first and last item time of an entry
_DELETED, _LOW_NOTIFIED = 1, 2
_T = 16  # account token bytes
_CHUNK = 256  # entries read per read transaction by the scans


class Posting(NamedTuple):
    """One row to write (a plain 7-tuple without ``reason`` and ``actor`` is accepted too)."""

    kind: str
    account_id: str
    amount: int  # signed micro-USD
    reference: str
    at: float
    chain: str = ""
    from_address: str = ""
    reason: str = ""
    actor: str = ""


class BalanceRow(NamedTuple):
    balance: int = 0
    items: int = 0
    flags: int = 0
    carried: int = 0  # the sum of the amounts of swept entries
    threshold: int = 0  # low-balance threshold in micro-USD (0: none)

    @property
    def deleted(self) -> bool:
        return bool(self.flags & _DELETED)


class LowBalance(NamedTuple):
    """A write took the account's balance below its threshold (reported once per crossing)."""

    account_id: str
    balance_micro_usd: int
    threshold_micro_usd: int
    seq: int  # the entry that crossed it (0: the threshold was set above the balance)


class Written(NamedTuple):
    results: list[tuple[LedgerEntry, bool]]  # per row: its item, and whether it is new
    low_balance: list[LowBalance]


class _Group:
    """The items of one entry being written."""

    __slots__ = ("seq", "kind", "account_id", "amounts", "ats", "keys", "refs", "fingerprints", "row")

    def __init__(self, seq: int, row: Posting) -> None:
        self.seq, self.kind, self.account_id, self.row = seq, row.kind, row.account_id, row
        self.amounts: list[int] = []
        self.ats: list[float] = []
        self.keys: list[bytes] = []
        self.refs: list[str] = []
        self.fingerprints: list[bytes] = []

    def entry(self, item: int, new: bool = True) -> tuple[LedgerEntry, bool]:
        r = self.row
        return LedgerEntry(self.seq, self.kind, self.account_id, self.amounts[item], self.refs[item],
                           self.ats[item], r.chain, r.from_address, item, r.reason, r.actor), new


class LedgerStore:
    """Encrypted, idempotent, hash-chained ledger entries and the balances they add up to."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, keys: AccountKeys) -> None:
        self.env = env
        self.keys = keys
        self.codec = EntryCodec(sealer, keys)
        self.chain = Chain(env, keys.pseudonyms.subkey("ledger-chain"))
        self._hash_base = hashlib.blake2b(key=keys.pseudonyms.subkey("ledger-natural-key"),
                                          digest_size=KEY_BYTES)  # copied per key: ~0.3 µs
        self._kind_bases = {}
        for kind in BATCHED:
            self._kind_bases[kind] = base = self._hash_base.copy()
            base.update(f"{kind}\x00\x00".encode())
        self._entries = env.open_db(b"ledger")
        self._idem = env.open_db(b"ledger_idempotency")
        self._by_account = env.open_db(b"ledger_by_account")
        self._balances = env.open_db(b"balances")
        self.identifiers_dropped = 0  # items written without identifiers (the account's key was gone)
        with env.begin() as txn:
            self._next_seq = self.chain.head(txn)[0] + 1

    # --- keys ------------------------------------------------------------------------------------

    def natural_key(self, kind: str, reference: str, scope: str = "") -> bytes:
        """The keyed hash an item is found by: ``scope`` is the chain of a deposit, the account of an
        adjustment, empty for debits and refunds."""
        if not scope and kind in self._kind_bases:  # the hot path: the prefix is hashed once
            h = self._kind_bases[kind].copy()
            h.update(reference.encode("utf-8", "surrogatepass"))
            return h.digest()
        h = self._hash_base.copy()
        h.update(f"{kind}\x00{scope}\x00{reference}".encode("utf-8", "surrogatepass"))
        return h.digest()

    def _fingerprint(self, row: Posting) -> bytes:
        h = self._hash_base.copy()
        h.update(f"fp\x00{row.account_id}\x00{row.amount}\x00{row.from_address}\x00{row.reason}"
                 .encode("utf-8", "surrogatepass"))
        return h.digest()

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
                groups, plan = self._plan(txn, rows)
                low = self._write_groups(txn, groups)
                results = self._results(txn, plan) if answers else []
            if groups:
                self._next_seq = groups[-1].seq + 1
            if durable:
                self.env.sync(True)
        except lmdb.MapFullError as exc:
            raise StoreFull("the ledger store is full") from exc
        except lmdb.Error as exc:
            raise StorageError(f"the ledger write failed: {type(exc).__name__}") from exc
        return Written(results, low)

    def _plan(self, txn: lmdb.Transaction, rows: Iterable[Sequence]) -> tuple[list[_Group], list]:
        """Group the new items into entries; find the repeats; refuse conflicts. (Per item on the
        debits' hot path: one keyed hash, one index lookup, a few appends.)"""
        groups: list[_Group] = []
        filling: dict[tuple[str, str], _Group] = {}
        pending: dict[bytes, tuple[_Group, int]] = {}
        plan: list = []  # per row: (group, item, new) or an IndexRow of a recorded item
        seq, get, idem = self._next_seq, txn.get, self._idem
        for row in rows:
            kind, account_id, amount, ref, at = row[:5]
            batched = kind in BATCHED
            if batched:
                key, fingerprint = self.natural_key(kind, ref), b""
            else:
                row = Posting(*row)
                scope = row.chain if kind == DEPOSIT else account_id
                key, fingerprint = self.natural_key(kind, ref, scope), self._fingerprint(row)
            if (hit := pending.get(key)) is not None:
                _check(row, hit[0].fingerprints[hit[1]], fingerprint)
                plan.append((hit[0], hit[1], False))
                continue
            if (raw := get(key, db=idem)) is not None:
                found = IndexRow.unpack(raw)
                _check(row, found.fingerprint, fingerprint)
                plan.append(found)
                continue
            group = filling.get((kind, account_id)) if batched else None
            if group is None or len(group.amounts) >= MAX_ITEMS:
                group = _Group(seq, row if not batched else Posting(kind, account_id, 0, "", 0.0))
                seq += 1
                groups.append(group)
                if batched:
                    filling[(kind, account_id)] = group
            item = len(group.amounts)
            group.amounts.append(amount)
            group.ats.append(at)
            group.keys.append(key)
            group.refs.append(ref)
            group.fingerprints.append(fingerprint)
            pending[key] = (group, item)
            plan.append((group, item, True))
        return groups, plan

    def _write_groups(self, txn: lmdb.Transaction, groups: list[_Group]) -> list[LowBalance]:
        if not groups:
            return []
        prev = self.chain.head(txn)[1]
        deltas: dict[bytes, list] = {}  # token -> [amount, items, account id, last seq]
        ledger_keys: dict[bytes, Sealer | None] = {}  # one key-cache lookup per account and batch
        for g in groups:
            key = g.seq.to_bytes(8, "big")
            token = self.keys.token(g.account_id)
            if token not in ledger_keys:
                ledger_keys[token] = self._ledger_key(token)
            r = g.row
            idents = self.codec.seal_identifiers(ledger_keys[token], key, g.account_id, g.refs, r.chain,
                                                 r.from_address, r.reason)
            if not idents:
                self.identifiers_dropped += len(g.amounts)
            sealed = self.codec.seal(key, Sealed(g.kind, token, g.amounts, g.ats, b"".join(g.keys),
                                                 idents, r.actor))
            value = prev + sealed
            prev = self.chain.link(g.seq, value)
            txn.put(key, value, db=self._entries, append=True)
            pack, put, idem = _INDEX.pack, txn.put, self._idem
            for item, (nk, fp) in enumerate(zip(g.keys, g.fingerprints, strict=True)):
                put(nk, pack(g.seq, item) + fp, db=idem)
            txn.put(token + key, _SPAN.pack(min(g.ats), max(g.ats)), db=self._by_account)
            delta = deltas.setdefault(token, [0, 0, g.account_id, 0])
            delta[0] += sum(g.amounts)
            delta[1] += len(g.amounts)
            delta[3] = g.seq
        self.chain.set_head(txn, groups[-1].seq, prev)
        low = []
        for token, (amount, count, account_id, seq) in deltas.items():  # one balance write per account
            row = self._balance_row(txn, token)
            row, crossed = _crossing(row._replace(balance=row.balance + amount, items=row.items + count))
            txn.put(token, _BALANCE.pack(*row), db=self._balances)
            if crossed:
                low.append(LowBalance(account_id, row.balance, row.threshold, seq))
        return low

    def _results(self, txn: lmdb.Transaction, plan: list) -> list[tuple[LedgerEntry, bool]]:
        out: list[tuple[LedgerEntry, bool]] = []
        opened: dict[int, list[LedgerEntry]] = {}
        for step in plan:
            if isinstance(step, IndexRow):
                if step.seq not in opened:
                    opened[step.seq] = self._items(txn, step.seq)
                out.append((opened[step.seq][step.item], False))
            else:
                group, item, new = step
                out.append(group.entry(item, new))
        return out

    def _ledger_key(self, token: bytes) -> Sealer | None:
        try:
            return self.keys.sealer_for_token(token, LEDGER)
        except KeyUnavailable:
            return None  # erased (or past retention): its identifiers must not be written again

    def set_threshold(self, account_id: str, threshold_micro_usd: int) -> LowBalance | None:
        """Set the account's low-balance threshold (0: none), fsynced; a :class:`LowBalance` if the
        balance is already below it (reported once, like a crossing)."""
        token = self.keys.token(account_id)
        with self.env.begin(write=True) as txn:
            row, crossed = _crossing(self._balance_row(txn, token)._replace(
                threshold=max(0, threshold_micro_usd)))
            txn.put(token, _BALANCE.pack(*row), db=self._balances)
        self.env.sync(True)
        return LowBalance(account_id, row.balance, row.threshold, 0) if crossed else None

    # --- reading ---------------------------------------------------------------------------------

    def balance(self, account_id: str) -> int:
        """The balance of an account (by its id, or by its pseudonym ``psn_…`` once erased)."""
        return self.balance_row(account_id).balance

    def balance_row(self, account_id: str) -> BalanceRow:
        with self.env.begin() as txn:
            return self._balance_row(txn, self._token(account_id))

    def balances(self) -> Iterator[tuple[bytes, BalanceRow]]:
        """Every balance row by account token (reconciliation)."""
        with self.env.begin() as txn:
            rows = [(bytes(k), BalanceRow(*_BALANCE.unpack(v))) for k, v in
                    txn.cursor(db=self._balances)]
        yield from rows

    def head(self) -> tuple[int, bytes]:
        """The chain's head: the newest entry's sequence number and link."""
        with self.env.begin() as txn:
            return self.chain.head(txn)

    def has(self, kind: str, reference: str, scope: str = "") -> bool:
        """Whether an item of that natural key is recorded (by the index: what makes writes
        idempotent)."""
        with self.env.begin() as txn:
            return txn.get(self.natural_key(kind, reference, scope), db=self._idem) is not None

    def recorded(self, kind: str, reference: str, scope: str = "") -> bool:
        """Whether the index names the item *and* its entry is there (reconciliation: an entry
        deleted from under its index row is not a record of it)."""
        with self.env.begin() as txn:
            raw = txn.get(self.natural_key(kind, reference, scope), db=self._idem)
            return raw is not None and txn.get(IndexRow.unpack(raw).seq.to_bytes(8, "big"),
                                               db=self._entries) is not None

    def locate(self, kind: str, reference: str, scope: str = "") -> IndexRow | None:
        """Where the item of that natural key is recorded (entry and position), or None."""
        with self.env.begin() as txn:
            raw = txn.get(self.natural_key(kind, reference, scope), db=self._idem)
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
        in short transactions of ``_CHUNK`` entries (a long export never pins old pages for long)."""
        if account_id is None:
            for chunk in self._chunks(self._entries, b""):
                for key, value in chunk:
                    yield key, self._open(key, value)
            return
        token = self._token(account_id)
        for chunk in self._chunks(self._by_account, token):
            wanted = [k[_T:] for k, span in chunk if _overlaps(_SPAN.unpack(span), since, until)]
            with self.env.begin() as txn:
                values = [(key, txn.get(key, db=self._entries)) for key in wanted]
            for key, value in values:
                if value is not None:  # swept meanwhile
                    yield key, self._open(key, value)

    def _chunks(self, db, prefix: bytes) -> Iterator[list[tuple[bytes, bytes]]]:
        start = prefix
        while True:
            with self.env.begin() as txn:
                cursor = txn.cursor(db=db)
                chunk: list[tuple[bytes, bytes]] = []
                if cursor.set_range(start):
                    for key, value in cursor:
                        if not key.startswith(prefix) or len(chunk) == _CHUNK:
                            break
                        chunk.append((bytes(key), bytes(value)))
            if chunk:
                yield chunk
            if len(chunk) < _CHUNK:
                return
            start = chunk[-1][0] + b"\x00"

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
            raise StorageError(f"the ledger sync failed: {type(exc).__name__}") from exc

    # --- erasure and deletion -------------------------------------------------------------------

    def forget_account(self, account_id: str) -> int:
        """Erasure's carve-out: shred the account's ledger key, so the identifiers of all its items
        (every copy) are unreadable, and mark its balance row as belonging to a deleted account.
        Amounts, kinds, times and the pseudonym stay. Returns how many items the account has."""
        self.keys.shred(account_id, (LEDGER,))
        return self.account_deleted(account_id)

    def account_deleted(self, account_id: str) -> int:
        """The account's record is gone (erased or swept): its balance row now ends with its last entry.
        Returns how many items it still has."""
        token = self.keys.token(account_id)
        with self.env.begin(write=True) as txn:
            row = self._balance_row(txn, token)
            if row.items:
                txn.put(token, _BALANCE.pack(*row._replace(flags=row.flags | _DELETED)),
                        db=self._balances)
            else:
                txn.delete(token, db=self._balances)
        self.env.sync(True)
        if not row.items:
            self.keys.shred_token(token, (LEDGER,))
        return row.items

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
                row = self._balance_row(txn, token)
                row = row._replace(items=max(0, row.items - n), carried=row.carried + amount)
                if row.items == 0 and row.deleted:
                    txn.delete(token, db=self._balances)
                    emptied.append(token)
                else:
                    txn.put(token, _BALANCE.pack(*row), db=self._balances)
        for token in emptied:
            self.keys.shred_token(token, (LEDGER,))
        return removed

    # --- decoding -------------------------------------------------------------------------------

    def _token(self, account_id: str) -> bytes:
        if account_id.startswith("psn_") and len(account_id) == 36:
            return bytes.fromhex(account_id[4:])
        return self.keys.token(account_id)

    def _balance_row(self, txn: lmdb.Transaction, token: bytes) -> BalanceRow:
        raw = txn.get(token, db=self._balances)
        return BalanceRow(*_BALANCE.unpack(raw)) if raw is not None else BalanceRow()

    def _items(self, txn: lmdb.Transaction, seq: int) -> list[LedgerEntry]:
        key = seq.to_bytes(8, "big")
        value = txn.get(key, db=self._entries)
        if value is None:
            raise StorageError(f"ledger entry {seq} is indexed but missing")
        return self.codec.items(key, self._open(key, value))

    def _open(self, key: bytes, value: bytes) -> Sealed:
        return self.codec.open(bytes(key), bytes(value[32:]))


class LedgerSnapshot:
    """The ledger as of one read transaction (reconciliation reads entries and balances together)."""

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
        for token, raw in self._txn.cursor(db=self._store._balances):
            yield bytes(token), BalanceRow(*_BALANCE.unpack(raw))

    def index_row(self, natural_key: bytes) -> IndexRow | None:
        """Where the item with this natural key is recorded."""
        raw = self._txn.get(natural_key, db=self._store._idem)
        return None if raw is None else IndexRow.unpack(raw)


def _overlaps(span: tuple[float, float], since: float, until: float) -> bool:
    return span[1] >= since and span[0] < until


def _check(row: Posting, recorded: bytes, fingerprint: bytes) -> None:
    """Refuse a deposit or adjustment whose key is recorded with other details."""
    if recorded == fingerprint:
        return
    if row.kind == DEPOSIT:
        raise DepositConflict(f"transaction {row.reference!r} on {row.chain!r} is already recorded with "
                              "another amount, account or from-address")
    raise AdjustmentConflict(f"adjustment key {row.reference!r} is already used with another amount "
                             "or reason")  # (debits and refunds have no fingerprint: never here)


def _crossing(row: BalanceRow) -> tuple[BalanceRow, bool]:
    """The row with its low-balance flag brought up to date, and whether it just crossed below."""
    if row.threshold > 0 and row.balance < row.threshold:
        if row.flags & _LOW_NOTIFIED:
            return row, False
        return row._replace(flags=row.flags | _LOW_NOTIFIED), True
    return row._replace(flags=row.flags & ~_LOW_NOTIFIED), False

