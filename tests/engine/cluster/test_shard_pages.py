"""A worker's records cross NATS a page at a time (``records_page``): every record of every POP shard
comes exactly once, in id order per POP, through the same query a worker answers."""

from __future__ import annotations

from types import SimpleNamespace

from engine import messages as m
from engine.cluster.shards import LocalShards, QueryHandler, _record
from engine.ids import IdGenerator
from storage.env import open_env
from storage.records import MessageRecord, MessageRecords
from tests.storage.conftest import account_keys_in

ACCOUNT = "acc_00000000000000aa"


def test_paged_records_come_once_each_across_pops_and_through_the_worker_query(tmp_path):
    keys = account_keys_in(tmp_path / "keys", ACCOUNT)
    ids, stores, written = IdGenerator(), {}, []
    for pop, n in (("fra", 5), ("gru", 0), ("sin", 3)):
        env = open_env(tmp_path / pop, map_size=16 << 20)
        records = MessageRecords(env, keys)
        rows = [MessageRecord(ids.new(), ACCOUNT, "+4915112345678", "ACME", "DE", pop, "c", "GSM-7", 1,
                              75_000, 1.0, 1.0, "delivered", "", 600, None, 1, 0.0) for _ in range(n)]
        with env.begin(write=True) as txn:
            records.put_many(txn, rows)
        stores[pop] = SimpleNamespace(records=records)
        written += [r.message_id for r in rows]
    shards = LocalShards(SimpleNamespace(pop_stores=stores))
    handler = QueryHandler(shards)
    seen, cursor, pages = [], None, 0
    while True:
        reply = m.decode(handler.answer(m.encode(m.ShardQuery("records_page", [cursor, 2]))))
        assert reply.ok, reply.result
        rows, cursor = reply.result
        seen += [_record(r).message_id for r in rows]
        pages += 1
        if cursor is None:
            break
    assert seen == written and pages == 5  # 2 + 2 + 1 of fra, then 2 + 1 of sin
    assert [r.message_id for r in shards.scan_records()] == written
