"""The recorder: latencies from the intended send time, events in any order, warm-up excluded."""

from __future__ import annotations

from types import SimpleNamespace

from bench.recorder import Recorder


def near(value: int, expected: int) -> bool:
    """Equal within HdrHistogram's resolution (three significant figures)."""
    return abs(value - expected) <= expected * 0.001 + 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_latencies_are_measured_from_the_intended_send_time():
    clock = FakeClock()
    r = Recorder(measure_from=0.0, clock=clock)
    clock.now = 10.002  # the bench was 2 ms late sending
    r.sent("fra", "DE", 10.0)
    clock.now = 10.005
    r.accepted("m1", "fra", "DE", 10.0)
    clock.now = 10.007
    r.carrier_ack("m1")
    clock.now = 10.010
    r.status("m1", "delivered", "fra", "DE")
    r.drain()
    c = r.stats[("fra", "DE")]
    assert near(c.accepted.percentile_us(50), 5000)
    assert near(c.carrier_ack.percentile_us(50), 7000)
    assert near(c.final.percentile_us(50), 10000)
    assert near(r.send_lag.percentile_us(50), 2000)
    assert c.outcomes == {"delivered": 1}
    assert (r.measured_finals, r.in_flight, r.left_flight) == (1, 0, 1)


def test_a_final_status_that_arrives_before_the_acceptance_is_still_matched():
    clock = FakeClock()
    released = []
    r = Recorder(measure_from=0.0, clock=clock, release=lambda: released.append(1))
    r.sent("sin", "SG", 1.0)
    clock.now = 1.004
    r.status("m2", "failed", "sin", "SG")
    r.carrier_ack("m2")
    r.drain()
    assert released == []  # not yet known: held until the acceptance arrives
    clock.now = 1.001
    r.accepted("m2", "sin", "SG", 1.0)
    r.drain()
    c = r.stats[("sin", "SG")]
    assert c.outcomes == {"failed": 1}
    assert near(c.final.percentile_us(50), 4000)
    assert c.carrier_ack.count == 1
    assert released == [1]


def test_warm_up_messages_hold_flight_but_are_not_recorded():
    clock = FakeClock()
    r = Recorder(measure_from=5.0, clock=clock)
    r.sent("fra", "DE", 4.0)
    r.accepted("w", "fra", "DE", 4.0)
    r.status("w", "delivered", "fra", "DE")
    r.sent("fra", "DE", 5.0)
    r.accepted("m", "fra", "DE", 5.0)
    r.status("m", "expired", "fra", "DE")
    r.drain()
    c = r.stats[("fra", "DE")]
    assert c.sent == 1
    assert c.outcomes == {"expired": 1}
    assert c.final.count == 1 and c.accepted.count == 1
    assert r.left_flight == 2


def test_submit_errors_count_per_corridor_and_free_the_slot():
    released = []
    r = Recorder(measure_from=0.0, clock=FakeClock(), release=lambda: released.append(1))
    r.sent("gru", "BR", 1.0)
    r.submit_failed("gru", "BR", 1.0, "overloaded")
    r.drain()
    assert r.stats[("gru", "BR")].errors == {"overloaded": 1}
    assert released == [1]


def test_non_final_statuses_are_ignored_and_status_items_are_adapted():
    clock = FakeClock()
    r = Recorder(measure_from=0.0, clock=clock)
    r.sent("fra", "FR", 1.0)
    r.accepted("m", "fra", "FR", 1.0)
    r.on_status_item(SimpleNamespace(message_id="m", status="accepted", pop="fra", country="FR"))
    r.drain()
    assert r.in_flight == 1
    r.on_status_item(SimpleNamespace(message_id="m", status="rejected", pop="fra", country="FR"))
    r.drain()
    assert r.stats[("fra", "FR")].outcomes == {"rejected": 1}


def test_unfinished_messages_are_counted_as_errors():
    r = Recorder(measure_from=0.0, clock=FakeClock())
    r.sent("fra", "DE", 1.0)
    r.accepted("m", "fra", "DE", 1.0)
    r.drain()
    assert r.record_unfinished() == 1
    assert r.stats[("fra", "DE")].errors == {"no_final_status": 1}


def test_the_collector_thread_drains_and_wakes_waiters():
    r = Recorder(measure_from=0.0).start()
    try:
        r.sent("fra", "DE", 0.0)
        r.accepted("m", "fra", "DE", 0.0)
        r.status("m", "delivered", "fra", "DE")
        assert r.wait_left_flight(1, timeout=10.0)
    finally:
        r.stop()
    assert r.measured_finals == 1


def test_events_for_ids_never_accepted_are_forgotten_after_the_hold_time():
    clock = FakeClock()
    r = Recorder(measure_from=0.0, clock=clock)
    r.carrier_ack("stray")
    r.drain()
    assert r.prune_early(older_than_s=60.0) == 0
    clock.now += 61.0
    assert r.prune_early(older_than_s=60.0) == 1


def test_a_carrier_ack_arriving_after_its_final_is_still_recorded():
    clock = FakeClock()
    r = Recorder(measure_from=0.0, clock=clock)
    r.sent("fra", "DE", 1.0)
    r.accepted("m", "fra", "DE", 1.0)
    r.status("m", "delivered", "fra", "DE")
    r.drain()
    r.carrier_ack_at("m", 1.003)  # forwarded from the engine process, stamped there
    r.drain()
    c = r.stats[("fra", "DE")]
    assert c.carrier_ack.count == 1
    assert near(c.carrier_ack.percentile_us(50), 3000)
    assert not r._early


def test_finals_stop_waiting_for_their_ack_after_the_hold_time():
    clock = FakeClock()
    r = Recorder(measure_from=0.0, clock=clock)
    r.sent("fra", "DE", 1.0)
    r.accepted("m", "fra", "DE", 1.0)
    r.status("m", "rejected", "fra", "DE")
    r.drain()
    clock.now += 10.0
    r.prune_unacked(older_than_s=5.0)
    r.carrier_ack("m")
    r.drain()
    assert r.stats[("fra", "DE")].carrier_ack.count == 0
