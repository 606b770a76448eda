"""The ledger store: idempotent entries whose balance is always the sum of the unique entries."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.ledger import DEBIT, DEPOSIT, LedgerStore, pseudonym

PEPPER = b"p" * 32


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    """One store for the module; every example works on its own fresh account and references."""
    root = tmp_path_factory.mktemp("ledger")
    env = open_env(root / "core", map_size=64 << 20)
    keys = KeyRing(root / "keys", LocalKeyProvider(root / "keys"))
    yield LedgerStore(env, keys.store_sealer("ledger"))
    env.close()


def fresh(prefix: str) -> str:
    return f"{prefix}_{os.urandom(6).hex()}"


OPS = st.lists(
    st.tuples(st.sampled_from([DEBIT, DEPOSIT]), st.integers(min_value=0, max_value=5),
              st.sampled_from(["tron", "eth"]), st.integers(min_value=1, max_value=10**9)),
    min_size=1, max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, cuts=st.lists(st.integers(min_value=0, max_value=25), max_size=4))
def test_balance_is_the_sum_of_unique_entries_and_repeats_never_change_it(ledger, ops, cuts):
    account, tag = fresh("acc"), fresh("r")
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
    account, tx = fresh("acc"), fresh("0x")
    [(first, new1)] = ledger.apply([(DEPOSIT, account, 100, tx, 1.0, "tron", "T1")])
    [(again, new2)] = ledger.apply([(DEPOSIT, account, 999, tx, 2.0, "tron", "T1")])
    [(_, new3)] = ledger.apply([(DEPOSIT, account, 50, tx, 3.0, "eth", "E1")])
    assert (new1, new2, new3) == (True, False, True)
    assert again == first  # a repeat answers with the original entry
    assert ledger.balance(account) == 150


def test_entries_get_increasing_sequence_numbers_and_the_last_entry_is_the_newest(ledger):
    account = fresh("acc")
    out = ledger.apply([(DEBIT, account, -1, fresh("m"), 1.0, "", "") for _ in range(3)])
    seqs = [e.seq for e, _ in out]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert ledger.last_entry().seq == seqs[-1]


def test_pseudonymise_keeps_amounts_and_removes_the_account_id_and_address(ledger):
    account, other = fresh("acc"), fresh("acc")
    rows = [(DEPOSIT, account, 5_000_000, fresh("0x"), 10.0, "tron", "TWalletAddr1"),
            (DEBIT, account, -75_000, fresh("msg"), 11.0, "", ""),
            (DEPOSIT, other, 7, fresh("0x"), 12.0, "tron", "TOtherAddr")]
    ledger.apply(rows)
    before = [e for e in ledger.entries() if e.account_id == account]
    assert ledger.pseudonymise(account, PEPPER) == 2
    token = pseudonym(account, PEPPER)
    after = list(ledger.entries(token))
    assert list(ledger.entries(account)) == []
    assert [(e.seq, e.kind, e.amount_micro_usd, e.reference, e.at) for e in after] == \
        [(e.seq, e.kind, e.amount_micro_usd, e.reference, e.at) for e in before]
    for e in after:
        assert account not in repr(e) and "TWalletAddr1" not in repr(e)
    assert after[0].from_address == pseudonym("TWalletAddr1", PEPPER)
    assert ledger.balance(account) == 0 and ledger.balance(token) == 5_000_000 - 75_000
    assert [e.from_address for e in ledger.entries(other)] == ["TOtherAddr"]  # others untouched


def test_a_pseudonym_is_stable_and_depends_on_the_pepper():
    assert pseudonym("acc_1", PEPPER) == pseudonym("acc_1", PEPPER)
    assert pseudonym("acc_1", PEPPER) != pseudonym("acc_1", b"q" * 32)
    assert pseudonym("acc_1", PEPPER) != pseudonym("acc_2", PEPPER)


def test_a_reopened_store_keeps_entries_balances_and_continues_the_sequence(tmp_path):
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    env = open_env(tmp_path / "core", map_size=16 << 20)
    store = LedgerStore(env, keys.store_sealer("ledger"))
    [(e1, _)] = store.apply([(DEPOSIT, "acc_a", 10, "0x1", 1.0, "tron", "T")])
    env.close()
    env = open_env(tmp_path / "core", map_size=16 << 20)
    store = LedgerStore(env, KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
                        .store_sealer("ledger"))
    [(e2, new)] = store.apply([(DEBIT, "acc_a", -3, "msg_x", 2.0, "", "")])
    assert new and e2.seq == e1.seq + 1 and store.balance("acc_a") == 7
    assert not store.apply([(DEPOSIT, "acc_a", 10, "0x1", 1.0, "tron", "T")])[0][1]
    env.close()


def test_entries_are_encrypted_on_disk(tmp_path):
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    env = open_env(tmp_path / "core", map_size=16 << 20)
    store = LedgerStore(env, keys.store_sealer("ledger"))
    store.apply([(DEPOSIT, "acc_a", 10, "0xfeed", 1.0, "tron", "TWalletAddressVisible")])
    env.close()
    assert b"TWalletAddressVisible" not in (tmp_path / "core" / "data.mdb").read_bytes()
