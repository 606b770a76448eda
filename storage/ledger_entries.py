"""What one ledger entry is on disk, and how it is sealed and opened (``storage.ledger`` writes them).

An *entry* is one sealed value under one sequence number, and holds one or more *items* — the rows an
auditor reads (:class:`LedgerEntry`): a batch of one account's debits (or refunds) written together is one
entry of many items; a deposit or an adjustment is an entry of one item. Sealed under the ledger's store
key (AES-256-GCM, the sequence number as associated data), an entry is the msgpack array::

    [format, kind, account token, [amount per item], [time per item], natural keys, identifiers, actor]

* *account token* — the keyed HMAC of the account id (``storage.pseudonyms``), never the id.
* *natural keys* — the items' idempotency keys, 16 bytes each, concatenated: keyed BLAKE2b of
  ``(kind, scope, reference)``; the sweep deletes the index rows they name.
* *identifiers* — ``[account id, [reference per item], chain, from-address, reason]`` sealed once more
  under the account's **ledger key** (``storage.account_keys``), or empty once that key is gone. The
  reference is a message id (debits, refunds), a transaction hash (deposits) or the operator's
  idempotency key (adjustments); the reason is an adjustment's.
* *actor* — who made an adjustment (the operator token's name, or ``embedding-api``); empty otherwise.

Every item's index row (``ledger_idempotency``) is ``seq (8) | item (2) | fingerprint (16, deposits and
adjustments only)``: the fingerprint is a keyed hash of what the item says (account, amount, from-address or
reason), so a replay is told from a conflicting reuse of the same natural key without opening anything.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import msgpack

from engine.errors import CorruptRecord, KeyUnavailable
from storage.account_keys import LEDGER, AccountKeys
from storage.crypto import Sealer
from storage.pseudonyms import token_text

__all__ = ["ADJUSTMENT", "BATCHED", "DEBIT", "DEPOSIT", "KINDS", "REFUND", "EntryCodec", "IndexRow",
           "LedgerEntry", "Sealed"]

DEBIT, DEPOSIT, REFUND, ADJUSTMENT = "debit", "deposit", "refund", "adjustment"
KINDS = (DEBIT, DEPOSIT, REFUND, ADJUSTMENT)
BATCHED = frozenset({DEBIT, REFUND})  # one entry per account per batch; the others one entry each
KEY_BYTES = 16  # natural keys and fingerprints
_FORMAT = 1
_INDEX = struct.Struct(">QH")


class LedgerEntry(NamedTuple):
    """One item of the ledger, as callers read it."""

    seq: int  # the sealed entry that holds the item
    kind: str  # debit | deposit | refund | adjustment
    account_id: str  # the account id; its pseudonym (psn_…) once the identifiers are shredded
    amount_micro_usd: int  # signed: what it did to the balance (debits negative)
    reference: str  # message id, tx hash or adjustment key ("" once shredded)
    at: float
    chain: str = ""
    from_address: str = ""  # the deposit's from-address (policy 2.1: accounting and fraud detection)
    item: int = 0  # the item's position in its entry
    reason: str = ""  # an adjustment's reason ("" once shredded)
    actor: str = ""  # who made an adjustment


class Sealed(NamedTuple):
    """An opened entry (identifiers still sealed under the account's ledger key)."""

    kind: str
    token: bytes
    amounts: list[int]
    ats: list[float]
    natural_keys: bytes
    identifiers: bytes
    actor: str

    def natural_key(self, item: int) -> bytes:
        return self.natural_keys[item * KEY_BYTES:(item + 1) * KEY_BYTES]


class IndexRow(NamedTuple):
    seq: int
    item: int
    fingerprint: bytes

    def pack(self) -> bytes:
        return _INDEX.pack(self.seq, self.item) + self.fingerprint

    @classmethod
    def unpack(cls, raw: bytes) -> IndexRow:
        seq, item = _INDEX.unpack_from(raw)
        return cls(seq, item, bytes(raw[_INDEX.size:]))


class EntryCodec:
    """Seals and opens entries under the store key, and their identifiers under account ledger keys."""

    def __init__(self, sealer: Sealer, keys: AccountKeys) -> None:
        self._sealer = sealer
        self.keys = keys

    def seal(self, key: bytes, entry: Sealed) -> bytes:
        return self._sealer.seal(msgpack.packb([_FORMAT, *entry]), key)

    def open(self, key: bytes, sealed: bytes) -> Sealed:
        """The entry stored (after its chain link) under ``key``; ``CorruptRecord`` if it does not
        authenticate or decode."""
        try:
            fmt, *fields = msgpack.unpackb(self._sealer.open(sealed, key))
            if fmt != _FORMAT:
                raise ValueError(f"unknown entry format {fmt}")
            return Sealed(*fields)
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"ledger entry {int.from_bytes(key, 'big')} does not decode") from exc

    def authenticates(self, key: bytes, sealed: bytes) -> bool:
        try:
            self._sealer.open(sealed, key)
            return True
        except CorruptRecord:
            return False

    @staticmethod
    def seal_identifiers(ledger_key: Sealer | None, key: bytes, account_id: str, refs: list[str],
                         chain: str, from_address: str, reason: str) -> bytes:
        """The identifiers sealed under the account's ledger key (``b""`` if the key is gone)."""
        if ledger_key is None:
            return b""
        return ledger_key.seal(msgpack.packb([account_id, refs, chain, from_address, reason]), key)

    def identifiers(self, key: bytes, entry: Sealed) -> tuple[str, list[str], str, str, str] | None:
        """``(account id, refs, chain, from-address, reason)``; None once the ledger key is gone."""
        if not entry.identifiers:
            return None
        try:
            sealer = self.keys.sealer_for_token(entry.token, LEDGER)
        except KeyUnavailable:
            return None  # shredded: the entry is pseudonymous from now on
        account_id, refs, chain, address, reason = msgpack.unpackb(sealer.open(entry.identifiers, key))
        return account_id, refs, chain, address, reason

    def items(self, key: bytes, entry: Sealed) -> list[LedgerEntry]:
        """The entry's items, with identifiers where the account's ledger key still opens them."""
        seq = int.from_bytes(key, "big")
        idents = self.identifiers(key, entry)
        if idents is None:
            account_id, refs, chain, address, reason = token_text(entry.token), None, "", "", ""
        else:
            account_id, refs, chain, address, reason = idents
        return [LedgerEntry(seq, entry.kind, account_id, amount, refs[i] if refs else "", at, chain,
                            address, i, reason, entry.actor)
                for i, (amount, at) in enumerate(zip(entry.amounts, entry.ats, strict=True))]
