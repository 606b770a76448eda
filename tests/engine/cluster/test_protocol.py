"""The cluster protocol (``engine.cluster.protocol``): how processes of different smsroute versions tell
each other apart, and the core's refusal of a worker or edge of another protocol - without processes.

Before, nothing compared versions: a new core with old workers failed every hold placement (``place_hold``
had gained arguments) and the rest worked, a partial failure an operator could only read from scattered
errors. Now a worker or edge says its protocol (ready line, presence announcements), the core hands one of
another protocol no work and says so, and a worker or edge that hears a core of another protocol says so.
"""

from __future__ import annotations

import io
import logging
import queue
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from engine import messages as m
from engine.cluster import local
from engine.cluster.cluster_shards import ClusterShards
from engine.cluster.liveness import Liveness
from engine.cluster.local import LocalCluster
from engine.cluster.presence import (
    ASK,
    HERE,
    READY,
    SUBJECT,
    PresenceAnnouncer,
    PresenceBoard,
)
from engine.cluster.protocol import (
    PROTOCOL,
    UNNUMBERED,
    mismatch,
    of_ready_line,
    ready_suffix,
)
from engine.errors import ClusterUnavailable

PROTOCOLS = st.integers(min_value=0, max_value=(1 << 31) - 1)
OTHER = PROTOCOL + 1


@given(PROTOCOLS, PROTOCOLS, st.sampled_from(("core", "edge", "worker")))
def test_only_equal_protocols_work_together_and_a_refusal_names_both(theirs, ours, me):
    why = mismatch(theirs, ours, me)
    assert (why is None) == (theirs == ours)
    if why is not None:
        assert why == f"protocol {theirs}, {me} {ours}"


@given(PROTOCOLS, st.sampled_from(("smsroute worker w0 ready", "smsroute edge e1 ready on ::1:8080")))
def test_a_ready_line_says_its_protocol_and_one_without_is_a_process_from_before_numbers(protocol, line):
    assert of_ready_line(line + ready_suffix(protocol)) == protocol
    assert of_ready_line(line) == UNNUMBERED
    assert of_ready_line(line + " protocol=x") == UNNUMBERED  # not taken for a number of ours
    assert line.startswith(line)  # (an older reader matches the line by its start: it still does)


