"""Message records: round trip, the open index recovery relies on, the 90-day sweep, encryption at rest."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import CorruptRecord
from engine.ids import IdGenerator
from engine.status import ACCEPTED, DELIVERED, FAILED, STATUSES
from storage.env import open_env
from storage.headroom import batch_size
from storage.pop_commit import PopCommit
from storage.records import RETENTION_SECONDS, MessageRecord, MessageRecords
from tests.storage.conftest import account_keys_in

T0 = 1_790_000_000.0
DAY = 86400.0
DEST = "+4915112345678"
ACCOUNT = "acc_0123456789abcdef"


@pytest.fixture
def pop_dir(tmp_path):
    return tmp_path / "pop"


@pytest.fixture
def records(tmp_path, pop_dir):
    keys = account_keys_in(tmp_path / "keys", ACCOUNT, "acc_other", "acc_plaintextcheck")
    env = open_env(pop_dir, map_size=32 << 20)
    yield MessageRecords(env, keys)
    env.close()


def record(message_id: str, status: str = ACCEPTED, acked: float = 0.0, **kw) -> MessageRecord:
    values = dict(message_id=message_id, account_id=ACCOUNT, to=DEST, sender="ACME",
                  country="DE", pop="fra", carrier="fra-telekom", encoding="GSM-7", segments=1,
                  price_micro_usd=75000, submitted_at=T0, updated_at=T0, status=status, error="",
                  validity_seconds=30, callback_url=None, attempts=1, carrier_acked_at=acked)
    values.update(kw)
    return MessageRecord(**values)


def put(records: MessageRecords, recs) -> int:
    with records.env.begin(write=True) as txn:
        return records.put_many(txn, recs)


def ids_at(t: float, n: int) -> list[str]:
    gen = IdGenerator(clock=lambda: t)
    return [gen.new() for _ in range(n)]


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=40, deadline=None)
@given(status=st.sampled_from(STATUSES), to=TEXT, error=TEXT, callback=st.none() | TEXT,
       segments=st.integers(min_value=1, max_value=255),
       price=st.integers(min_value=0, max_value=2**62), acked=st.floats(0, 2e9))
def test_a_record_reads_back_exactly_as_written(tmp_path_factory, status, to, error, callback,
                                                segments, price, acked):
    root = tmp_path_factory.mktemp("rec")
    keys = account_keys_in(root / "keys", ACCOUNT)
    env = open_env(root / "pop", map_size=8 << 20)
    try:
        store = MessageRecords(env, keys)
        rec = record(IdGenerator().new(), status, acked, to=to, error=error, callback_url=callback,
                     segments=segments, price_micro_usd=price)
        put(store, [rec])
        assert store.get(rec.message_id) == rec
    finally:
        env.close()


def test_get_of_an_unknown_or_malformed_id_is_none(records):
    assert records.get(IdGenerator().new()) is None
    assert records.get("not-an-id") is None


def test_the_open_index_holds_exactly_the_records_that_are_not_final(records):
    a, b, c = ids_at(T0, 3)
    put(records, [record(a), record(b, acked=T0 + 1), record(c, DELIVERED)])
    assert [r.message_id for r in records.open_records()] == [a, b]
    put(records, [record(a, FAILED)])  # becomes final: leaves the index
    assert [r.message_id for r in records.open_records()] == [b]
    with records.env.begin() as txn:
        assert txn.get(records.get(b) and bytes.fromhex(b[4:]), db=records._open) == b"1"


def test_since_returns_records_created_at_or_after_a_time(records):
    old, new = ids_at(T0, 2), ids_at(T0 + 100, 2)
    put(records, [record(i) for i in old + new])
    assert [r.message_id for r in records.since(T0 + 100)] == new
    assert [r.message_id for r in records.since(T0 + 200)] == []


def test_the_sweep_deletes_final_records_older_than_90_days_and_keeps_open_and_young_ones(records):
    old_final, old_open = ids_at(T0, 3), ids_at(T0 + 1, 1)
    young = ids_at(T0 + 50 * DAY, 2)
    put(records, [record(i, DELIVERED) for i in old_final] + [record(old_open[0])]
        + [record(i, FAILED) for i in young])
    now = T0 + RETENTION_SECONDS + DAY
    assert records.sweep(now) == 3
    assert all(records.get(i) is None for i in old_final)
    assert records.get(old_open[0]) is not None  # never swept from under its POP
    assert all(records.get(i) is not None for i in young)
    assert records.sweep(now) == 0
    assert records.sweep(T0 + 50 * DAY + RETENTION_SECONDS + 1) == 2


def test_a_sweep_before_anything_is_90_days_old_deletes_nothing(records):
    put(records, [record(i, DELIVERED) for i in ids_at(T0, 5)])
    assert records.sweep(T0 + RETENTION_SECONDS - DAY) == 0
    assert records.count() == 5


def test_for_account_and_delete_many_cover_one_accounts_records(records):
    mine, theirs = ids_at(T0, 2), ids_at(T0 + 1, 1)
    put(records, [record(i) for i in mine] + [record(theirs[0], account_id="acc_other")])
    assert sorted(r.message_id for r in records.for_account(ACCOUNT)) == mine
    assert records.ids_for_account(ACCOUNT) == mine
    assert records.delete_many(mine) == 2
    assert records.count() == 1 and list(records.open_records())[0].message_id == theirs[0]


def test_record_values_are_encrypted_on_disk(records, pop_dir):
    put(records, [record(i, to="+4915199988877", account_id="acc_plaintextcheck")
                  for i in ids_at(T0, 3)])
    raw = (pop_dir / "data.mdb").read_bytes()
    assert b"+4915199988877" not in raw and b"4915199988877" not in raw
    assert b"acc_plaintextcheck" not in raw


def test_a_tampered_record_raises_corrupt_record(records):
    [mid] = ids_at(T0, 1)
    put(records, [record(mid)])
    key = bytes.fromhex(mid[4:])
    with records.env.begin(write=True) as txn:
        blob = bytearray(txn.get(key, db=records._db))
        blob[-1] ^= 1
        txn.put(key, bytes(blob), db=records._db)
    with pytest.raises(CorruptRecord):
        records.get(mid)


def test_a_sweep_that_deletes_the_last_record_in_the_store_deletes_them_all(records):
    put(records, [record(i, DELIVERED) for i in ids_at(T0, 4)])
    assert records.sweep(T0 + RETENTION_SECONDS + DAY) == 4
    assert records.count() == 0


def test_records_of_an_erased_account_are_unreadable_and_never_written_again(records, pop_dir):
    [mid] = ids_at(T0, 1)
    [other] = ids_at(T0 + 1, 1)
    put(records, [record(mid, to="+4915100000001"), record(other, account_id="acc_other")])
    key = bytes.fromhex(mid[4:])
    with records.env.begin() as txn:
        value = bytes(txn.get(key, db=records._db))
    assert value[:16] == records.keys.token(ACCOUNT)  # the token, not the id, tells which key
    records.keys.shred(ACCOUNT)
    assert records.get(mid) is None and list(records.for_account(ACCOUNT)) == []
    assert [r.message_id for r in records.open_records()] == [other]
    assert put(records, [record(mid, DELIVERED)]) == 1  # a late status change of it is skipped...
    with records.env.begin() as txn:
        assert bytes(txn.get(key, db=records._db)) == value  # ...and writes nothing
    assert records.keys.sealer("acc_other") is not None  # other accounts are untouched
    assert records.get(other).account_id == "acc_other"


class _NoBodies:
    def put_many(self, txn, items) -> None:
        assert not list(items)  # (the batch below has no new message)


def test_a_batch_written_again_after_its_transaction_failed_counts_its_skipped_records_once(records):
    """A group transaction that fails is retried POP by POP (actors/group_commit.py), so one staged batch
    is written twice; what the write found is counted when its transaction commits, once."""
    [mid] = ids_at(T0, 1)
    put(records, [record(mid)])
    records.keys.shred(ACCOUNT)  # erased while a status change of it is staged
    store = SimpleNamespace(env=records.env, records=records, bodies=_NoBodies(), refunds=None,
                            debits=None)
    commit = PopCommit(store, body_ttl_seconds=600, expiry_grace_seconds=2)
    commit.dirty[mid] = record(mid, DELIVERED)
    batch = commit.stage([], [])
    with pytest.raises(RuntimeError), records.env.begin(write=True) as txn:
        commit.write_staged(txn, batch)
        raise RuntimeError("the group transaction failed")
    with records.env.begin(write=True) as txn:
        commit.write_staged(txn, batch)
    commit.committed(batch)
    assert commit.unsealable == 1


def test_a_sweep_and_an_erasure_larger_than_one_reserve_batch_delete_exactly_their_records(records):
    """They run in transactions that fit the store's reserve (``storage.headroom``): ~34 records each in
    this 32 MiB map, so 300 records take several, with open records at the batches' edges."""
    old = ids_at(T0, 300)
    assert batch_size(records.env, 3) < len(old) // 4
    put(records, [record(i, ACCEPTED if n % 7 == 0 else DELIVERED,
                         account_id=ACCOUNT if n % 2 else "acc_other") for n, i in enumerate(old)])
    kept = {i for n, i in enumerate(old) if n % 7 == 0}
    assert records.sweep(T0 + RETENTION_SECONDS + DAY) == len(old) - len(kept)
    assert {r.message_id for r in records.open_records()} == kept and records.count() == len(kept)
    mine = records.ids_for_account(ACCOUNT)
    assert records.delete_many(mine) == len(mine)
    assert records.count() == len(kept) - len(mine)
    assert list(records.for_account(ACCOUNT)) == []
