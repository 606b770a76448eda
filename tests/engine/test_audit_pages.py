"""Audit pages (``GET /v1/audit``, ``engine.audit_pages``): paging by ``next_since`` gives every entry
exactly once and in time order - also when entries of different logs share an instant across a page's
end - through the same path a cluster takes (a worker's ``hold_audit_page`` answer behind its
``ShardQuery``, merged by the core's ``ClusterShards``; only NATS is left out), and a worker's answer
holds at most the page's size of entries, never its whole trail since the cursor."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import messages as m
from engine.audit_pages import page_end
from engine.cluster.cluster_shards import ClusterShards
from engine.cluster.shard_answers import QueryHandler
from engine.cluster.shards import LocalShards
from engine.holds import _RemoteTrail
from engine.http.control_accounts import audit_page
from storage.audit import AuditEntry

ACCOUNT, PSN = "acc_00000000000000aa", "psn_" + "ab" * 16


class _Log:
    """An audit log: entries in time order, read from ``since`` on (``AuditLog.iter_entries``)."""

    def __init__(self, entries: list[AuditEntry]) -> None:
        self.entries = entries
        self.read = 0

    def iter_entries(self, since: float | None = None):
        for entry in self.entries:
            self.read += 1
            if since is None or entry.ts >= since:
                yield entry


def _entries(name: str, times: list[float]) -> list[AuditEntry]:
    return [AuditEntry(i + 1, ts, "support:x", "place_debug_window", f"{name}-{i}", "ok",
                       {"notes": "sealed"}, PSN if i % 3 == 0 else "", ACCOUNT if i % 3 == 0 else "")
            for i, ts in enumerate(sorted(times))]


class _Nats:
    """The core's transport, answering each ``ShardQuery`` with the worker's own handler; it counts
    the entries of each ``hold_audit_page`` answer."""

    def __init__(self, workers: dict[str, QueryHandler]) -> None:
        self.workers = workers
        self.answered: list[int] = []

    def request(self, node: str, payload: bytes, timeout: float, act_by: float | None = None,
                *, read: bool = False) -> bytes:
        raw = self.workers[node].answer(payload)
        reply = m.decode(raw)
        if m.decode(payload).kind == "hold_audit_page" and isinstance(reply, m.ShardReply):
            self.answered.append(len(reply.result))
        return raw


def _holds(open_notes: Any) -> SimpleNamespace:
    """A POP's holds as the trail reads them: notes opened, no hold record (named as written)."""
    return SimpleNamespace(open_notes=open_notes, get=lambda hold_id: None)


def _runtime(logs: dict[str, _Log], open_notes: Any) -> SimpleNamespace:
    return SimpleNamespace(audits=logs, holds={pop: _holds(open_notes) for pop in logs},
                           pseudonyms=SimpleNamespace(pseudonym=lambda account: PSN))


def _worker(logs: dict[str, _Log]) -> QueryHandler:
    return QueryHandler(LocalShards(_runtime(logs, lambda detail: {**detail, "notes": "opened"})))


def _cluster(pops: dict[str, dict[str, list[AuditEntry]]]) -> tuple[ClusterShards, _Nats]:
    nats = _Nats({node: _worker({pop: _Log(e) for pop, e in logs.items()})
                  for node, logs in pops.items()})
    return ClusterShards(nats, tuple(pops)), nats


def _page_through(trails: dict[str, list[Any]], limit: int, about: tuple[str, str] | None = None
                  ) -> list[tuple[str, str]]:
    """What an auditor reads following ``next_since`` (the handler's two steps)."""
    seen, since = [], 0.0
    for _ in range(10_000):
        shown, since = page_end(audit_page(trails, since, math.inf, limit, about), limit,
                                lambda e: e["ts"])
        seen += [(e["kind"], e["target"]) for e in shown]
        if since is None:
            return seen
    raise AssertionError("paging did not end")