class Wire:
    """A transport's announcement side: what was published; published frames reach the listeners."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.sent: list[m.Message] = []
        self.listeners: list = []

    def announce(self, suffix: str, payload: bytes, wait: float = 0.0) -> None:
        assert suffix == SUBJECT
        self.sent.append(m.decode(payload))
        for listener in list(self.listeners):
            listener(payload)

    def listen(self, suffix: str, callback) -> None:
        self.listeners.append(callback)


def _alarms(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "ALARM" in r.getMessage()]


def test_the_core_refuses_a_worker_of_another_protocol_with_one_alarm_and_asks_it_nothing(caplog):
    board = PresenceBoard(("w0", "w1"), 10.0)
    caplog.set_level(logging.WARNING)
    for _ in range(3):  # a beat a second: one ALARM, not one per beat
        board.heard("w1", READY, protocol=OTHER)
        board.heard("w0", READY)
    assert board.refusal("w1") == f"protocol {OTHER}, core {PROTOCOL}"
    assert board.refusal("w0") is None
    [alarm] = _alarms(caplog)
    assert f"worker w1 speaks cluster protocol {OTHER}, this core {PROTOCOL}" in alarm
    shards = ClusterShards(_NeverAsked(), ("w0", "w1"))
    shards.not_answering = board.mismatched  # (as actors.cluster_link sets it for --role core)
    try:
        view = shards.holds_view()
        assert view["holds_missing"] == {"w1": f"protocol {OTHER}, core {PROTOCOL}: not asked"}
    finally:
        shards.close()
    board.heard("w1", READY)  # a worker of our protocol took its place
    assert board.refusal("w1") is None and board.mismatched("w1") is None
    assert "speaks cluster protocol" in caplog.records[-1].getMessage()
    assert len(_alarms(caplog)) == 1


class _NeverAsked:
    def request(self, node, payload, timeout, act_by=None, *, read=False):
        if node == "w1":
            raise AssertionError("a worker of another protocol was asked")
        return m.encode(m.ShardReply(True, [], ""))


def test_the_core_says_its_protocol_to_whoever_asks_but_not_to_itself():
    wire = Wire("core")
    PresenceBoard(("w0",), 10.0).listen(wire)
    assert wire.sent == [m.WorkerPresence("core", ASK, PROTOCOL)]  # its own ask: no answer to itself
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w0", ASK, OTHER)))  # a worker that starts
    assert wire.sent[-1] == m.WorkerPresence("core", HERE, PROTOCOL)
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("e0", ASK, PROTOCOL)))  # an edge that starts
    assert wire.sent[-1] == m.WorkerPresence("core", HERE, PROTOCOL) and len(wire.sent) == 5


def test_a_worker_says_once_that_the_core_speaks_another_protocol(caplog):
    wire = Wire("w0")
    caplog.set_level(logging.WARNING)
    announcer = PresenceAnnouncer(wire, "w0", fresh_for=2.0, protocol=OTHER).start()
    assert wire.sent == [m.WorkerPresence("w0", ASK, OTHER)]
    for state in (HERE, ASK, HERE):
        announcer._on_ask(m.encode(m.WorkerPresence("core", state, PROTOCOL)))
    [alarm] = _alarms(caplog)
    assert f"the core speaks cluster protocol {PROTOCOL}, this worker {OTHER}" in alarm
    announcer._on_ask(m.encode(m.WorkerPresence("e0", ASK, PROTOCOL)))  # an edge's: not the core's
    assert len(_alarms(caplog)) == 1 and announcer.core.core_protocol == PROTOCOL


def test_an_edge_of_another_protocol_refuses_the_workers_and_says_the_core_differs(caplog):
    wire = Wire("e0")
    caplog.set_level(logging.WARNING)
    board = PresenceBoard(("w0",), 10.0, protocol=OTHER, me="edge").listen(wire)
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w0", READY, PROTOCOL)))
    assert board.refusal("w0") == f"protocol {PROTOCOL}, edge {OTHER}"
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("core", HERE, PROTOCOL)))
    assert any(f"the core speaks cluster protocol {PROTOCOL}, this edge {OTHER}" in a
               for a in _alarms(caplog))
    assert not [s for s in wire.sent if s.state == HERE and s.node != "core"]  # an edge answers nothing


def _supervised(tmp_path, ready_line: str, caplog) -> LocalCluster:
    """A cluster of one worker whose spawn printed ``ready_line`` (no process: a stand-in)."""
    cluster = LocalCluster(tmp_path, 1)
    w = cluster.workers[0]
    w.proc = SimpleNamespace(pid=12345, returncode=None, poll=lambda: None)
    w.life = Liveness()
    seen: queue.SimpleQueue = queue.SimpleQueue()
    caplog.set_level(logging.WARNING)
    local._read_until_ready(io.StringIO(ready_line + "\nsmsroute beat w0\n"), "w0", seen, w.life)
    assert seen.get_nowait() is True
    return cluster


def test_a_supervised_worker_of_another_protocol_is_refused_from_its_ready_line(tmp_path, caplog):
    cluster = _supervised(tmp_path, f"smsroute worker w0 ready protocol={OTHER}", caplog)
    why = f"protocol {OTHER}, core {PROTOCOL}"
    assert cluster.refusal("w0") == why and cluster.not_answering("w0") == why
    [row] = cluster.status()
    assert (row["protocol"], row["protocol_mismatch"], row["ready"]) == (OTHER, why, False)
    [alarm] = _alarms(caplog)
    assert f"worker w0 speaks another cluster protocol ({why})" in alarm


def test_a_supervised_worker_from_before_protocol_numbers_is_refused_too(tmp_path, caplog):
    cluster = _supervised(tmp_path, "smsroute worker w0 ready", caplog)
    assert cluster.refusal("w0") == f"protocol 0, core {PROTOCOL}"


def test_a_supervised_worker_of_our_protocol_is_ready(tmp_path, caplog):
    cluster = _supervised(tmp_path, f"smsroute worker w0 ready{ready_suffix(PROTOCOL)}", caplog)
    assert cluster.refusal("w0") is None and cluster.status()[0]["ready"]
    assert not _alarms(caplog)


def test_the_refusal_reaches_a_submit_as_a_worker_that_is_not_ready(tmp_path, caplog):
    """What a submit's hand-off asks (``RemoteRef.refusal``): 503 ``cluster_unavailable`` naming it."""
    from engine.cluster.transport import RemoteRef

    cluster = _supervised(tmp_path, f"smsroute worker w0 ready protocol={OTHER}", caplog)
    transport = SimpleNamespace(usable=True, readiness=cluster)
    refusal = RemoteRef(transport, "w0", "session/acc_0000000000000000").refusal()
    assert isinstance(refusal, ClusterUnavailable) and refusal.code == "cluster_unavailable"
    assert f"not ready (protocol {OTHER}, core {PROTOCOL}); nothing was sent" in refusal.message


def test_metrics_show_a_worker_of_another_protocol():
    from engine.http.metrics import HttpMetrics, Snapshot

    text = HttpMetrics(lambda: Snapshot(engine={"workers": [
        {"node": "w0", "alive": True, "protocol_mismatch": None},
        {"node": "w1", "alive": True, "protocol_mismatch": f"protocol {OTHER}, core {PROTOCOL}"}]})
    ).exposition().decode()
    assert 'smsroute_worker_protocol_mismatch{worker="w0"} 0.0' in text
    assert 'smsroute_worker_protocol_mismatch{worker="w1"} 1.0' in text


def test_production_code_reads_no_test_only_environment_variable():
    """No engine, actor, store or bench module names an ``SMSROUTE_TEST_*`` variable: a test-only
    switch in production code is one a production process inherits (before: every worker and edge read
    ``SMSROUTE_TEST_PROTOCOL``). Tests start a child of another protocol through
    ``tests/engine/cluster/other_protocol.py`` instead."""
    root = Path(__file__).resolve().parents[3]
    named = [str(path.relative_to(root)) for folder in ("engine", "actors", "storage", "bench")
             for path in (root / folder).rglob("*.py") if "SMSROUTE_TEST_" in path.read_text()]
    assert named == []
