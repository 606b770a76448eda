"""The ledger store: idempotent items whose balance is always the sum of the unique items; conflicting
reuse of a deposit's or adjustment's key refused; batches of debits as one sealed entry; natural keys
stored only as keyed hashes; erasure by shredding the account's ledger key; retention of balance rows;
low-balance crossings reported once."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import AdjustmentConflict, CorruptRecord, DepositConflict, KeyUnavailable
from storage.account_keys import LEDGER
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.ledger import ADJUSTMENT, DEBIT, DEPOSIT, REFUND, RETENTION_SECONDS, LedgerStore
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
    st.tuples(st.sampled_from([DEBIT, DEPOSIT, REFUND]), st.integers(min_value=0, max_value=5),
              st.sampled_from(["tron", "eth"])),
    min_size=1, max_size=25,
)


def _amount(kind: str, n: int, chain: str) -> int:
    """One amount per natural key (a replay repeats what it replays)."""
    value = 1000 * (n + 1) + (7 if chain == "eth" else 0)
    return -value if kind == DEBIT else value


@settings(max_examples=60, deadline=None)
@given(ops=OPS, cuts=st.lists(st.integers(min_value=0, max_value=25), max_size=4))
def test_balance_is_the_sum_of_unique_items_and_repeats_never_change_it(ledger, ops, cuts):
    account, tag = fresh("acc", ledger), fresh("r")
    rows, expected, seen = [], 0, set()
    for kind, n, chain in ops:
        chain = chain if kind == DEPOSIT else ""
        ref = f"{tag}-{n}"
        rows.append((kind, account, _amount(kind, n, chain), ref, 1.0, chain, "TAddr" if chain else ""))
        if (kind, chain, ref) not in seen:
            seen.add((kind, chain, ref))
            expected += _amount(kind, n, chain)
    bounds = sorted({0, len(rows), *[c for c in cuts if c <= len(rows)]})
    news = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):  # several batches: repeats within and across
        before = ledger.balance(account)
        result = ledger.apply(rows[lo:hi])
        news.extend(new for _, new in result)
        assert ledger.balance(account) == before + sum(e.amount_micro_usd for e, new in result if new)
    assert sum(news) == len(seen)
    assert ledger.balance(account) == expected
    items = list(ledger.entries(account))
    assert len(items) == len(seen)
    assert sum(e.amount_micro_usd for e in items) == expected
    again = ledger.apply(rows)  # replaying everything is a no-op that answers the recorded items
    assert not any(new for _, new in again)
    assert [(e.kind, e.reference, e.amount_micro_usd) for e, _ in again] == \
        [(r[0], r[3], r[2]) for r in rows]
    assert ledger.balance(account) == expected
    assert all(ledger.has(kind, ref, chain) for kind, chain, ref in seen)
    assert ledger.verify().ok


def test_one_accounts_batch_of_debits_is_one_sealed_entry_of_many_items(ledger):
    a, b = fresh("acc", ledger), fresh("acc", ledger)
    head = ledger.head()[0]
    rows = [(DEBIT, acc, -10, fresh("msg"), 1.0 + i, "", "") for i in range(3) for acc in (a, b)]
    out = ledger.apply(rows, durable=False)
    assert ledger.head()[0] == head + 2  # one entry per account
    assert {e.seq for e, _ in out} == {head + 1, head + 2}
    assert [e.reference for e in ledger.entries(a)] == [r[3] for r in rows if r[1] == a]
    assert [e.item for e in ledger.entries(b)] == [0, 1, 2]
    assert ledger.find(DEBIT, rows[3][3]) == out[3][0]


def test_a_replayed_deposit_is_idempotent_and_a_conflicting_one_is_refused_writing_nothing(ledger):
    account, other, tx = fresh("acc", ledger), fresh("acc", ledger), fresh("0x")
    [(first, new1)] = ledger.apply([(DEPOSIT, account, 100, tx, 1.0, "tron", "T1")])
    [(again, new2)] = ledger.apply([(DEPOSIT, account, 100, tx, 2.0, "tron", "T1")])
    assert (new1, new2) == (True, False) and again == first  # a replay answers the original item
    head = ledger.head()
    for conflicting in ((DEPOSIT, account, 999, tx, 3.0, "tron", "T1"),  # another amount
                        (DEPOSIT, other, 100, tx, 3.0, "tron", "T1"),  # another account
                        (DEPOSIT, account, 100, tx, 3.0, "tron", "T2")):  # another from-address
        with pytest.raises(DepositConflict) as raised:
            ledger.apply([(DEBIT, account, -1, fresh("msg"), 3.0, "", ""), conflicting])
        assert raised.value.code == "deposit_conflict" and tx in raised.value.message
    assert ledger.head() == head  # nothing of those batches was written
    assert ledger.balance(account) == 100 and ledger.balance(other) == 0
    [(_, new3)] = ledger.apply([(DEPOSIT, account, 50, tx, 3.0, "eth", "E1")])  # another chain
    assert new3 and ledger.balance(account) == 150


def test_an_adjustment_is_idempotent_per_account_and_key_and_refused_with_other_details(ledger):
    account, other = fresh("acc", ledger), fresh("acc", ledger)
    row = (ADJUSTMENT, account, -250, "ticket-1", 1.0, "", "", "goodwill reversal", "op-ann")
    [(item, new)] = ledger.apply([row])
    assert new and (item.reason, item.actor, item.reference) == ("goodwill reversal", "op-ann",
                                                                  "ticket-1")
    assert ledger.apply([row]) == [(item, False)]
    for changed in (row[:2] + (-251,) + row[3:], row[:7] + ("another reason", "op-ann")):
        with pytest.raises(AdjustmentConflict):
            ledger.apply([changed])
    [(_, new_other)] = ledger.apply([(ADJUSTMENT, other, 5, "ticket-1", 1.0, "", "", "x", "op")])
    assert new_other  # keys belong to the account
    assert ledger.balance(account) == -250 and list(ledger.entries(account))[0].actor == "op-ann"


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
    assert not ledger.apply([(DEPOSIT, account, 5_000_000, tx, 13.0, "tron", "TWalletAddr1")])[0][1]
    assert [e.from_address for e in ledger.entries(other)] == ["TOtherAddr"]  # others untouched
    ledger.apply([(DEBIT, account, -1, fresh("msg"), 13.0, "", "")])  # a late debit of it...
    assert [e.reference for e in ledger.entries(psn)][-1] == ""  # ...is written without identifiers
    assert ledger.verify().ok  # no row was rewritten: the chain still verifies


def test_the_identifiers_of_an_erased_account_do_not_open_with_any_key_left(tmp_path):
    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    ledger.apply([(DEPOSIT, account, 10, "0xTXHASHMARKER", 1.0, "tron", "TWALLETMARKER")])
    with ledger.env.begin() as txn:
        key, value = next(iter(txn.cursor(db=ledger._entries)))
        key, value = bytes(key), bytes(value)
    identifiers = ledger._open(key, value).identifiers
    ledger.forget_account(account)
    with pytest.raises(KeyUnavailable):
        ledger.keys.sealer(account, LEDGER)
    ring = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))  # the master key's view
    for name in ring.named_keys():
        with pytest.raises(CorruptRecord):
            ring.named_sealer(name).open(identifiers, key)
    assert ledger._open(key, value).identifiers == identifiers  # the row itself was not rewritten
    ledger.env.close()


def test_natural_keys_are_stored_only_as_keyed_hashes(tmp_path):
    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    ledger.apply([(DEPOSIT, account, 10, "0xfeedTXHASHVISIBLE", 1.0, "tron", "T"),
                  (DEBIT, account, -1, "msg_MESSAGEIDVISIBLE", 2.0, "", ""),
                  (ADJUSTMENT, account, 1, "KEYVISIBLE", 3.0, "", "", "REASONVISIBLE", "op")])
    with ledger.env.begin() as txn:
        stored = [bytes(k) for k, _ in txn.cursor(db=ledger._idem)]
        balances = [bytes(k) for k, _ in txn.cursor(db=ledger._balances)]
    ledger.env.close()
    assert len(stored) == 3 and all(len(k) == 16 for k in stored)
    raw = (tmp_path / "core" / "data.mdb").read_bytes()
    for visible in (b"0xfeedTXHASHVISIBLE", b"TXHASHVISIBLE", b"MESSAGEIDVISIBLE", b"tron",
                    b"KEYVISIBLE", b"REASONVISIBLE", account.encode()):
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
    row = ledger.balance_row(active)
    assert (row.items, row.carried) == (0, 20)  # its balance is what was swept plus what is left
    with ledger.env.begin() as txn:
        assert txn.stat(ledger._balances)["entries"] == 1
    ledger.env.close()


def test_the_sweep_moves_the_chains_anchor_so_what_remains_still_verifies(tmp_path):
    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    ledger.apply([(DEPOSIT, account, 10, f"0x{i}", float(i), "tron", "T") for i in range(1, 6)])
    assert ledger.sweep(2.5 + RETENTION_SECONDS) == 2
    report = ledger.verify()
    assert report.ok and (report.anchor_seq, report.first_seq, report.entries) == (3, 3, 3)
    ledger.apply([(DEBIT, account, -1, "m", 9.0, "", "")])
    assert ledger.verify().ok
    ledger.env.close()
    with open_env(tmp_path / "core", map_size=64 << 20) as env:  # someone moves the anchor by hand
        meta = env.open_db(b"ledger_meta")
        with env.begin(write=True) as txn:
            raw = bytearray(txn.get(b"anchor", db=meta))
            raw[7] = 4  # "the chain starts at entry 4" (so entry 3 could go unnoticed)
            txn.put(b"anchor", bytes(raw), db=meta)
    ledger = open_ledger(tmp_path)
    kinds = {p.kind for p in ledger.verify().problems}
    assert "anchor" in kinds
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


def test_a_reopened_store_keeps_items_balances_and_continues_the_sequence_and_chain(tmp_path):
    store = open_ledger(tmp_path)
    store.keys.create("acc_a")
    [(e1, _)] = store.apply([(DEPOSIT, "acc_a", 10, "0x1", 1.0, "tron", "T")])
    store.env.close()
    store = open_ledger(tmp_path)
    env = store.env
    [(e2, new)] = store.apply([(DEBIT, "acc_a", -3, "msg_x", 2.0, "", "")])
    assert new and e2.seq == e1.seq + 1 and store.balance("acc_a") == 7
    assert not store.apply([(DEPOSIT, "acc_a", 10, "0x1", 1.0, "tron", "T")])[0][1]
    assert store.verify().ok and store.verify().head_seq == e2.seq
    env.close()


def test_items_of_an_account_can_be_read_for_a_period(ledger):
    account = fresh("acc", ledger)
    ledger.apply([(DEBIT, account, -1, fresh("m"), t, "", "") for t in (100.0, 200.0, 300.0)])
    ledger.apply([(DEPOSIT, account, 5, fresh("0x"), 250.0, "tron", "T")])
    assert [e.at for e in ledger.entries(account, 150.0, 300.0)] == [200.0, 250.0]
    assert [e.at for e in ledger.entries(account, since=300.0)] == [300.0]


def test_a_balance_going_below_its_threshold_is_reported_once_per_crossing(ledger):
    account = fresh("acc", ledger)
    assert ledger.set_threshold(account, 500) is not None  # 0 is below 500: reported at once
    assert ledger.set_threshold(account, 0) is None
    ledger.apply([(DEPOSIT, account, 1000, fresh("0x"), 1.0, "tron", "T")])
    assert ledger.set_threshold(account, 500) is None  # 1000 is above it
    step = ledger.write([(DEBIT, account, -400, fresh("m"), 2.0, "", "")], durable=False)
    assert step.low_balance == []  # 600
    crossed = ledger.write([(DEBIT, account, -200, fresh("m"), 3.0, "", "")], durable=False)
    [low] = crossed.low_balance
    assert (low.account_id, low.balance_micro_usd, low.threshold_micro_usd) == (account, 400, 500)
    assert low.seq == crossed.results[0][0].seq
    assert ledger.write([(DEBIT, account, -1, fresh("m"), 4.0, "", "")]).low_balance == []  # once
    ledger.apply([(REFUND, account, 300, fresh("m"), 5.0, "", "")])  # 699: above again, re-armed
    assert ledger.write([(DEBIT, account, -300, fresh("m"), 6.0, "", "")]).low_balance != []


def test_entries_are_encrypted_on_disk(tmp_path):
    store = open_ledger(tmp_path)
    store.keys.create("acc_a")
    store.apply([(DEPOSIT, "acc_a", 10, "0xfeed", 1.0, "tron", "TWalletAddressVisible")])
    store.env.close()
    assert b"TWalletAddressVisible" not in (tmp_path / "core" / "data.mdb").read_bytes()


def test_a_ledger_entry_is_kept_seven_calendar_years_not_seven_times_365_days(tmp_path):
    """Policy 6/7.1: 1 March 2020 + 7 × 365 days is 28 February 2027, a day short of 7 years."""
    from datetime import UTC, datetime

    ledger = open_ledger(tmp_path)
    account = fresh("acc", ledger)
    written = datetime(2020, 3, 1, 12, tzinfo=UTC).timestamp()
    ledger.apply([(DEPOSIT, account, 10, "0xa", written, "tron", "T")])
    assert ledger.sweep(datetime(2027, 2, 28, 13, tzinfo=UTC).timestamp()) == 0
    assert ledger.sweep(datetime(2027, 3, 3, 13, tzinfo=UTC).timestamp()) == 1
    ledger.env.close()
