"""The ledger store: idempotent entries whose balance is always the sum of the unique entries; natural keys
stored only as keyed HMACs; erasure by shredding the account's ledger key; retention of balance rows."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CorruptRecord, KeyUnavailable
from storage.account_keys import LEDGER
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.ledger import DEBIT, DEPOSIT, RETENTION_SECONDS, LedgerStore
from tests.storage.conftest import account_keys_in


def open_ledger(root) -> LedgerStore:
    env = open_env(root / "core", map_size=64 << 20)
    keys = account_keys_in(root / "keys")
    return LedgerStore(env, KeyRing(root / "keys", LocalKeyProvider(root / "keys"))
                       .store_sealer("ledger"), keys)


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """One store for the module; every example works on its own fresh account and references."""
    store = open_ledger(tmp_path_factory.mktemp("ledger"))
    yield store
    store.env.close()


def fresh(prefix: str, ledger: LedgerStore | None = None) -> str:
    """A new id; with ``ledger``, an account whose keys exist (as the engine makes them)."""
    name = f"{prefix}_{os.urandom(6).hex()}"
    if ledger is not None:
        ledger.keys.create(name)
    return name


OPS = st.lists(
    st.tuples(st.sampled_from([DEBIT, DEPOSIT]), st.integers(min_value=0, max_value=5),
              st.sampled_from(["tron", "eth"]), st.integers(min_value=1, max_value=10**9)),
    min_size=1, max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, cuts=st.lists(st.integers(min_value=0, max_value=25), max_size=4))
def test_balance_is_the_sum_of_unique_entries_and_repeats_never_change_it(ledger, ops, cuts):
    account, tag = fresh("acc", ledger), fresh("r")
    rows, expected, seen = [], 0, set()
    for kind, n, chain, amount in ops:
        chain = chain if kind == DEPOSIT else ""
        ref = f"{tag}-{n}"
        signed = amount if kind == DEPOSIT else -amount
        rows.append((kind, account, signed, ref, 1.0, chain, "TAddr" if chain else ""))
        if (kind, chain, ref) not in seen:
            seen.add((kind, chain, ref))
            expected += signed
    bounds = sorted({0, len(rows), *[c for c in cuts if c <= len(rows)]})
    news = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):  # several batches: repeats within and across
        before = ledger.balance(account)
        result = ledger.apply(rows[lo:hi])
        news.extend(new for _, new in result)
        assert ledger.balance(account) == before + sum(e.amount_micro_usd for e, new in result if new)
    assert sum(news) == len(seen)
    assert ledger.balance(account) == expected
    entries = list(ledger.entries(account))
    assert len(entries) == len(seen)
    assert sum(e.amount_micro_usd for e in entries) == expected
    again = ledger.apply(rows)  # replaying everything is a no-op
    assert not any(new for _, new in again)
    assert ledger.balance(account) == expected
    assert all(ledger.has(kind, ref, chain) for kind, chain, ref in seen)


def test_a_deposit_is_idempotent_on_chain_and_tx_hash_not_on_tx_hash_alone(ledger):
    account, tx = fresh("acc", ledger), fresh("0x")
    [(first, new1)] = ledger.apply([(DEPOSIT, account, 100, tx, 1.0, "tron", "T1")])
    [(again, new2)] = ledger.apply([(DEPOSIT, account, 999, tx, 2.0, "tron", "T1")])
    [(_, new3)] = ledger.apply([(DEPOSIT, account, 50, tx, 3.0, "eth", "E1")])
    assert (new1, new2, new3) == (True, False, True)
    assert again == first  # a repeat answers with the original entry
    assert ledger.balance(account) == 150


def test_entries_get_increasing_sequence_numbers_and_the_last_entry_is_the_newest(ledger):
    account = fresh("acc", ledger)
    out = ledger.apply([(DEBIT, account, -1, fresh("m"), 1.0, "", "") for _ in range(3)])
    seqs = [e.seq for e, _ in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert ledger.last_entry().seq == seqs[-1]


def test_forgetting_an_account_shreds_its_identifiers_and_keeps_kinds_amounts_and_times(ledger):
    account, other = fresh("acc", ledger), fresh("acc", ledger)
    tx = fresh("0x")
    rows = [(DEPOSIT, account, 5_000_000, tx, 10.0, "tron", "TWalletAddr1"),
            (DEBIT, account, -75_000, fresh("msg"), 11.0, "", ""),
            (DEPOSIT, other, 7, fresh("0x"), 12.0, "tron", "TOtherAddr")]
    ledger.apply(rows)
    before = list(ledger.entries(account))
    psn = ledger.keys.pseudonyms.pseudonym(account)
    assert ledger.forget_account(account) == 2
    after = list(ledger.entries(psn))
    assert [(e.seq, e.kind, e.amount_micro_usd, e.at) for e in after] == \
        [(e.seq, e.kind, e.amount_micro_usd, e.at) for e in before]
    for e in after:
        assert (e.account_id, e.reference, e.chain, e.from_address) == (psn, "", "", "")
    assert ledger.balance(psn) == 5_000_000 - 75_000
    assert ledger.has(DEPOSIT, tx, "tron")  # a replayed deposit of the same payment still is one
    assert [e.from_address for e in ledger.entries(other)] == ["TOtherAddr"]  # others untouched
    ledger.apply([(DEBIT, account, -1, fresh("msg"), 13.0, "", "")])  # a late debit of it...
    assert [e.reference for e in ledger.entries(psn)][-1] == ""  # ...is written without identifiers


def test_the_identifiers_of_an_erased_account_do_not_open_with_any_key_left(tmp_path):
    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    ledger.apply([(DEPOSIT, account, 10, "0xTXHASHMARKER", 1.0, "tron", "TWALLETMARKER")])
    with ledger.env.begin() as txn:
        key, outer = next(iter(txn.cursor(db=ledger._entries)))
        key, outer = bytes(key), bytes(outer)
    identifiers = ledger._open(key, outer).identifiers
    ledger.forget_account(account)
    with pytest.raises(KeyUnavailable):
        ledger.keys.sealer(account, LEDGER)
    ring = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))  # the master key's view
    for name in ring.named_keys():
        with pytest.raises(CorruptRecord):
            ring.named_sealer(name).open(identifiers, key)
    assert ledger._open(key, outer).identifiers == identifiers  # the row itself was not rewritten
    ledger.env.close()


def test_natural_keys_are_stored_only_as_keyed_hashes(tmp_path):
    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    ledger.apply([(DEPOSIT, account, 10, "0xfeedTXHASHVISIBLE", 1.0, "tron", "T"),
                  (DEBIT, account, -1, "msg_MESSAGEIDVISIBLE", 2.0, "", "")])
    with ledger.env.begin() as txn:
        stored = [bytes(k) for k, _ in txn.cursor(db=ledger._idem)]
        balances = [bytes(k) for k, _ in txn.cursor(db=ledger._balances)]
    ledger.env.close()
    assert len(stored) == 2 and all(len(k) == 32 for k in stored)
    raw = (tmp_path / "core" / "data.mdb").read_bytes()
    for visible in (b"0xfeedTXHASHVISIBLE", b"TXHASHVISIBLE", b"MESSAGEIDVISIBLE", b"tron",
                    account.encode()):
        assert visible not in raw
    assert balances == [ledger.keys.token(account)]


def test_a_deleted_accounts_balance_row_and_ledger_key_go_with_its_last_entry(tmp_path):
    ledger = open_ledger(tmp_path)
    gone, active = fresh("acc", ledger), fresh("acc", ledger)
    ledger.apply([(DEPOSIT, gone, 10, "0xa", 1.0, "tron", "T"), (DEPOSIT, active, 20, "0xb", 1.0, "tron", "T"),
                  (DEBIT, gone, -3, "m1", 5.0, "", "")])
    assert ledger.account_deleted(gone) == 2  # swept 90 days after closure: rows stay
    assert ledger.keys.has(gone, LEDGER) and ledger.balance(gone) == 7
    assert ledger.sweep(1.5 + RETENTION_SECONDS) == 2  # the two deposits are 7 years old
    assert ledger.balance(gone) == 7 and ledger.balance(active) == 20  # one entry of it is left
    assert ledger.sweep(6.0 + RETENTION_SECONDS) == 1  # its last entry goes...
    assert ledger.balance(gone) == 0 and not ledger.keys.has(gone, LEDGER)  # ...and the row and key
    assert ledger.balance(active) == 20 and ledger.keys.has(active, LEDGER)  # an active account keeps
    with ledger.env.begin() as txn:
        assert txn.stat(ledger._balances)["entries"] == 1
    ledger.env.close()


def test_an_account_deleted_with_no_entry_left_loses_its_balance_row_and_key_at_once(tmp_path):
    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    ledger.apply([(DEPOSIT, account, 10, "0xa", 1.0, "tron", "T")])
    assert ledger.sweep(2.0 + RETENTION_SECONDS) == 1
    assert ledger.balance(account) == 10  # active: its balance outlives its swept entries
    assert ledger.account_deleted(account) == 0
    assert ledger.balance(account) == 0 and not ledger.keys.has(account, LEDGER)
    ledger.env.close()


def test_a_reopened_store_keeps_entries_balances_and_continues_the_sequence(tmp_path):
    store = open_ledger(tmp_path)
    store.keys.create("acc_a")
    [(e1, _)] = store.apply([(DEPOSIT, "acc_a", 10, "0x1", 1.0, "tron", "T")])
    store.env.close()
    store = open_ledger(tmp_path)
    env = store.env
    [(e2, new)] = store.apply([(DEBIT, "acc_a", -3, "msg_x", 2.0, "", "")])
    assert new and e2.seq == e1.seq + 1 and store.balance("acc_a") == 7
    assert not store.apply([(DEPOSIT, "acc_a", 10, "0x1", 1.0, "tron", "T")])[0][1]
    env.close()


def test_entries_are_encrypted_on_disk(tmp_path):
    store = open_ledger(tmp_path)
    store.keys.create("acc_a")
    store.apply([(DEPOSIT, "acc_a", 10, "0xfeed", 1.0, "tron", "TWalletAddressVisible")])
    store.env.close()
    assert b"TWalletAddressVisible" not in (tmp_path / "core" / "data.mdb").read_bytes()
