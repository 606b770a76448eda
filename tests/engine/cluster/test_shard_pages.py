"""A worker's records cross NATS a page at a time (``records_page``): every record of every POP shard
comes exactly once, in id order per POP, through the same query a worker answers."""

from __future__ import annotations

from types import SimpleNamespace

from engine import messages as m
from engine.cluster.cluster_shards import _record
from engine.cluster.shard_answers import QueryHandler
from engine.cluster.shards import LocalShards
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


class _ManyHolds:
    """A worker's shards with a hold list far larger than one NATS message (1 MB)."""

    def __init__(self, n: int) -> None:
        self.holds = [{"pop": "w0/fra", "hold_id": f"hold_{i:08d}", "reason": "r" * 200}
                      for i in range(n)]

    def active_holds(self) -> list[dict]:
        return self.holds


def test_an_answer_larger_than_a_nats_message_crosses_in_parts_over_a_real_server():
    from engine.cluster.cluster_shards import ClusterShards
    from engine.cluster.nats_server import NatsServer
    from engine.cluster.shard_answers import PART_BYTES
    from engine.cluster.transport import Transport

    big = _ManyHolds(12_000)  # ~3 MB encoded: three times NATS's default limit
    handler = QueryHandler(big)
    with NatsServer() as server:
        worker = Transport([server.url], "w0", lambda *a: True, answer=handler.answer).start()
        core = Transport([server.url], "core", lambda *a: True).start()
        try:
            shards = ClusterShards(core, ("w0",))
            assert shards.active_holds() == big.holds
            assert not handler._kept  # every part fetched: nothing left behind on the worker
        finally:
            core.stop()
            worker.stop()
    assert len(m.encode(m.ShardReply(True, big.holds, ""))) > 2 * PART_BYTES


def test_a_part_of_an_answer_no_longer_kept_is_an_error_not_a_wrong_answer():
    handler = QueryHandler(_ManyHolds(5_000))
    first = m.decode(handler.answer(m.encode(m.ShardQuery("active_holds", []))))
    assert isinstance(first, m.ShardReplyParts) and first.count >= 2
    reply = m.decode(handler.answer(m.encode(m.ShardQuery("answer_part", ["not-a-token", 0]))))
    assert not reply.ok and reply.error == "cluster_unavailable"


def test_a_started_server_used_as_a_context_manager_is_one_server_and_stops():
    from engine.cluster.nats_server import NatsServer

    server = NatsServer().start()
    first = server.proc
    with server.start() as same:  # (started twice: still the one process)
        assert same.proc is first and first.poll() is None
    assert first.poll() is not None  # stopped on leaving the block: nothing left running
