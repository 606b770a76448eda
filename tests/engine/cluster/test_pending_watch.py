"""What waits for a worker judged gone fails at once: the submits sent to it as "outcome unknown", the
questions it was asked (only the reads while it is merely hung); nothing for a worker that is ready or
stopping gracefully (it still answers what it took)."""

from __future__ import annotations

import pytest

from engine.bridge import Bridge, InFlightGate
from engine.cluster.pending_watch import SETTLE_S, PendingWatch
from engine.cluster.presence import DOWN, READY, STARTING, PresenceBoard
from engine.errors import OutcomeUnknown


class Verdicts:
    def __init__(self) -> None:
        self.why: dict[str, str | None] = {}

    def refusal(self, node: str) -> str | None:
        return self.why.get(node)


class Questions:
    """A transport's ``give_up_on``, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def give_up_on(self, node: str, reads_only: bool = False) -> int:
        self.calls.append((node, reads_only))
        return 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sent(bridge: Bridge, node: str, n: int = 1) -> list:
    futures = []
    for _ in range(n):
        rid, fut = bridge.new_request(holds_slot=True)
        bridge.sent_to([rid], node)
        futures.append(fut)
    return futures


def _setup() -> tuple[Bridge, Verdicts, Questions, Clock, PendingWatch]:
    gate = InFlightGate(100)
    gate.try_acquire(3)
    bridge, verdicts, questions, clock = Bridge(gate), Verdicts(), Questions(), Clock()
    watch = PendingWatch(["w0", "w1"], bridge, questions, lambda: verdicts, clock)
    return bridge, verdicts, questions, clock, watch


def test_a_worker_gone_fails_its_submits_as_outcome_unknown_and_all_its_questions():
    bridge, verdicts, questions, _, watch = _setup()
    on_w0, on_w1 = _sent(bridge, "w0", 2), _sent(bridge, "w1")
    watch.check()
    assert not any(f.done() for f in on_w0 + on_w1) and questions.calls == []

    verdicts.why["w0"] = "down"
    watch.check()
    for fut in on_w0:
        with pytest.raises(OutcomeUnknown) as err:
            fut.result(0)
        assert err.value.maybe_sent  # an Idempotency-Key stays pending: a retry cannot send twice
    assert not on_w1[0].done()
    assert questions.calls == [("w0", False)]
    assert bridge.gate.in_flight == 1  # their slots given back
    assert watch.failed == {"submits": 2, "questions": 1}


@pytest.mark.parametrize("why", ["hung", "silent"])
def test_a_hung_worker_fails_its_submits_but_only_its_reads(why):
    bridge, verdicts, questions, _, watch = _setup()
    fut = _sent(bridge, "w1")[0]
    verdicts.why["w1"] = why  # it may wake: an action must not be reported failed and done later
    watch.check()
    assert isinstance(fut.exception(0), OutcomeUnknown)
    assert questions.calls == [("w1", True)]


def test_a_worker_stopping_gracefully_is_left_to_answer():
    bridge, verdicts, questions, _, watch = _setup()
    fut = _sent(bridge, "w0")[0]
    verdicts.why["w0"] = "stopping"
    watch.check()
    assert not fut.done() and questions.calls == []


def test_an_answered_submit_is_forgotten_and_the_watch_acts_once_per_departure():
    bridge, verdicts, questions, clock, watch = _setup()
    rid, fut = bridge.new_request()
    bridge.sent_to([rid], "w0")
    bridge.fail(rid, RuntimeError("answered otherwise"))
    verdicts.why["w0"] = "down"
    watch.check()
    assert watch.failed["submits"] == 0  # nothing left noted for an answered request

    late = _sent(bridge, "w0")[0]  # noted just as the verdict changed: still failed
    clock.now += SETTLE_S / 2
    watch.check()
    assert late.done()
    clock.now += SETTLE_S
    watch.check()
    assert len(questions.calls) == 2  # then left alone while it stays down

    verdicts.why["w0"] = None  # back, then gone again: acted on again
    watch.check()
    verdicts.why["w0"] = "starting"
    watch.check()
    assert questions.calls[-1] == ("w0", False)



def test_a_worker_heard_gone_fails_at_once_what_was_sent_to_it_before_and_only_that():
    """A worker restarted on another host asks, then beats within milliseconds: a round 0.1 s apart
    may never see it refused, so the board says so as it hears it (``on_gone``). What is sent after
    its ``ready`` goes to its new process: left alone."""
    bridge, _, questions, _, _ = _setup()
    board = PresenceBoard(["w0", "w1"], 10.0, Clock())
    watch = PendingWatch(["w0", "w1"], bridge, questions, lambda: board)
    board.on_gone = watch.heard_gone
    board.heard("w0", READY)
    board.heard("w1", READY)
    before = _sent(bridge, "w0")[0]
    board.heard("w0", STARTING)  # its new process asked...
    board.heard("w0", READY)  # ...and beat
    after = _sent(bridge, "w0")[0]
    watch.check()
    assert isinstance(before.exception(0), OutcomeUnknown) and not after.done()
    assert questions.calls == [("w0", False)]
    board.heard("w0", DOWN)
    assert isinstance(after.exception(0), OutcomeUnknown)
