"""The readiness verdicts a submit is refused by (``engine.cluster.presence``), without processes: the
board of what workers announced, and a worker's announcer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine import messages as m
from engine.cluster.presence import (
    ASK,
    DOWN,
    NOT_SEEN,
    READY,
    SILENT,
    STARTING,
    STOPPING,
    SUBJECT,
    PresenceAnnouncer,
    PresenceBoard,
    announce_down,
)
from engine.cluster.protocol import PROTOCOL

WORKERS = ("w0", "w1")
SILENT_AFTER = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_worker_is_refused_until_heard_ready_then_when_it_stops_or_falls_silent():
    clock = Clock()
    board = PresenceBoard(WORKERS, SILENT_AFTER, clock)
    assert board.refusal("w0") == NOT_SEEN and board.state_of("w1") == NOT_SEEN
    assert board.heard("w0", READY)
    assert board.refusal("w0") is None and board.refusal("w1") == NOT_SEEN
    clock.now += SILENT_AFTER - 0.01
    assert board.refusal("w0") is None  # a few late beats refuse nothing
    clock.now += 0.01
    assert board.refusal("w0") == SILENT
    assert board.heard("w0", READY)  # it answers again
    assert board.refusal("w0") is None
    assert board.heard("w0", STOPPING)
    assert board.refusal("w0") == STOPPING  # at once, not after a silence
    clock.now += 3 * SILENT_AFTER
    assert board.state_of("w0") == STOPPING
    assert board.heard("w0", READY)  # started again
    assert board.refusal("w0") is None


def test_what_is_not_a_workers_announcement_changes_nothing():
    board = PresenceBoard(WORKERS, SILENT_AFTER, Clock())
    assert not board.heard("w9", READY)  # no worker of this cluster
    assert not board.heard("e0", READY)
    assert not board.heard("w0", ASK)  # a listener's question
    assert not board.heard("w0", "dancing")
    assert board.refusal("w0") == NOT_SEEN
    assert board.refusal("core") is None  # not a worker: not the board's to judge


def test_status_rows_show_remote_workers_as_the_supervised_ones_are_shown():
    clock = Clock()
    board = PresenceBoard(WORKERS, SILENT_AFTER, clock)
    board.heard("w0", READY)
    clock.now += SILENT_AFTER + 1
    board.heard("w1", READY)
    rows = {r["node"]: r for r in board.status()}
    assert rows["w0"]["state"] == SILENT and rows["w0"]["hung"] and not rows["w0"]["ready"]
    assert rows["w0"]["silent_seconds"] == SILENT_AFTER + 1
    assert rows["w1"]["state"] == READY and rows["w1"]["ready"] and rows["w1"]["alive"]
    assert not rows["w1"]["hung"] and rows["w1"]["remote"]


EVENTS = st.lists(st.tuples(st.sampled_from(("w0", "w1", "w7")),
                            st.sampled_from((READY, STOPPING, ASK, "x")),
                            st.floats(min_value=0.0, max_value=2.5 * SILENT_AFTER),
                            st.sampled_from((PROTOCOL, PROTOCOL + 1, PROTOCOL - 1))), max_size=30)


@given(EVENTS)
def test_a_worker_takes_submits_exactly_while_its_last_word_is_ready_recent_and_of_our_protocol(
        events):
    """Against a model: after any sequence of announcements (valid or not, of any protocol) at any
    intervals, a worker is refused unless the last valid thing it said was ``ready``, less than
    ``silent_after`` ago, with the listener's protocol; the reason names what it said last (or that
    it never said anything, or the two protocols), and the core asks it nothing while its last
    ``ready`` carried another protocol (a ``stopping``, which the core may say for it, keeps it)."""
    clock = Clock()
    board = PresenceBoard(WORKERS, SILENT_AFTER, clock)
    last: dict[str, tuple[str, float]] = {}
    speaks: dict[str, int] = {}
    for node, state, wait, protocol in events:
        clock.now += wait
        if board.heard(node, state, protocol=protocol):
            last[node] = (state, clock.now)
            if state == READY:
                speaks[node] = protocol
        for w in WORKERS:
            said = last.get(w)
            other = (f"protocol {speaks[w]}, core {PROTOCOL}"
                     if speaks.get(w, PROTOCOL) != PROTOCOL else None)
            if said is None:
                expected = NOT_SEEN
            elif said[0] == STOPPING:
                expected = STOPPING
            elif clock.now - said[1] >= SILENT_AFTER:
                expected = SILENT
            else:
                expected = other
            assert board.refusal(w) == expected
            assert board.state_of(w) == (expected or READY)
            assert board.mismatched(w) == other
            row = next(r for r in board.status() if r["node"] == w)
            assert row["ready"] == (expected is None) and row["protocol_mismatch"] == other
    assert set(last) <= set(WORKERS)


class Wire:
    """A transport's announcement side: what was published, and the listeners."""

    def __init__(self) -> None:
        self.node = "w0"
        self.sent: list[m.Message] = []
        self.listeners: list = []

    def announce(self, suffix: str, payload: bytes, wait: float = 0.0) -> None:
        assert suffix == SUBJECT
        self.sent.append(m.decode(payload))
        for listener in self.listeners:
            listener(payload)

    def listen(self, suffix: str, callback) -> None:
        assert suffix == SUBJECT
        self.listeners.append(callback)


