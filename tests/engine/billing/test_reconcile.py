"""Reconciliation of message records and ledger, against real stores: each kind of disagreement is found
and listed (and only those), and what cannot be checked is counted instead of reported."""

from __future__ import annotations

import struct
import time
from types import SimpleNamespace

import pytest

from engine.billing.reconcile import Cancelled, reconcile
from engine.cluster.shards import LocalShards
from engine.ids import IdGenerator
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.ledger import DEBIT, DEPOSIT, REFUND, LedgerStore
from storage.owed_debits import OwedDebits
from storage.records import RETENTION_SECONDS, MessageRecord, MessageRecords
from storage.refunds import OwedRefunds
from tests.storage.conftest import account_keys_in

NOW = 1_790_000_000.0
ACCOUNT = "acc_00000000000000aa"


@pytest.fixture
def stores(tmp_path):
    keys = account_keys_in(tmp_path / "keys", ACCOUNT)
    core = open_env(tmp_path / "core", map_size=64 << 20)
    ledger = LedgerStore(core, KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
                         .store_sealer("ledger"), keys)
    pop = open_env(tmp_path / "fra", map_size=64 << 20)
    fra = SimpleNamespace(env=pop, records=MessageRecords(pop, keys), refunds=OwedRefunds(pop),
                          debits=OwedDebits(pop))
    ids = IdGenerator(clock=lambda: NOW - 60)
    shards = LocalShards(SimpleNamespace(pop_stores={"fra": fra}))  # as the engine reads its POPs
    yield SimpleNamespace(ledger=ledger, pops={"fra": fra}, shards=shards, ids=ids)
    core.close()
    pop.close()


def record(s, *, price: int = 75_000, refunded: int = 0, at: float = NOW - 60, owed: bool = False,
           billed: bool = True, debit_owed: bool = False) -> MessageRecord:
    """A durable message record (and, unless ``billed=False``, its debit; its refund if refunded;
    ``debit_owed``: its POP still owes the ledger its debit)."""
    mid = s.ids.new()
    rec = MessageRecord(mid, ACCOUNT, "+4915112345678", "ACME", "DE", "fra", "c", "GSM-7", 1, price,
                        at, at, "failed" if refunded else "delivered", "", 600, None, 1, 0.0,
                        refunded_micro_usd=refunded)
    fra = s.pops["fra"]
    with fra.env.begin(write=True) as txn:
        fra.records.put_many(txn, [rec])
        if owed:
            fra.refunds.add(txn, [mid])
        if debit_owed:
            fra.debits.add(txn, [mid])
    if billed:
        s.ledger.apply([(DEBIT, ACCOUNT, -price, mid, at, "", "")])
    if refunded and not owed:
        s.ledger.apply([(REFUND, ACCOUNT, refunded, mid, at + 1, "", "")])
    return rec


def kinds(report) -> list[tuple[str, str]]:
    return sorted((d.kind, d.message_id) for d in report.differences)


def test_records_that_agree_with_the_ledger_reconcile_without_differences(stores):
    stores.ledger.apply([(DEPOSIT, ACCOUNT, 10_000_000, "0x1", NOW - 100, "tron", "T")])
    for _ in range(3):
        record(stores)
    record(stores, refunded=75_000)
    record(stores, refunded=75_000, owed=True)  # the ledger writes it at its next flush: not missing
    record(stores, billed=False, debit_owed=True)  # its POP sends it until the ledger confirms it
    report = reconcile(stores.ledger, stores.shards, now=NOW)
    assert report.ok and report.differences == []
    assert report.counts["records"] == 6 and report.counts["ledger_items"] == 1 + 5 + 1
    assert (report.counts["refunds_owed"], report.counts["debits_owed"]) == (1, 1)
    assert report.counts["accounts"] == 1


def test_a_message_without_its_debit_and_a_refund_never_written_are_listed(stores):
    unbilled = record(stores, billed=False)
    unrefunded = record(stores, refunded=75_000, owed=True)
    stores.pops["fra"].refunds.clear([unrefunded.message_id])  # forgotten, yet never written
    report = reconcile(stores.ledger, stores.shards, now=NOW)
    assert kinds(report) == sorted([("message_without_debit", unbilled.message_id),
                                    ("refund_missing", unrefunded.message_id)])
    assert {d.expected for d in report.differences} == {75_000}


