"""Which workers may hold an account's messages (``engine.cluster.topology``), and that the core asks
those and no other for the account's reads (``ClusterShards``, over a stand-in transport).

After ``--workers 1`` then ``--workers 2`` an account that now belongs to w1 still has its earlier
messages on w0: both are asked. While the count never changed only the account's own worker is: a hung
worker then fails no other worker's accounts. A core whose history is unknown (a data directory from
before the record was kept) asks every worker, as before.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import messages as m
from engine.cluster.cluster_shards import ClusterShards
from engine.cluster.topology import FILE, TopologyHistory, record
from engine.errors import ConfigError

WORKERS = ("w0", "w1", "w2", "w3")


def _worker(account_id: str, n: int) -> str:
    return f"w{zlib.crc32(account_id.encode()) % n}"


def test_a_new_cores_history_grows_with_each_new_worker_count(tmp_path):
    assert record(tmp_path, 2, fresh=True) == TopologyHistory((2,))
    assert record(tmp_path, 2, fresh=False) == TopologyHistory((2,))  # the same count: unchanged
    assert record(tmp_path, 3, fresh=False) == TopologyHistory((2, 3))
    assert json.loads((tmp_path / FILE).read_text()) == {"worker_counts": [2, 3], "complete": True,
                                                         "last": 3}
    assert record(tmp_path, 2, fresh=False, accept_fewer=True) == TopologyHistory((2, 3))  # back to 2


def test_fewer_workers_than_the_cluster_last_ran_with_is_refused_naming_the_recorded_count(tmp_path):
    """A ``--role core`` (its workers' directories are on other hosts) restarted with 2 of its 4
    workers: the messages on w2 and w3 would vanish from their accounts' reads. Before, it started and
    asked neither."""
    record(tmp_path, 4, fresh=True)
    with pytest.raises(ConfigError) as refused:
        record(tmp_path, 2, fresh=False)
    message = str(refused.value)
    assert "last ran with 4 workers" in message and str(tmp_path / FILE) in message
    assert "w2, w3" in message and "--accept-fewer-workers" in message
    assert json.loads((tmp_path / FILE).read_text())["last"] == 4  # nothing recorded
    assert record(tmp_path, 4, fresh=False) == TopologyHistory((4,))  # all of them: fine


def test_an_accepted_shrink_is_recorded_and_not_asked_again(tmp_path):
    record(tmp_path, 4, fresh=True)
    assert record(tmp_path, 2, fresh=False, accept_fewer=True) == TopologyHistory((4, 2))
    assert record(tmp_path, 2, fresh=False) == TopologyHistory((4, 2))  # accepted once: remembered
    with pytest.raises(ConfigError):
        record(tmp_path, 1, fresh=False)  # fewer again: asked again


def test_a_file_from_before_last_was_kept_counts_its_largest_count(tmp_path):
    (tmp_path / FILE).write_text(json.dumps({"worker_counts": [2, 4], "complete": True}))
    with pytest.raises(ConfigError, match="last ran with 4 workers"):
        record(tmp_path, 2, fresh=False)


def test_a_supervising_core_whose_missing_workers_hold_nothing_may_shrink(tmp_path):
    """``smsroute run --workers N`` keeps its workers' directories: LocalCluster refuses to start when
    a missing one holds messages, so one that holds none needs no flag."""
    record(tmp_path, 3, fresh=True)
    for node in ("w0", "w1", "w2"):
        (tmp_path / "workers" / node).mkdir(parents=True)
    (tmp_path / "workers" / "w0" / "pops").mkdir()
    assert record(tmp_path, 2, fresh=False) == TopologyHistory((3, 2))
    (tmp_path / "workers" / "w1" / "pops").mkdir()
    with pytest.raises(ConfigError):
        record(tmp_path, 1, fresh=False)  # w1 holds messages (not LocalCluster's case: refused here)


def test_a_core_that_ran_before_the_history_was_kept_asks_every_worker(tmp_path):
    unknown = record(tmp_path, 2, fresh=False)  # stores, but no file: earlier counts are not known
    assert unknown.counts is None and unknown.holders("acc_0000000000000001", WORKERS) == WORKERS
    assert record(tmp_path, 3, fresh=False).counts is None  # and stays unknown
    (tmp_path / FILE).write_text("{not json")
    assert record(tmp_path, 3, fresh=False).counts is None  # unreadable: unknown, not a failed start


@given(st.integers(0, 2**64 - 1), st.lists(st.integers(1, 6), min_size=1, max_size=4),
       st.integers(1, 6))
def test_the_holders_are_the_accounts_worker_under_each_count_that_still_runs(n, counts, now):
    account_id = f"acc_{n:016x}"
    workers = tuple(f"w{i}" for i in range(now))
    want = {_worker(account_id, k) for k in [*counts, now]} & set(workers)
    got = TopologyHistory(tuple(counts)).holders(account_id, workers)
    assert set(got) == want and list(got) == sorted(got, key=workers.index)
    assert TopologyHistory((now,)).holders(account_id, workers) == (_worker(account_id, now),)


class _Transport:
    """Answers every question at once, with nothing found; records who was asked what."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def request(self, node: str, payload: bytes, timeout: float, act_by: float | None = None,
                *, read: bool = False) -> bytes:
        q = m.decode(payload)
        self.asked.append((node, q.kind))
        return m.encode(m.ShardReply(True, _nothing(q.kind, q.args), ""))


def _nothing(kind: str, args: list[Any]) -> Any:
    if kind == "find_records":
        return [None] * len(args[0])
    return None if kind == "find_record" else []


def _asked_for_account(history: TopologyHistory, account_id: str) -> set[str]:
    shards = ClusterShards(_Transport(), ("w0", "w1"), history)
    try:
        shards.records_for_account(account_id)
        shards.account_pages(account_id, None, b"", 10, None, 100)
        shards.find_records(["msg_x"], account_id=account_id)
        shards.find_record("msg_x", account_id)
        asked = shards.transport.asked
        assert {kind for _, kind in asked} == {"records_for_account_page", "account_pages",
                                               "find_records", "find_record"}
        return {node for node, _ in asked}
    finally:
        shards.close()


def test_an_accounts_reads_ask_the_workers_of_its_history_and_no_other():
    account_id = next(f"acc_{i:016x}" for i in range(100) if _worker(f"acc_{i:016x}", 2) == "w1")
    assert _asked_for_account(TopologyHistory((2,)), account_id) == {"w1"}  # never changed
    assert _asked_for_account(TopologyHistory((1, 2)), account_id) == {"w0", "w1"}  # it moved
    assert _asked_for_account(TopologyHistory(), account_id) == {"w0", "w1"}  # unknown: all
