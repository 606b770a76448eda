"""The open-loop driver against fake targets: counts, pacing, the in-flight gate and stalls."""

from __future__ import annotations

import itertools
from collections import Counter

from bench.drive import run_step
from bench.scenario import parse_scenario
from bench.traffic import Workload

SCENARIO = parse_scenario(
    'name = "t"\n[[corridors]]\npop = "fra"\ncountry = "DE"\nshare = 1\n'
    '[[corridors]]\npop = "gru"\ncountry = "BR"\nshare = 1\n'
)


class InstantTarget:
    """Accepts, acknowledges and delivers every message at once; every 5th is undeliverable."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.calls = 0

    def submit(self, recorder, planned, pop, country, intended):
        self.calls += 1
        mid = f"m{next(self.ids)}"
        recorder.accepted(mid, pop, country, intended)
        recorder.carrier_ack(mid)
        recorder.status(mid, "failed" if self.calls % 5 == 0 else "delivered", pop, country)


class BlackHoleTarget:
    """Accepts and then never reports a final status."""

    def __init__(self) -> None:
        self.ids = itertools.count()

    def submit(self, recorder, planned, pop, country, intended):
        recorder.accepted(f"h{next(self.ids)}", pop, country, intended)


class RefusingTarget:
    def submit(self, recorder, planned, pop, country, intended):
        recorder.submit_failed(pop, country, intended, "overloaded")


def _run(target, **kw):
    args = dict(
        rate=2000.0,
        duration_s=0.25,
        warmup_s=0.05,
        arrival="fixed",
        max_in_flight=100,
        drain_timeout_s=10.0,
        bind=lambda r: None,
    )
    args.update(kw)
    return run_step(target, Workload(SCENARIO), **args)


def test_a_paced_step_sends_the_schedule_and_measures_only_after_warm_up():
    target = InstantTarget()
    step = _run(target)
    assert target.calls == 600  # 0.3 s at 2000/s
    assert step.sent == step.finals == 500
    assert sum(c.final.count for c in step.corridors.values()) == 500
    assert set(step.corridors) == {("fra", "DE"), ("gru", "BR")}
    outcomes = sum((c.outcomes for c in step.corridors.values()), Counter())
    assert outcomes["failed"] == 100 and outcomes["delivered"] == 400
    assert step.unfinished == 0 and not step.stalled and step.errors == 0
    assert step.elapsed_s > 0 and step.messages_per_second > 0
    assert step.send_lag.count == 500


def test_throughput_mode_sends_the_asked_count_plus_a_tenth_for_warm_up():
    target = InstantTarget()
    step = _run(target, rate=None, messages=300)
    assert target.calls == 330
    assert step.finals == 300
    assert step.offered_rate is None


def test_a_target_that_never_finishes_stalls_at_the_cap_and_counts_unfinished():
    step = _run(BlackHoleTarget(), max_in_flight=5, drain_timeout_s=0.3, warmup_s=0.0)
    assert step.stalled
    assert step.unfinished == 5
    assert sum(c.errors["no_final_status"] for c in step.corridors.values()) == 5


def test_refused_submits_are_errors_and_do_not_hold_slots():
    step = _run(RefusingTarget(), max_in_flight=3)
    assert not step.stalled
    assert step.finals == 0
    assert step.errors == step.sent == 500


def test_the_bind_callback_sees_the_recorder_then_none():
    seen = []
    _run(InstantTarget(), bind=seen.append, duration_s=0.01, warmup_s=0.0)
    assert seen[0] is not None and seen[-1] is None
