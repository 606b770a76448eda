"""storage.owed_debits: the POP's durable note of debit batches the ledger has not confirmed."""

from __future__ import annotations

from engine.ids import IdGenerator
from storage.env import open_env
from storage.owed_debits import OwedDebits

IDS = IdGenerator()


def test_a_batch_is_owed_until_removed_and_lists_its_message_ids_in_order(tmp_path):
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    owed = OwedDebits(env)
    first, second = [IDS.new() for _ in range(3)], [IDS.new()]
    with env.begin(write=True) as txn:
        a = owed.add(txn, first)
        b = owed.add(txn, second)
    assert b > a
    assert owed.all() == {a: first, b: second}
    with env.begin(write=True) as txn:
        owed.remove(txn, [a])
    assert owed.all() == {b: second}
    env.close()


def test_batch_numbers_keep_increasing_after_the_store_is_opened_again(tmp_path):
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    owed = OwedDebits(env)
    with env.begin(write=True) as txn:
        last = owed.add(txn, [IDS.new()])
    env.close()
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    owed = OwedDebits(env)
    with env.begin(write=True) as txn:
        assert owed.add(txn, [IDS.new()]) > last
    env.close()


def test_a_batch_written_in_an_aborted_transaction_is_not_owed(tmp_path):
    env = open_env(tmp_path / "pop", map_size=16 << 20)
    owed = OwedDebits(env)
    txn = env.begin(write=True)
    owed.add(txn, [IDS.new()])
    txn.abort()
    assert owed.all() == {}
    env.close()
