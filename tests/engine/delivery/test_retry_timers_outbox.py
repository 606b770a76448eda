"""The retry policy, the timers' heaps and the outbox."""

from __future__ import annotations

import random
from types import SimpleNamespace

from engine import messages as m
from engine.delivery.attempt import Delivery
from engine.delivery.outbox import Outbox
from engine.delivery.retry import RetryPolicy
from engine.delivery.timers import Timers
from tests.engine.delivery.test_attempt_state_machine import record

LIMITS = SimpleNamespace(max_attempts=3, retry_window_seconds=10.0, retry_base_ms=20.0,
                         retry_cap_ms=1000.0)


def test_only_counted_failures_use_up_attempts_and_the_window_runs_from_the_first():
    policy = RetryPolicy(LIMITS, random.Random(1))
    f = Delivery(record(1), "x")
    assert not policy.exhausted(f, 100.0)  # throttled and offline answers never count
    f.failures = 1
    assert not policy.exhausted(f, 100.0) and f.first_failure_at == 100.0
    assert policy.exhausted(f, 110.5)  # the retry window is over
    f.failures, f.first_failure_at = 3, 0.0
    assert policy.exhausted(f, 200.0)  # max_attempts


def test_the_backoff_has_full_jitter_under_a_growing_cap():
    policy = RetryPolicy(LIMITS, random.Random(2))
    f = Delivery(record(1), "x")
    waits = [policy.backoff(f) for _ in range(12)]
    caps = [min(1.0, 0.02 * 2 ** n) for n in range(1, 13)]
    assert all(0 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert f.retries == 12 and max(waits[6:]) > 0.1


def test_due_timers_come_out_in_order_and_stale_entries_are_compacted():
    t = Timers()
    for i in range(10):
        t.expect_answer(float(i), f"m{i}", f"r{i}")
        t.expire_at(100.0 + i, f"m{i}")
    assert list(t.due_answers(2.5)) == [("m0", "r0"), ("m1", "r1"), ("m2", "r2")]
    assert list(t.due_expiries(101.0)) == ["m0", "m1"]
    t.compact({"m5"}, 1)
    assert len(t) == 2 and list(t.due_expiries(1e9)) == ["m5"]


def test_a_withdrawal_of_an_attempt_not_yet_handed_over_just_drops_it():
    box = Outbox()
    box.submit("c", m.CarrierSubmitItem("r1", "+1", "S", "b"))
    box.submit("c", m.CarrierSubmitItem("r2", "+1", "S", "b"))
    assert box.withdraw("c", "r1") is False  # never left the POP
    assert box.withdraw("c", "r9") is True  # already with the carrier: ask it to take it back
    sent = list(box.take())
    assert [(c, type(msg).__name__) for c, msg, _ in sent] == [("c", "SubmitToCarrier"),
                                                                ("c", "WithdrawSubmits")]
    assert [i.ref for i in sent[0][1].items] == ["r2"] and sent[1][1].refs == ["r9"]
    assert not box and list(box.take()) == []
