"""The ledger's hash chain: every entry carries the link of the one before it, so an entry edited,
deleted, put back or cut off in the raw store is reported — each one, by sequence number — while
ordinary writes, erasure and retention leave it verifying."""

from __future__ import annotations

import os

import lmdb
import pytest

from storage.ledger import DEBIT, DEPOSIT
from storage.ledger_chain import GENESIS, LINK_BYTES
from tests.storage.test_ledger_store import open_ledger


@pytest.fixture
def written(tmp_path):
    """A closed ledger of 8 entries (two accounts, deposits and batches of debits)."""
    ledger = open_ledger(tmp_path)
    for account in ("acc_a", "acc_b"):
        ledger.keys.create(account)
    for n in range(4):
        ledger.apply([(DEPOSIT, "acc_a", 100, f"0x{n}", float(n), "tron", "T"),
                      (DEBIT, "acc_b", -1, f"msg_{n}_1", float(n), "", ""),
                      (DEBIT, "acc_b", -2, f"msg_{n}_2", float(n), "", "")])
    assert ledger.head()[0] == 8 and ledger.verify().ok
    ledger.env.close()
    return tmp_path


def raw(root, change) -> None:
    """Change the ``ledger`` database of a closed store with LMDB alone (no key, no smsroute code)."""
    env = lmdb.open(str(root / "core"), max_dbs=32, subdir=True)
    try:
        with env.begin(write=True) as txn:
            change(txn, env.open_db(b"ledger", txn=txn))
    finally:
        env.close()


def key(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


def problems(root) -> list[tuple[int, str]]:
    ledger = open_ledger(root)
    try:
        return [(p.seq, p.kind) for p in ledger.verify().problems]
    finally:
        ledger.env.close()


def test_one_entry_edited_and_another_deleted_in_the_raw_store_are_both_reported(written):
    def tamper(txn, db):
        value = bytearray(txn.get(key(3), db=db))
        value[LINK_BYTES + 20] ^= 0x01  # one bit of entry 3's sealed bytes
        txn.put(key(3), bytes(value), db=db)
        txn.delete(key(6), db=db)

    raw(written, tamper)
    ledger = open_ledger(written)
    report = ledger.verify()
    ledger.env.close()
    found = [(p.seq, p.kind) for p in report.problems]
    assert found == [(3, "unreadable"), (4, "broken_link"), (6, "missing")]
    assert not report.ok and report.first_broken == 3
    assert "entry 6 is missing" in report.problems[-1].detail


def test_the_chain_alone_names_an_edit_without_the_store_key(written):
    def flip_last_bit(txn, db):  # (setting the last byte to 0 changed nothing when it was 0: 1 run in 256)
        value = bytearray(txn.get(key(5), db=db))
        value[-1] ^= 0x01
        txn.put(key(5), bytes(value), db=db)

    raw(written, flip_last_bit)
    ledger = open_ledger(written)
    report = ledger.verify(authenticate=False)  # only the chain key: no entry is opened
    ledger.env.close()
    assert [(p.seq, p.kind) for p in report.problems] == [(6, "broken_link")]


def test_entries_swapped_or_an_old_copy_put_back_break_the_links(written):
    def swap(txn, db):
        two, three = txn.get(key(2), db=db), txn.get(key(3), db=db)
        txn.put(key(2), three, db=db)
        txn.put(key(3), two, db=db)

    raw(written, swap)
    kinds = problems(written)
    assert (2, "broken_link") in kinds and (3, "broken_link") in kinds  # and the sealed AAD fails too
    assert (2, "unreadable") in kinds and (3, "unreadable") in kinds


def test_the_newest_entries_cut_off_are_reported_against_the_head(written):
    raw(written, lambda txn, db: (txn.delete(key(8), db=db), txn.delete(key(7), db=db)))
    assert problems(written) == [(7, "head")]


def test_an_entry_added_after_the_head_is_reported(written):
    raw(written, lambda txn, db: txn.put(key(9), GENESIS + os.urandom(60), db=db))
    kinds = problems(written)
    assert (9, "broken_link") in kinds and (9, "unreadable") in kinds and (9, "head") in kinds


def test_the_link_needs_the_chain_key(written):
    ledger = open_ledger(written)
    with ledger.env.begin() as txn:
        value = bytes(txn.get(key(2), db=ledger._entries))
    other = open_ledger(written.parent / (written.name + "-other"))  # another key ring
    try:
        assert ledger.chain.link(2, value) != other.chain.link(2, value)
    finally:
        ledger.env.close()
        other.env.close()


def test_an_empty_ledger_verifies_and_has_no_head(tmp_path):
    ledger = open_ledger(tmp_path)
    report = ledger.verify()
    assert report.ok and (report.entries, report.head_seq) == (0, 0)
    ledger.env.close()
