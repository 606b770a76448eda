"""One write to the ledger, inside its transaction: what ``storage.ledger.LedgerStore.write`` does.

1. **Plan** (:meth:`BatchWrite.plan`): each row's natural key is looked up — in the batch so far, then in
   the index. A repeat writes nothing and answers with the recorded item; a deposit or adjustment whose
   key is recorded with another fingerprint (account, amount, from-address or reason) raises
   ``DepositConflict`` / ``AdjustmentConflict``, which aborts the transaction: nothing of the batch is
   written. New items are grouped into entries: one per account and kind for debits and refunds (at most
   ``MAX_ITEMS`` each), one per deposit or adjustment.
2. **Write** (:meth:`BatchWrite.write`): per entry, the identifiers are sealed under the account's ledger
   key and the entry under the store key, chained to the one before, and put with one index row per item
   and one row in the account's index; the head moves; each account's balance row is updated once, and a
   balance that just went below its threshold is reported (``storage.ledger_balances``).

The debits' hot path costs per message one keyed BLAKE2b (the kind's prefix hashed once), one index
lookup, one index put and a few list appends; per account and batch one seal of each kind, one chain link
and one balance write.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import lmdb

from engine.errors import AdjustmentConflict, DepositConflict
from storage.crypto import Sealer
from storage.ledger_balances import LowBalance
from storage.ledger_entries import (
    _INDEX,
    BATCHED,
    DEPOSIT,
    KEY_BYTES,
    IndexRow,
    LedgerEntry,
    Sealed,
)

if TYPE_CHECKING:
    from storage.ledger import LedgerStore

__all__ = ["MAX_ITEMS", "SPAN", "BatchWrite", "NaturalKeys", "Posting", "Written"]

MAX_ITEMS = 4096  # items per entry (a bigger batch of one account is split)
BUCKET_SHIFT = 6  # a debit's or refund's index key starts with its message's time in 64 ms buckets
_BUCKET_BYTES = 6
SPAN = struct.Struct(">dd")  # an account index row: the first and last item time of the entry


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


class Written(NamedTuple):
    results: list[tuple[LedgerEntry, bool]]  # per row: its item, and whether it is new
    low_balance: list[LowBalance]


class NaturalKeys:
    """Keyed BLAKE2b-128 of natural keys and fingerprints (the key: a sub-key of the pseudonym secret)."""

    def __init__(self, key: bytes) -> None:
        self._base = hashlib.blake2b(key=key, digest_size=KEY_BYTES)  # copied per use: ~0.3 µs
        self._kinds = {}
        for kind in BATCHED:  # debits and refunds have no scope: their prefix is hashed once
            self._kinds[kind] = prefixed = self._base.copy()
            prefixed.update(f"{kind}\x00\x00".encode())

    def of(self, kind: str, reference: str, scope: str = "") -> bytes:
        """``scope``: the chain of a deposit, the account of an adjustment, empty otherwise.

        The key of a debit or refund of a message id starts with the message's creation time (64 ms
        buckets, :func:`message_bucket`) in place of the hash's first bytes: message ids are
        time-ordered, so the index rows one debit write adds land side by side in a few B-tree pages
        instead of one random page each. With random keys every write of ~1,000 debits copied and
        wrote ~1,000 pages of the index (4 KiB per debit, about half of the ledger's CPU, and the fsync
        wrote them all). The rest of the key is the keyed hash, 80 bits of it."""
        prefixed = None if scope else self._kinds.get(kind)
        if prefixed is None:
            h = self._base.copy()
            h.update(f"{kind}\x00{scope}\x00{reference}".encode("utf-8", "surrogatepass"))
            return h.digest()
        h = prefixed.copy()
        h.update(reference.encode("utf-8", "surrogatepass"))
        bucket = message_bucket(reference)
        if bucket is None:
            return h.digest()
        return bucket.to_bytes(_BUCKET_BYTES, "big") + h.digest()[_BUCKET_BYTES:]

    def legacy_of(self, kind: str, reference: str) -> bytes:
        """The key a debit or refund had before keys were time-ordered (the plain keyed hash): what
        :meth:`storage.ledger.LedgerStore.legacy_row` looks for in a ledger written before."""
        h = self._kinds[kind].copy()
        h.update(reference.encode("utf-8", "surrogatepass"))
        return h.digest()

    def fingerprint(self, row: Posting) -> bytes:
        """What a deposit or adjustment says beyond its key (a replay must say the same)."""
        h = self._base.copy()
        h.update(f"fp\x00{row.account_id}\x00{row.amount}\x00{row.from_address}\x00{row.reason}"
                 .encode("utf-8", "surrogatepass"))
        return h.digest()


def message_bucket(reference: str) -> int | None:
    """The 64 ms bucket of a message id's creation time (its first 12 hex digits), or None for a
    reference that is no message id."""
    if len(reference) != 36 or not reference.startswith("msg_"):
        return None
    try:
        ms = int.from_bytes(bytes.fromhex(reference[4:16]), "big")
    except ValueError:
        return None
    return ms >> BUCKET_SHIFT


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


class BatchWrite:
    """One batch, planned and written inside the ledger's write transaction ``txn``."""

    def __init__(self, store: LedgerStore, txn: lmdb.Transaction, next_seq: int) -> None:
        self.store, self.txn, self.next_seq = store, txn, next_seq
        self.groups: list[_Group] = []
        self.steps: list = []  # per row: (group, item, new) or the IndexRow of a recorded item

    def plan(self, rows: Iterable[Sequence]) -> None:
        keys, get, idem = self.store.natural_keys, self.txn.get, self.store._idem
        legacy = self.store.legacy_row if self.store.legacy_before_ms else None
        filling: dict[tuple[str, str], _Group] = {}
        pending: dict[bytes, tuple[_Group, int]] = {}
        for row in rows:
            kind, account_id, amount, ref, at = row[:5]
            batched = kind in BATCHED
            if batched:
                key, fingerprint = keys.of(kind, ref), b""
            else:
                row = Posting(*row)
                key = keys.of(kind, ref, row.chain if kind == DEPOSIT else account_id)
                fingerprint = keys.fingerprint(row)
            if (hit := pending.get(key)) is not None:
                _check(row, hit[0].fingerprints[hit[1]], fingerprint)
                self.steps.append((hit[0], hit[1], False))
                continue
            raw = get(key, db=idem)
            if raw is None and legacy is not None and batched:
                raw = legacy(self.txn, kind, ref)
            if raw is not None:
                found = IndexRow.unpack(raw)
                _check(row, found.fingerprint, fingerprint)
                self.steps.append(found)
                continue
            group = filling.get((kind, account_id)) if batched else None
            if group is None or len(group.amounts) >= MAX_ITEMS:
                group = self._new_group(row if not batched else Posting(kind, account_id, 0, "", 0.0))
                if batched:
                    filling[(kind, account_id)] = group
            item = len(group.amounts)
            group.amounts.append(amount)
            group.ats.append(at)
            group.keys.append(key)
            group.refs.append(ref)
            group.fingerprints.append(fingerprint)
            pending[key] = (group, item)
            self.steps.append((group, item, True))

    def _new_group(self, row: Posting) -> _Group:
        group = _Group(self.next_seq, row)
        self.next_seq += 1
        self.groups.append(group)
        return group

    def write(self) -> list[LowBalance]:
        """Put every planned entry, chained; update the balances; the accounts that went low."""
        if not self.groups:
            return []
        store, txn = self.store, self.txn
        prev = store.chain.head(txn)[1]
        deltas: dict[bytes, list] = {}  # token -> [amount, items, account id, last seq]
        ledger_keys: dict[bytes, Sealer | None] = {}  # one key-cache lookup per account and batch
        for g in self.groups:
            token = store.keys.token(g.account_id)
            if token not in ledger_keys:
                ledger_keys[token] = store.ledger_key(token)
            prev = self._put_entry(g, token, ledger_keys[token], prev)
            delta = deltas.setdefault(token, [0, 0, g.account_id, 0])
            delta[0] += sum(g.amounts)
            delta[1] += len(g.amounts)
            delta[3] = g.seq
        store.chain.set_head(txn, self.groups[-1].seq, prev)
        low = []
        for token, (amount, count, account_id, seq) in deltas.items():  # one balance write per account
            row, crossed = store.balance_rows.add(txn, token, amount, count)
            if crossed:
                low.append(LowBalance(account_id, row.balance, row.threshold, seq))
        return low

    def _put_entry(self, g: _Group, token: bytes, ledger_key: Sealer | None, prev: bytes) -> bytes:
        """Seal and put one entry, its index rows and its account index row; returns its link."""
        store, put = self.store, self.txn.put
        key = g.seq.to_bytes(8, "big")
        r = g.row
        idents = store.codec.seal_identifiers(ledger_key, key, g.account_id, g.refs, r.chain,
                                              r.from_address, r.reason)
        if not idents:
            store.identifiers_dropped += len(g.amounts)
        sealed = store.codec.seal(key, Sealed(g.kind, token, g.amounts, g.ats, b"".join(g.keys), idents,
                                              r.actor))
        value = prev + sealed
        put(key, value, db=store._entries, append=True)
        pack, idem = _INDEX.pack, store._idem
        for item, (nk, fp) in enumerate(zip(g.keys, g.fingerprints, strict=True)):
            put(nk, pack(g.seq, item) + fp, db=idem)
        put(token + key, SPAN.pack(min(g.ats), max(g.ats)), db=store._by_account)
        return store.chain.link(g.seq, value)

    def results(self) -> list[tuple[LedgerEntry, bool]]:
        """Each row's item (new, or the recorded one it repeats) and whether it is new."""
        out: list[tuple[LedgerEntry, bool]] = []
        opened: dict[int, list[LedgerEntry]] = {}
        for step in self.steps:
            if isinstance(step, IndexRow):
                if step.seq not in opened:
                    opened[step.seq] = self.store._items(self.txn, step.seq)
                out.append((opened[step.seq][step.item], False))
            else:
                group, item, new = step
                out.append(group.entry(item, new))
        return out


def _check(row: Sequence, recorded: bytes, fingerprint: bytes) -> None:
    """Refuse a deposit or adjustment whose key is recorded with other details (debits and refunds have
    no fingerprint: they always pass)."""
    if recorded == fingerprint:
        return
    if row[0] == DEPOSIT:
        raise DepositConflict(f"transaction {row[3]!r} on {row[5]!r} is already recorded with another "
                              "amount, account or from-address")
    raise AdjustmentConflict(f"adjustment key {row[3]!r} is already used with another amount or reason")