TIMES = st.lists(st.integers(0, 12).map(float), max_size=14)  # few instants: many shared ones


@settings(max_examples=150, deadline=None)
@given(control=TIMES, w0_fra=TIMES, w0_sin=TIMES, w1_fra=TIMES, limit=st.integers(1, 6),
       about=st.booleans())
def test_paging_gives_every_entry_once_in_time_order_across_logs_and_workers(
        control, w0_fra, w0_sin, w1_fra, limit, about):
    logs = {name: _entries(name, times) for name, times in (
        ("control", control), ("w0/fra", w0_fra), ("w0/sin", w0_sin), ("w1/fra", w1_fra))}
    shards, _ = _cluster({"w0": {"fra": logs["w0/fra"], "sin": logs["w0/sin"]},
                          "w1": {"fra": logs["w1/fra"]}})
    try:
        trails = {"control": [_Log(logs["control"])], "retention_exception": [_RemoteTrail(shards)]}
        wanted = [e for entries in logs.values() for e in entries if not about or e.subject == PSN]
        ts_of = {e.target: e.ts for e in wanted}
        seen = _page_through(trails, limit, (PSN, ACCOUNT) if about else None)
        times = [ts_of[target] for _, target in seen]
        assert times == sorted(times) and len(set(seen)) == len(seen)  # in time order, none twice
        crowded = max(Counter(ts_of.values()).values(), default=0)
        if crowded <= limit:  # (more than a page at one instant: the rest of it is skipped, documented)
            assert sorted(target for _, target in seen) == sorted(ts_of)  # every one
            assert all(kind == ("control" if target.startswith("control") else "retention_exception")
                       for kind, target in seen)
    finally:
        shards.close()


def test_a_workers_answer_holds_at_most_the_page_not_its_trail_since_the_cursor():
    trail = _entries("w0/fra", [float(i) for i in range(5_000)])
    shards, nats = _cluster({"w0": {"fra": trail}, "w1": {"fra": _entries("w1/fra", [0.5, 1.5])}})
    try:
        rows, missing = shards.hold_audit_page(10.0, math.inf, 8)
        assert missing == {}
        assert [r[4] for r in rows] == [e.target for e in trail[10:18]]  # the 8 first after the cursor
        assert nats.answered and max(nats.answered) <= 8  # each worker: at most the page
        reply = m.decode(_worker({"fra": _Log(trail)}).answer(
            m.encode(m.ShardQuery("hold_audit_page", [0.0, math.inf, 3, None]))))
        assert reply.ok and len(reply.result) == 3
        assert reply.result[0][6] == {"notes": "opened"}  # the hold's notes opened for the auditor
    finally:
        shards.close()


def test_a_worker_reads_its_log_no_further_than_the_page():
    log = _Log(_entries("w0/fra", [float(i) for i in range(5_000)]))
    LocalShards(_runtime({"fra": log}, lambda d: d)).hold_audit_page(0.0, math.inf, 20)
    assert log.read <= 21


def test_the_embedding_apis_whole_trail_is_read_a_page_per_question(monkeypatch):
    from engine import holds

    monkeypatch.setattr(holds, "TRAIL_PAGE", 2)
    w0, w1 = _entries("w0/fra", [1.0, 2.0, 2.0, 3.0, 5.0]), _entries("w1/fra", [2.5, 3.0, 4.0])
    shards, nats = _cluster({"w0": {"fra": w0}, "w1": {"fra": w1}})
    try:
        trail = _RemoteTrail(shards)
        read = list(trail.iter_entries())
        assert [e.target for e in read] == [e.target for e in sorted(w0 + w1, key=lambda e: e.ts)]
        assert trail.missing == {} and max(nats.answered) <= 3  # a page (and the one after it)
        assert [e.target for e in trail.iter_entries(3.0)] == ["w0/fra-3", "w1/fra-1", "w1/fra-2",
                                                              "w0/fra-4"]
    finally:
        shards.close()
