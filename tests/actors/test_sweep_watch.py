"""SweepWatch: the retention sweeper counts as hung when a sweep makes no progress (no store's sweep
finished) for the stall bound, or when none began within its interval plus the bound; a long sweep that
keeps finishing stores does not. Clock injected: no waiting."""

from __future__ import annotations

import threading

import pykka
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.sweep_watch import DEFAULT_STALL_SECONDS, SweepWatch
from actors.sweeper import SweeperActor
from engine import messages as m
from engine.config import load_settings
from tests.waiting import wait_for

INTERVAL, STALL = 60.0, 900.0


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def stop_all_actors():
    yield
    pykka.ActorRegistry.stop_all()


def test_a_sweeper_that_never_sweeps_is_hung_once_the_stall_bound_has_passed(clock):
    watch = SweepWatch(INTERVAL, STALL, clock)  # the first sweep is due at once
    clock.now += STALL
    assert watch.hung() is None
    clock.now += 1
    assert watch.hung() == "no sweep began for 901 s past its interval"


def test_between_sweeps_it_is_hung_only_past_the_interval_plus_the_bound(clock):
    watch = SweepWatch(INTERVAL, STALL, clock)
    watch.began()
    clock.now += 5
    watch.store_done()
    watch.ended()
    clock.now += INTERVAL - 5 + STALL  # due 60 s after the sweep began
    assert watch.hung() is None
    clock.now += 1
    assert "no sweep began" in watch.hung()
    watch.began()  # the sweeper sweeps again: it works
    assert watch.hung() is None


def test_a_long_sweep_that_keeps_finishing_stores_is_not_hung(clock):
    watch = SweepWatch(INTERVAL, STALL, clock)
    watch.began()
    for _ in range(10):  # ten stores of 800 s each: 8,000 s, far past interval and bound together
        clock.now += STALL - 100
        assert watch.hung() is None
        watch.store_done()
    watch.ended()
    clock.now += STALL  # the next sweep is due at once (it began long ago): the bound runs from the end
    assert watch.hung() is None
    clock.now += 1
    assert watch.hung() is not None


def test_a_store_whose_sweep_does_not_return_makes_it_hung_after_the_bound(clock):
    watch = SweepWatch(INTERVAL, STALL, clock)
    watch.began()
    clock.now += 3
    watch.store_done()
    clock.now += STALL
    assert watch.hung() is None
    clock.now += 1
    assert watch.hung() == "no store swept for 901 s"


def test_a_retry_between_full_sweeps_does_not_move_the_next_full_sweep(clock):
    watch = SweepWatch(INTERVAL, STALL, clock)
    watch.began()
    watch.ended()
    clock.now += 10
    watch.began(full=False)  # the failed stores again, 10 s later
    watch.ended()
    clock.now += INTERVAL - 10 + STALL + 1  # the full sweep due at 60 s never began
    assert watch.hung() is not None


@given(st.lists(st.tuples(st.sampled_from(["began", "retry", "store", "ended", "wait"]),
                          st.floats(min_value=0, max_value=2 * STALL)), max_size=30))
def test_it_is_hung_exactly_when_the_rule_says(steps):
    """Against a model: hung iff busy and no progress for > STALL, or idle and > STALL past the later of
    (last full start + interval) and the last end (before any sweep: the start-up)."""
    clock = Clock(0.0)
    watch = SweepWatch(INTERVAL, STALL, clock)
    busy, progress, due = False, 0.0, 0.0
    for op, dt in steps:
        clock.now += dt
        now = clock.now
        if op in ("began", "retry"):
            busy, progress = True, now
            due = now + INTERVAL if op == "began" else due
            watch.began(full=op == "began")
        elif op == "store":
            progress = now
            watch.store_done()
        elif op == "ended":
            busy, progress, due = False, now, max(due, now)
            watch.ended()
        expected = (now - progress > STALL) if busy else (now - due > STALL)
        assert (watch.hung() is not None) is expected


def test_the_default_bound_is_fifteen_minutes_and_configurable():
    assert DEFAULT_STALL_SECONDS == 900.0
    assert load_settings(None).engine.sweep_stall_seconds == 900.0
    assert load_settings(None, {"engine": {"sweep_stall_seconds": 2.5}}).engine.sweep_stall_seconds == 2.5


class _BlockingLogs:
    """A store whose sweep blocks until released (a lock never freed, an LMDB call that never returns)."""

    category = "api_request_logs"

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def sweep(self, now: float) -> int:
        self.entered.set()
        self.release.wait(10)
        return 0


def test_the_sweeper_stamps_its_watch_and_a_blocked_store_sweep_shows_as_hung(tmp_path, clock):
    store = _BlockingLogs()
    watch = SweepWatch(INTERVAL, STALL, clock)
    sweeper = SweeperActor.start({}, sweepables={"request_log": store}, interval_seconds=INTERVAL,
                                 watch=watch)
    sweeper.tell(m.encode(m.Tick(0.0)))
    assert store.entered.wait(5)
    clock.now += STALL + 1
    assert watch.hung() == "no store swept for 901 s"
    store.release.set()
    wait_for(lambda: watch.hung() is None, "the sweep to end", 5)
    clock.now += INTERVAL + STALL  # nothing ticks: the next sweep (due 60 s after the last) never began
    assert watch.hung() is not None
