"""A late remote worker nobody is subscribed for is down at once (``engine.cluster.late_probe``),
without processes: a board, a fake clock and a transport whose probes the test answers."""

from __future__ import annotations

from collections.abc import Callable

from engine import messages as m
from engine.cluster.late_probe import EVERY_S, LATE_S, LateProbe
from engine.cluster.presence import DOWN, READY, SILENT, STOPPING, PresenceBoard

SILENT_AFTER = 10.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Wire:
    """Keeps each probe's answer callback for the test to call; records announcements."""

    def __init__(self) -> None:
        self.probes: list[tuple[str, Callable[[bool], None]]] = []
        self.announced: list[tuple[str, str]] = []
        self.up = True

    def probe(self, node: str, timeout: float, done: Callable[[bool], None]) -> bool:
        if self.up:
            self.probes.append((node, done))
        return self.up

    def announce(self, _suffix: str, payload: bytes, wait: float = 0.0) -> None:
        msg = m.decode(payload)
        self.announced.append((msg.node, msg.state))


def _set_up(workers: tuple[str, ...] = ("w0",)) -> tuple[Clock, PresenceBoard, Wire, LateProbe, list]:
    clock, wire = Clock(), Wire()
    board = PresenceBoard(workers, SILENT_AFTER, clock)
    gone: list[str] = []
    board.on_gone = gone.append
    probe = LateProbe(workers, board, wire, lambda: board, clock)
    return clock, board, wire, probe, gone


def test_a_late_worker_nobody_subscribes_for_is_down_at_once_and_the_edges_told():
    clock, board, wire, probe, gone = _set_up()
    board.heard("w0", READY)
    clock.now += LATE_S - 0.01
    probe.tell(None)
    assert wire.probes == []  # beats a second apart: not late yet, nothing sent
    clock.now += 0.01
    probe.tell(None)
    probe.tell(None)
    assert [node for node, _ in wire.probes] == ["w0"]  # one at a time
    wire.probes[0][1](True)  # the server: no responders
    assert board.refusal("w0") == DOWN and gone == ["w0"]  # what was sent to it fails now
    assert wire.announced == [("w0", STOPPING), ("w0", DOWN)]
    board.heard("w0", READY)  # (its host started it again)
    assert board.refusal("w0") is None


def test_a_subscribed_worker_that_does_not_answer_still_falls_to_the_silence_verdict():
    clock, board, wire, probe, gone = _set_up()
    board.heard("w0", READY)
    sent = 0
    while clock.now < 100.0 + SILENT_AFTER + 5:
        clock.now += 0.25
        probe.tell(None)
        if len(wire.probes) > sent:
            sent = len(wire.probes)
            wire.probes[-1][1](False)  # timed out: somebody holds the subscription (stopped)
        if board.state_of("w0") != SILENT:
            assert board.refusal("w0") is None, clock.now  # still ready until silent
    assert board.refusal("w0") == SILENT and gone == [] and wire.announced == []
    # while late: about one a second, not one per tick; none once silent
    assert (SILENT_AFTER - LATE_S) / EVERY_S - 1 <= sent <= (SILENT_AFTER - LATE_S) / EVERY_S + 1
    assert probe.counts == {"sent": sent, "nobody": 0, "taken": sent}


def test_a_worker_heard_while_its_probe_was_out_is_not_marked_down():
    clock, board, wire, probe, gone = _set_up()
    board.heard("w0", READY)
    clock.now += LATE_S
    probe.tell(None)
    board.heard("w0", READY)  # its beat arrived (a slow host) before the server's answer
    wire.probes[0][1](True)  # (e.g. it was between two connections)
    assert board.refusal("w0") is None and gone == []


def test_no_probe_where_the_board_does_not_decide_or_for_a_worker_not_ready():
    clock, board, wire, _, _ = _set_up(("w0", "w1"))
    supervised = LateProbe(board.workers, board, wire, lambda: object(), clock)  # --workers N
    board.heard("w0", READY)
    board.heard("w1", STOPPING)
    clock.now += LATE_S + 1
    supervised.tell(None)
    assert wire.probes == []
    own = LateProbe(board.workers, board, wire, lambda: board, clock)
    wire.up = False  # the link is down: nothing sent, tried again next tick
    own.tell(None)
    wire.up = True
    own.tell(None)
    assert [node for node, _ in wire.probes] == ["w0"]  # not w1: stopping, answers what it took
