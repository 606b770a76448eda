"""Reconciliation: do the message records and the ledger tell the same story?

Checked, in two walks:

1. **The ledger** (one read transaction, so entries and balances are one consistent snapshot): every
   account's balance equals what was swept from it (``carried``) plus the sum of its items; every item is
   the one its natural key's index row points at (an item the index does not name is a *duplicate*: the
   same message debited or refunded twice, or a deposit credited twice); every debit and refund of the
   last 90 days has its message record, at the price charged (a debit) or the amount refunded (a refund).
2. **The message records** of every POP shard: each has exactly one debit, and a refund when it says it
   was refunded — unless that debit or refund is still owed by its POP and not in the index yet
   (``storage.owed_debits``, ``storage.refunds``: the POP sends it until the ledger confirms it, also
   after a crash). An owed debit whose index row exists but whose entry is gone is a difference: sending
   it again would write nothing.

The records are read through ``shards`` (``engine.cluster.shards``): this process's POP stores, or every
worker's in a cluster; record lookups go in chunks of ``LOOKUP_CHUNK`` messages. Without ``shards`` (the
data directory of a cluster's core, which holds no POP store) only the ledger's own checks run.

What cannot be checked is counted, not reported: items of erased accounts (their message ids are
shredded), debits and refunds older than the records' 90 days (the records are swept), records newer than
``cutoff`` (a running engine may not have billed them yet).

On a running engine the two walks are not one snapshot: before it starts, the caller lets the ledger write
what is queued (``sync``), and every missing debit or refund found is looked up once more after another
``sync``, so only differences that persist are reported. Memory stays bounded: one running sum per
account, and the records are read in chunks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.errors import CorruptRecord
from storage.ledger import DEBIT, REFUND, LedgerSnapshot, LedgerStore
from storage.ledger_entries import Sealed
from storage.pseudonyms import token_text
from storage.records import RETENTION_SECONDS as RECORD_RETENTION_SECONDS
from storage.records import MessageRecord

RECORD_SLACK_SECONDS = 86400.0  # debits this close to the records' 90 days are not looked up
CUTOFF_SECONDS = 1.0  # on a running engine: records younger than this are not checked
MAX_LISTED = 10_000  # differences listed in one report (the rest only counted)
LOOKUP_CHUNK = 500  # message records asked for at once


class Cancelled(Exception):
    """The engine stopped while a reconciliation ran (it is abandoned, not reported)."""


@dataclass(frozen=True)
class Difference:
    """One disagreement. ``kind``: ``balance_mismatch``, ``message_without_debit``,
    ``duplicate_debit``, ``debit_without_message``, ``debit_amount_mismatch``, ``refund_missing``,
    ``duplicate_refund``, ``refund_without_message``, ``refund_amount_mismatch``, ``duplicate_deposit``,
    ``duplicate_adjustment``, ``unindexed_item``, ``unreadable_entry``."""

    kind: str
    account: str  # the account id, or its pseudonym (psn_…) where the identifiers are shredded
    message_id: str = ""
    expected: int | None = None  # micro-USD, where amounts disagree
    found: int | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


@dataclass
class Reconciliation:
    started_at: float
    finished_at: float = 0.0
    records_checked: bool = True  # False: no POP store to read (a cluster core's data directory)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("ledger_items", "accounts", "records", "records_too_recent", "items_pseudonymous",
         "items_past_record_retention", "debits_owed", "refunds_owed"), 0))
    differences: list[Difference] = field(default_factory=list)
    differences_total: int = 0

    @property
    def ok(self) -> bool:
        return self.differences_total == 0

    def add(self, difference: Difference) -> None:
        self.differences_total += 1
        if len(self.differences) < MAX_LISTED:
            self.differences.append(difference)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "started_at": self.started_at, "finished_at": self.finished_at,
                "records_checked": self.records_checked, "counts": dict(self.counts),
                "differences_total": self.differences_total,
                "differences": [d.as_dict() for d in self.differences]}


def reconcile(ledger: LedgerStore, shards: Any | None, *, now: float | None = None,
              cutoff: float | None = None, sync: Callable[[], None] | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> Reconciliation:
    """Reconcile ``ledger`` with the records of ``shards`` (``find_records``, ``scan_records``,
    ``owed_to_ledger``; None: the ledger's own checks only).

    ``cutoff``: records submitted at or after it are not checked (default: ``now`` on a stopped
    engine; pass ``now - CUTOFF_SECONDS`` and ``sync`` on a running one)."""
    now = time.time() if now is None else now
    report = Reconciliation(started_at=now, records_checked=shards is not None)
    if sync is not None:
        sync()
    horizon = now - RECORD_RETENTION_SECONDS + RECORD_SLACK_SECONDS
    _walk_ledger(ledger, shards, report, horizon, cancelled)
    if shards is not None:
        suspects = _walk_records(ledger, shards, report, now if cutoff is None else cutoff, cancelled)
        if suspects and sync is not None:
            sync()
        _report_suspects(ledger, shards, report, suspects)
    report.finished_at = time.time()
    return report


def _report_suspects(ledger: LedgerStore, shards: Any, report: Reconciliation,
                     suspects: list[tuple[str, MessageRecord]]) -> None:
    """The records' second look: what is still missing, and not owed by a POP, is a difference."""
    owed_debits, owed_refunds = (set(ids) for ids in shards.owed_to_ledger())
    report.counts["debits_owed"], report.counts["refunds_owed"] = len(owed_debits), len(owed_refunds)
    for kind, rec in suspects:
        mid = rec.message_id
        if kind == "message_without_debit":
            if ledger.recorded(DEBIT, mid) or (mid in owed_debits and not ledger.has(DEBIT, mid)):
                continue  # written since, or its POP sends it again until the ledger confirms it
            report.add(Difference(kind, rec.account_id, mid, rec.price_micro_usd, None,
                                  "a durable message record has no debit"))
        elif mid not in owed_refunds and not ledger.recorded(REFUND, mid):
            report.add(Difference(kind, rec.account_id, mid, rec.refunded_micro_usd, None,
                                  "the record says refunded, the ledger has no refund"))


def _walk_ledger(ledger: LedgerStore, shards: Any | None, report: Reconciliation,
                 horizon: float, cancelled: Callable[[], bool]) -> None:
    sums: dict[bytes, int] = {}
    names: dict[bytes, str] = {}  # token -> account id, where an entry's identifiers still open
    lookups: list[tuple[str, str, str, int]] = []  # (kind, account, message id, amount) to check
    with ledger.snapshot() as snap:
        for n, (key, entry) in enumerate(snap.entries()):
            if n % 256 == 0 and cancelled():
                raise Cancelled()
            if isinstance(entry, CorruptRecord):
                report.add(Difference("unreadable_entry", "", detail=f"ledger entry "
                                      f"{int.from_bytes(key, 'big')} does not open (smsroute ledger "
                                      "verify names what was changed); its account's balance cannot "
                                      "match"))
                continue
            sums[entry.token] = sums.get(entry.token, 0) + sum(entry.amounts)
            report.counts["ledger_items"] += len(entry.amounts)
            name = _check_items(ledger, snap, key, entry, report, horizon, lookups)
            if name:
                names[entry.token] = name
            if shards is not None and len(lookups) >= LOOKUP_CHUNK:
                _check_against_records(shards, lookups, report)
        for token, row in snap.balances():
            report.counts["accounts"] += 1
            expected = row.carried + sums.pop(token, 0)
            if row.balance != expected:
                report.add(Difference("balance_mismatch", names.get(token, token_text(token)), "",
                                      expected, row.balance,
                                      "the balance is not what was swept plus the sum of the entries"))
    if shards is not None:
        _check_against_records(shards, lookups, report)
    for token, total in sums.items():
        report.add(Difference("balance_mismatch", names.get(token, token_text(token)), "", total, None,
                              "entries without a balance row"))


def _check_items(ledger: LedgerStore, snap: LedgerSnapshot, key: bytes, entry: Sealed,
                 report: Reconciliation, horizon: float,
                 lookups: list[tuple[str, str, str, int]]) -> str:
    """Each item is the one its index names; debits and refunds of the records' period go to
    ``lookups``. Returns the account id ("" where the identifiers are shredded)."""
    seq = int.from_bytes(key, "big")
    idents = ledger.codec.identifiers(key, entry)
    account = idents[0] if idents else token_text(entry.token)
    refs = idents[1] if idents else [""] * len(entry.amounts)
    billing = entry.kind in (DEBIT, REFUND)
    for item, (amount, at, ref) in enumerate(zip(entry.amounts, entry.ats, refs, strict=True)):
        found = snap.index_row(entry.natural_key(item))
        message_id = ref if billing else ""
        if found is None:
            report.add(Difference("unindexed_item", account, message_id, None, amount,
                                  f"ledger entry {seq} item {item} is missing from the index: a "
                                  "replay would write it again"))
        elif (found.seq, found.item) != (seq, item):
            report.add(Difference(f"duplicate_{entry.kind}", account, message_id, None, amount,
                                  f"ledger entry {seq} item {item} repeats the item recorded in "
                                  f"entry {found.seq}"))
        if not billing:
            continue
        if not idents:
            report.counts["items_pseudonymous"] += 1
        elif at < horizon:
            report.counts["items_past_record_retention"] += 1
        else:
            lookups.append((entry.kind, account, ref, amount))
    return idents[0] if idents else ""


def _check_against_records(shards: Any, lookups: list[tuple[str, str, str, int]],
                           report: Reconciliation) -> None:
    """Debits and refunds against their message records, a chunk of lookups at a time."""
    if not lookups:
        return
    records = shards.find_records([mid for _, _, mid, _ in lookups])
    for (kind, account, message_id, amount), rec in zip(lookups, records, strict=True):
        if rec is None:
            report.add(Difference(f"{kind}_without_message", account, message_id, None, amount,
                                  f"a {kind} whose message record does not exist"))
        elif kind == DEBIT and rec.price_micro_usd != -amount:
            report.add(Difference("debit_amount_mismatch", account, message_id, rec.price_micro_usd,
                                  -amount, "the debit is not the message's price"))
        elif kind == REFUND and rec.refunded_micro_usd != amount:
            report.add(Difference("refund_amount_mismatch", account, message_id,
                                  rec.refunded_micro_usd, amount,
                                  "the refund is not what the message record says was refunded"))
    lookups.clear()


def _walk_records(ledger: LedgerStore, shards: Any, report: Reconciliation, cutoff: float,
                  cancelled: Callable[[], bool]) -> list[tuple[str, MessageRecord]]:
    """Records without a debit, or marked refunded without a refund (looked at again afterwards)."""
    suspects: list[tuple[str, MessageRecord]] = []
    for n, rec in enumerate(shards.scan_records()):
        if n % 1000 == 0 and cancelled():
            raise Cancelled()
        if rec.submitted_at >= cutoff:
            report.counts["records_too_recent"] += 1
            continue
        report.counts["records"] += 1
        if not ledger.recorded(DEBIT, rec.message_id):
            suspects.append(("message_without_debit", rec))
        if rec.refunded_micro_usd > 0 and not ledger.recorded(REFUND, rec.message_id):
            suspects.append(("refund_missing", rec))
    return suspects


__all__ = ["Cancelled", "Difference", "Reconciliation", "reconcile"]
