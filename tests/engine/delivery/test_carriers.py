"""The carrier board: availability, cool-down after throttling, windows and pace."""

from __future__ import annotations

import math

from engine.config import CarrierSettings, carrier_options
from engine.delivery.carriers import COOLDOWN_MAX_S, SETTLE_S, CarrierBoard
from engine.routing import CarrierCandidate


def board(**carriers) -> CarrierBoard:
    return CarrierBoard({name: CarrierSettings(name, "fra", kind, carrier_options(kind, opts))
                         for name, (kind, opts) in carriers.items()}, resp_timeout=3.0)


CANDS = (CarrierCandidate("a"), CarrierCandidate("b"))
RUNNING = {"a", "b"}


def test_the_first_usable_candidate_from_the_current_one_is_picked():
    b = board(a=("simulated", {}), b=("simulated", {}))
    assert b.pick(CANDS, 0, 0.0, RUNNING) == (0, 0.0)
    assert b.pick(CANDS, 1, 0.0, RUNNING) == (1, 0.0)
    b.set_available("b", False, "connection_lost", 0.0)
    assert b.pick(CANDS, 1, 0.0, RUNNING) == (0, 0.0)  # a down carrier is skipped at once


def test_every_candidate_down_means_wait_for_one_and_cooling_means_wait_a_while():
    b = board(a=("simulated", {}), b=("simulated", {}))
    b.set_available("a", False, "suspended", 0.0)
    b.throttled("b", 10.0)
    index, wait = b.pick(CANDS, 0, 10.0, RUNNING)
    assert index == -1 and 0 < wait <= COOLDOWN_MAX_S  # b is back after its cool-down
    b.set_available("b", False, "connection_lost", 10.0)
    assert b.pick(CANDS, 0, 10.0, RUNNING) == (-1, 0.0)  # park until one is available
    assert b.pick(CANDS, 0, 10.0, set())[0] == -1 and b.pick(CANDS, 0, 10.0, set())[1] > 0


def test_the_cool_down_grows_with_throttles_in_a_row_and_resets_with_an_acknowledgement():
    b = board(a=("simulated", {}))
    pauses = []
    for _ in range(8):
        b.throttled("a", 0.0)
        pauses.append(b.links["a"].cooldown_until)
    assert pauses == sorted(pauses) and pauses[-1] == COOLDOWN_MAX_S
    b.acknowledged("a")
    b.throttled("a", 0.0)
    assert b.links["a"].cooldown_until == pauses[0]


def test_the_window_is_window_times_binds_and_slots_come_back():
    b = board(a=("smpp", {"window": 3, "binds": 2}))
    for _ in range(6):
        assert b.has_room("a")
        b.take("a")
    assert not b.has_room("a")
    b.release("a")
    assert b.has_room("a")


def test_an_smpp_attempt_may_wait_for_a_bind_and_the_carrier_timeout_before_it_times_out():
    b = board(a=("smpp", {"resp_timeout_seconds": 4.0, "bind_wait_seconds": 2.0}),
              b=("simulated", {}))
    assert b.links["a"].attempt_timeout == 6.0 and b.links["b"].attempt_timeout == 3.0


def test_pace_is_the_configured_throughput_until_pushback_lasts_long_enough_to_measure():
    b = board(a=("simulated", {"throughput": 500}), b=("simulated", {}))
    assert b.capacity("a", 0.0) == 500 and b.capacity("b", 0.0) == math.inf
    b.sample(0.0)
    for t in range(1, 11):  # 100 acknowledged messages per second
        b.links["a"].acked += 100
        b.sample(float(t))
    b.throttled("a", 9.0)
    assert b.capacity("a", 9.0) == 500  # pushback too new to trust the measurement
    b.throttled("a", 9.0 + SETTLE_S)
    assert 90 < b.capacity("a", 9.0 + SETTLE_S) < 110  # the measured pace


def test_a_suspended_carrier_takes_nothing_and_a_reconnecting_one_keeps_its_pace_for_a_while():
    b = board(a=("smpp", {"throughput": 100, "bind_wait_seconds": 5.0}),
              b=("simulated", {"throughput": 100}))
    b.set_available("a", False, "connection_lost", 0.0)
    assert b.capacity("a", 4.0) == 100 and b.capacity("a", 6.0) == 0
    b.set_available("b", False, "suspended", 0.0)
    assert b.capacity("b", 0.0) == 0