def test_a_worker_answers_a_question_only_with_a_recent_ready_and_says_nothing_after_stopping():
    clock = Clock()
    wire = Wire()
    announcer = PresenceAnnouncer(wire, "w0", fresh_for=2.0, clock=clock).start()
    assert wire.sent == [m.WorkerPresence("w0", ASK, PROTOCOL)]  # (so the core says its protocol)
    ask = m.encode(m.WorkerPresence("e0", ASK, PROTOCOL))
    announcer._on_ask(ask)
    assert len(wire.sent) == 1  # never ready yet: nothing to say
    announcer.ready()
    assert wire.sent[-1] == m.WorkerPresence("w0", READY, PROTOCOL)
    clock.now += 1.0
    announcer._on_ask(ask)
    assert wire.sent[-1] == m.WorkerPresence("w0", READY, PROTOCOL) and len(wire.sent) == 3
    clock.now += 1.5  # its heartbeat has not beaten for a while: its actors may be stuck
    announcer._on_ask(ask)
    announcer._on_ask(m.encode(m.WorkerPresence("w1", READY, PROTOCOL)))  # a worker's word: no question
    assert len(wire.sent) == 3
    announcer.stopping()
    assert wire.sent[-1] == m.WorkerPresence("w0", STOPPING, PROTOCOL)
    announcer.ready()  # a beat while it stops
    announcer._on_ask(ask)
    assert wire.sent[-1] == m.WorkerPresence("w0", STOPPING, PROTOCOL) and len(wire.sent) == 4


def test_a_board_listening_on_the_wire_hears_the_workers_and_asks_them_first():
    clock = Clock()
    wire = Wire()
    board = PresenceBoard(WORKERS, SILENT_AFTER, clock).listen(wire)
    assert wire.sent == [m.WorkerPresence("w0", ASK, PROTOCOL)]  # (the wire's own node asks)
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w1", READY, PROTOCOL)))
    wire.listeners[0](b"\x00not a frame")  # dropped, logged
    assert board.refusal("w1") is None and board.refusal("w0") == NOT_SEEN
    assert not board.wait_all_heard(0)
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w0", READY, PROTOCOL)))
    assert board.wait_all_heard(0)


def test_a_worker_that_asks_started_again_and_one_announced_down_are_refused_until_ready():
    """A worker asks once, as it starts: whatever an earlier process of it had taken is gone, and it
    is not subscribed yet, although its last ``ready`` is recent (a kill -9 and a quick restart on
    another host: before, it counted as ready until silent, 10 s). The core announces a supervised
    worker that exited ``down``, after a ``stopping`` for listeners that know only that."""
    clock = Clock()
    wire = Wire()
    wire.node = "core"
    board = PresenceBoard(WORKERS, SILENT_AFTER, clock).listen(wire)
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w1", READY, PROTOCOL)))
    assert board.refusal("w1") is None
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w1", ASK, PROTOCOL)))
    assert board.refusal("w1") == STARTING
    assert wire.sent[-1] == m.WorkerPresence("core", "here", PROTOCOL)  # (the core still says its own)
    wire.announce(SUBJECT, m.encode(m.WorkerPresence("w1", READY, PROTOCOL)))
    assert board.refusal("w1") is None

    announce_down(wire, "w1")
    assert wire.sent[-2:] == [m.WorkerPresence("w1", STOPPING, PROTOCOL),
                              m.WorkerPresence("w1", DOWN, PROTOCOL)]
    assert board.refusal("w1") == DOWN
    assert board.status()[1]["state"] == DOWN and not board.status()[1]["ready"]