def test_a_debit_without_its_message_and_amounts_that_disagree_are_listed(stores):
    orphan = stores.ids.new()
    stores.ledger.apply([(DEBIT, ACCOUNT, -10, orphan, NOW - 60, "", "")])
    wrong_price = record(stores, billed=False)
    stores.ledger.apply([(DEBIT, ACCOUNT, -1, wrong_price.message_id, NOW - 60, "", "")])
    wrong_refund = record(stores, refunded=75_000, owed=True)
    stores.ledger.apply([(REFUND, ACCOUNT, 70_000, wrong_refund.message_id, NOW - 50, "", "")])
    stores.pops["fra"].refunds.clear([wrong_refund.message_id])
    refunded_anyway = record(stores)
    stores.ledger.apply([(REFUND, ACCOUNT, 75_000, refunded_anyway.message_id, NOW - 50, "", "")])
    report = reconcile(stores.ledger, stores.shards, now=NOW)
    assert kinds(report) == sorted([
        ("debit_without_message", orphan), ("debit_amount_mismatch", wrong_price.message_id),
        ("refund_amount_mismatch", wrong_refund.message_id),
        ("refund_amount_mismatch", refunded_anyway.message_id)])
    mismatch = next(d for d in report.differences if d.kind == "debit_amount_mismatch")
    assert (mismatch.expected, mismatch.found) == (75_000, 1)


def test_a_message_debited_twice_is_a_duplicate(stores):
    """Idempotency makes a second debit impossible through the store; what a buggy writer or a hand in
    the raw store would leave — a second entry for the message, the index still naming the first — is
    what reconciliation finds."""
    rec = record(stores)
    ledger = stores.ledger
    key = ledger.natural_key(DEBIT, rec.message_id)
    with ledger.env.begin(write=True) as txn:
        first = txn.get(key, db=ledger._idem)
        txn.delete(key, db=ledger._idem)
    ledger.apply([(DEBIT, ACCOUNT, -rec.price_micro_usd, rec.message_id, NOW - 60, "", "")])
    with ledger.env.begin(write=True) as txn:
        txn.put(key, first, db=ledger._idem)
    report = reconcile(ledger, stores.shards, now=NOW)
    assert kinds(report) == [("duplicate_debit", rec.message_id)]
    assert ledger.verify().ok  # written through the store: the chain alone cannot tell


def test_a_balance_that_is_not_the_sum_of_its_entries_is_listed(stores):
    stores.ledger.apply([(DEPOSIT, ACCOUNT, 500, "0x1", NOW, "tron", "T")])
    token = stores.ledger.keys.token(ACCOUNT)
    with stores.ledger.env.begin(write=True) as txn:
        row = bytearray(txn.get(token, db=stores.ledger._balances))
        row[:8] = struct.pack(">q", 5_000_000)
        txn.put(token, bytes(row), db=stores.ledger._balances)
    report = reconcile(stores.ledger, stores.shards, now=NOW)
    [diff] = report.differences
    assert (diff.kind, diff.account, diff.expected, diff.found) == ("balance_mismatch", ACCOUNT, 500,
                                                                     5_000_000)


def test_what_cannot_be_checked_is_counted_not_reported(stores):
    old = NOW - RETENTION_SECONDS - 10
    stores.ledger.apply([(DEBIT, ACCOUNT, -5, stores.ids.new(), old, "", "")])  # record swept
    record(stores, at=NOW - 0.5, billed=False)  # too recent for this cutoff
    erased = "acc_00000000000000bb"
    stores.ledger.keys.create(erased)
    stores.ledger.apply([(DEBIT, erased, -7, stores.ids.new(), NOW - 60, "", "")])
    stores.ledger.forget_account(erased)  # its message ids are shredded
    report = reconcile(stores.ledger, stores.shards, now=NOW, cutoff=NOW - 1)
    assert report.ok
    c = report.counts
    assert (c["items_past_record_retention"], c["records_too_recent"], c["items_pseudonymous"]) == \
        (1, 1, 1)


def test_a_difference_that_resolves_before_the_second_look_is_not_reported(stores):
    rec = record(stores, billed=False)
    calls = []

    def sync():  # a running engine's ledger writing the debit it had queued
        calls.append(time.monotonic())
        if len(calls) == 2:
            stores.ledger.apply([(DEBIT, ACCOUNT, -rec.price_micro_usd, rec.message_id, NOW, "", "")])

    report = reconcile(stores.ledger, stores.shards, now=NOW, sync=sync)
    assert report.ok and len(calls) == 2


def test_a_reconciliation_is_abandoned_when_cancelled(stores):
    record(stores)
    with pytest.raises(Cancelled):
        reconcile(stores.ledger, stores.shards, now=NOW, cancelled=lambda: True)


def test_without_pop_stores_only_the_ledgers_own_checks_run(stores):
    """A cluster core's data directory holds the ledger but no POP store: no record is looked for,
    so no debit is reported as without its message; balances and duplicates are still checked."""
    stores.ledger.apply([(DEBIT, ACCOUNT, -10, stores.ids.new(), NOW - 60, "", "")])
    report = reconcile(stores.ledger, None, now=NOW)
    assert report.ok and not report.records_checked and report.counts["ledger_items"] == 1
    assert report.as_dict()["records_checked"] is False
