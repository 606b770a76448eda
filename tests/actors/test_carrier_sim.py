"""The simulated carrier: outcomes, window, throughput, suspension, receipts; and what carriers may see.

The last test drives a real embedded Engine and captures every ``SubmitToCarrier`` its carriers receive:
no customer identifier (account id, email, API key, balance) may ever reach a carrier.
"""

from __future__ import annotations

import random
import string
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors.supervisor
from actors.carrier_sim import SimulatedCarrierActor, sample_ms
from actors.clock import Clock
from engine import Engine
from engine import messages as m
from engine.config import default_document

WAIT = 10.0  # seconds: a deadline for conditions, not a timing expectation


class Recorder:
    """Stands in for the POP: decodes what the carrier tells it and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[m.Message] = []
        self._cond = threading.Condition()

    def tell(self, raw: bytes) -> None:
        with self._cond:
            self.messages.append(m.decode(raw))
            self._cond.notify_all()

    def of(self, cls) -> list:
        with self._cond:
            return [x for x in self.messages if isinstance(x, cls)]

    def items(self, cls) -> list:
        return [i for x in self.of(cls) for i in x.items]

    def wait_for(self, predicate, timeout: float = WAIT) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: predicate(self), timeout), "condition not reached"


@pytest.fixture
def clock():
    c = Clock()
    yield c
    c.stop()


@pytest.fixture
def pop():
    return Recorder()


def start(pop, clock, **options):
    opts = {"latency": {"distribution": "fixed", "ms": 0},
            "receipt_delay": {"distribution": "fixed", "ms": 0},
            "late_receipt_rate": 0.0, "duplicate_receipt_rate": 0.0, "window": 100, "throughput": 0}
    opts.update(options)
    return SimulatedCarrierActor.start("sim", opts, pop, clock, seed=1)


def submit(ref, items):
    ref.tell(m.encode(m.SubmitToCarrier(items)))


def item(n: int, body: str = "Hello") -> m.CarrierSubmitItem:
    return m.CarrierSubmitItem(f"ref{n}", "+4915112345678", "ACME", body)


def stats(ref) -> dict:
    return ref.proxy().stats().get(timeout=WAIT)  # answered after every earlier message was handled


def test_a_delivered_message_gets_an_ok_per_part_and_a_delivrd_receipt_per_part(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0})
    submit(ref, [item(1, "a" * 161), item(2)])  # 2 parts and 1 part
    pop.wait_for(lambda p: len(p.items(m.ReceiptsReceived)) == 3)
    resp = pop.items(m.CarrierResponded)
    assert sorted((r.ref, r.part, r.parts, r.outcome) for r in resp) == [
        ("ref1", 0, 2, "ok"), ("ref1", 1, 2, "ok"), ("ref2", 0, 1, "ok")]
    assert len({r.carrier_message_id for r in resp}) == 3
    assert sorted((r.ref, r.part, r.state) for r in pop.items(m.ReceiptsReceived)) == [
        ("ref1", 0, "DELIVRD"), ("ref1", 1, "DELIVRD"), ("ref2", 0, "DELIVRD")]
    assert all(x.carrier == "sim" for x in pop.of(m.CarrierResponded))


@pytest.mark.parametrize("outcome,state", [("undeliverable", "UNDELIV"), ("expired", "EXPIRED")])
def test_a_failed_outcome_is_accepted_then_receipted_with_its_smpp_state(pop, clock, outcome, state):
    ref = start(pop, clock, outcomes={outcome: 1.0})
    submit(ref, [item(1)])
    pop.wait_for(lambda p: p.items(m.ReceiptsReceived))
    assert [r.outcome for r in pop.items(m.CarrierResponded)] == ["ok"]
    assert [r.state for r in pop.items(m.ReceiptsReceived)] == [state]


@pytest.mark.parametrize("outcome,answer,code", [("rejected", "reject", "0x0000000B"),
                                                 ("throttled", "throttled", "0x00000058")])
def test_a_refused_outcome_is_answered_without_a_receipt(pop, clock, outcome, answer, code):
    ref = start(pop, clock, outcomes={outcome: 1.0})
    submit(ref, [item(1)])
    assert stats(ref)[outcome] == 1
    assert [(r.outcome, r.error) for r in pop.items(m.CarrierResponded)] == [(answer, code)]
    assert pop.items(m.ReceiptsReceived) == []


def test_no_answer_means_no_response_and_no_receipt(pop, clock):
    ref = start(pop, clock, outcomes={"no_answer": 1.0})
    submit(ref, [item(i) for i in range(5)])
    assert stats(ref)["no_answer"] == 5
    assert pop.messages == []


def test_the_outcome_mix_roughly_follows_its_weights(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 0.8, "rejected": 0.2})
    submit(ref, [item(i) for i in range(2000)])
    counts = stats(ref)
    assert counts["delivered"] + counts["rejected"] == 2000
    assert 0.15 < counts["rejected"] / 2000 < 0.25


def test_a_full_window_answers_throttled_until_a_slot_frees(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0}, window=2,
                latency={"distribution": "fixed", "ms": 60_000})
    submit(ref, [item(i) for i in range(3)])
    s = stats(ref)
    assert s["window_full"] == 1 and s["window_in_use"] == 2
    assert [(r.ref, r.outcome, r.error) for r in pop.items(m.CarrierResponded)] == [
        ("ref2", "throttled", "0x00000014")]


def test_the_throughput_limit_throttles_the_excess_of_a_burst(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0}, throughput=2)
    submit(ref, [item(i) for i in range(5)])
    stats(ref)
    outcomes = [r.outcome for r in pop.items(m.CarrierResponded)]
    assert outcomes.count("ok") == 2 and outcomes.count("throttled") == 3


def test_a_suspended_carrier_says_it_is_suspended_not_disconnected_and_answers_offline(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0})
    assert (stats(ref)["suspended"], stats(ref)["available"]) == (False, True)
    ref.tell(m.encode(m.SetCarrierSuspended(True)))
    submit(ref, [item(1)])
    view = stats(ref)
    assert (view["suspended"], view["connected"], view["available"]) == (True, True, False)
    assert pop.of(m.CarrierStateChanged) == [m.CarrierStateChanged("sim", False, "suspended")]
    assert [(r.outcome, r.error) for r in pop.items(m.CarrierResponded)] == [("offline", "suspended")]
    ref.tell(m.encode(m.SetCarrierSuspended(False)))
    submit(ref, [item(2)])
    pop.wait_for(lambda p: p.items(m.ReceiptsReceived))
    assert pop.of(m.CarrierStateChanged)[-1].available is True


def test_duplicate_receipts_are_sent_twice_when_the_rate_is_one(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0}, duplicate_receipt_rate=1.0)
    submit(ref, [item(1)])
    pop.wait_for(lambda p: len(p.items(m.ReceiptsReceived)) == 2)
    assert {(r.ref, r.part) for r in pop.items(m.ReceiptsReceived)} == {("ref1", 0)}


def test_delayed_answers_arrive_through_the_clock_and_free_the_window(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0}, window=1,
                latency={"distribution": "fixed", "ms": 5},
                receipt_delay={"distribution": "uniform", "min_ms": 1, "max_ms": 5})
    submit(ref, [item(1)])
    pop.wait_for(lambda p: p.items(m.ReceiptsReceived))
    submit(ref, [item(2)])  # the slot was given back: no window_full
    pop.wait_for(lambda p: len(p.items(m.ReceiptsReceived)) == 2)
    assert stats(ref)["window_full"] == 0


def test_a_malformed_message_or_unencodable_body_does_not_kill_the_carrier(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0})
    ref.tell(b"\x93not msgpack")
    submit(ref, [item(1, "")])
    assert stats(ref)["submitted"] == 1
    assert [(r.outcome, r.error) for r in pop.items(m.CarrierResponded)] == [("reject", "0x00000001")]


def test_an_unknown_outcome_name_is_refused_at_start(pop, clock):
    with pytest.raises(ValueError, match="unknown outcome"):
        start(pop, clock, outcomes={"lost_in_space": 1.0})


def test_delay_distributions_sample_within_their_definition():
    rng = random.Random(3)
    assert sample_ms(None, rng) == 0.0 and sample_ms(7, rng) == 7.0
    assert sample_ms({"distribution": "fixed", "ms": 12}, rng) == 12.0
    draws = [sample_ms({"distribution": "uniform", "min_ms": 5, "max_ms": 9}, rng) for _ in range(500)]
    assert all(5 <= d <= 9 for d in draws)
    logn = sorted(sample_ms({"distribution": "lognormal", "median_ms": 100, "sigma": 0.5}, rng)
                  for _ in range(2001))
    assert all(d > 0 for d in logn) and 80 < logn[1000] < 125
    with pytest.raises(ValueError):
        sample_ms({"distribution": "pareto"}, rng)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), median=st.floats(1, 3_600_000), sigma=st.floats(0, 3))
def test_a_lognormal_delay_never_exceeds_a_hundred_medians_or_an_hour(seed, median, sigma):
    """A rare draw at sigma 3 is thousands of medians: a simulated carrier would hold a message for
    hours. A draw is capped at 100 x the median and at the configured maximum (3,600,000 ms)."""
    rng = random.Random(seed)
    spec = {"distribution": "lognormal", "median_ms": median, "sigma": sigma}
    for _ in range(50):
        assert 0 < sample_ms(spec, rng) <= min(100 * median, 3_600_000)


def test_the_cap_leaves_the_body_of_a_lognormal_as_it_was():
    rng = random.Random(7)
    draws = sorted(sample_ms({"distribution": "lognormal", "median_ms": 1000, "sigma": 3}, rng)
                   for _ in range(4001))
    assert 800 < draws[2000] < 1250  # the median is still the median
    assert draws[-1] == 100_000 and draws[0] < 10  # the long tail stops at 100 medians


# --- what a carrier sees, through a real engine -------------------------------------------------------


CAPTURED: list[m.CarrierSubmitItem] = []
SUBMITTED_BODIES: set[str] = set()
_CAPTURE_LOCK = threading.Lock()


class CapturingCarrier(SimulatedCarrierActor):
    """A simulated carrier that records every item it is handed, exactly as decoded from the wire."""

    def on_receive(self, raw: bytes) -> None:
        msg = m.decode(raw)
        if isinstance(msg, m.SubmitToCarrier):
            with _CAPTURE_LOCK:
                CAPTURED.extend(msg.items)
        super().on_receive(raw)


def fast_overrides() -> dict:
    fast = {"latency": {"distribution": "fixed", "ms": 0},
            "receipt_delay": {"distribution": "fixed", "ms": 1},
            "outcomes": {"delivered": 1.0}, "throughput": 0}
    carriers = {n: {**t, **fast} for n, t in default_document()["carriers"].items()}
    return {"carriers": carriers}


@pytest.fixture
def capturing_engine(tmp_path, monkeypatch):
    monkeypatch.setattr(actors.supervisor, "SimulatedCarrierActor", CapturingCarrier)
    CAPTURED.clear()
    engine = Engine.start(tmp_path / "data", overrides=fast_overrides())
    yield engine
    engine.stop(drain_seconds=1)


DESTINATIONS = ["+4915112345678", "+6591234567", "+5511987654321", "+447400123456", "+12025550123"]
SENDERS = ["ACME", "Shop24", "123456"]
LOCAL = st.text(alphabet=string.ascii_lowercase + string.digits + "._", min_size=1, max_size=12)
BODY = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1b"),
               min_size=1, max_size=120)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(local=LOCAL, usd=st.integers(min_value=5, max_value=500),
       sends=st.lists(st.tuples(st.sampled_from(DESTINATIONS), st.sampled_from(SENDERS), BODY),
                      min_size=1, max_size=4))
def test_carriers_never_see_an_account_id_email_api_key_or_balance(capturing_engine, local, usd,
                                                                  sends):
    engine = capturing_engine
    email = f"{local}@example.com"
    acct = engine.create_account(email)
    for sender in SENDERS:
        engine.register_sender(acct.id, sender)
    balance = engine.deposit(acct.id, usd=str(usd), chain="tron", tx_hash=acct.id,
                             from_address="TAddrOfTheCustomer")
    finals: dict[str, threading.Event] = {}
    lock = threading.Lock()

    def on_status(it: m.StatusItem) -> None:
        if it.status != "accepted":
            with lock:
                finals.setdefault(it.message_id, threading.Event()).set()

    engine.on_status(on_status)
    SUBMITTED_BODIES.update(body for _, _, body in sends)
    accepted = [engine.submit(acct.api_key, to=to, sender=sender, body=body)
                for to, sender, body in sends]
    deadline = time.monotonic() + WAIT
    for a in accepted:
        with lock:
            ev = finals.setdefault(a.message_id, threading.Event())
        assert ev.wait(max(0.0, deadline - time.monotonic())), "message did not reach a final status"
    secrets = {acct.id, email, acct.api_key, acct.api_key[-12:], str(balance),
               str(engine.balance(acct.id)), "TAddrOfTheCustomer", acct.webhook_secret}
    sent = {(to, sender, body) for to, sender, body in sends}
    with _CAPTURE_LOCK:
        items = list(CAPTURED)
    assert len(items) >= len(sends)
    for it in items:
        assert type(it) is m.CarrierSubmitItem
        assert it._fields == ("ref", "to", "sender", "body", "segments")
        assert type(it.segments) is int and 1 <= it.segments <= 255  # a count, nothing about the customer
        for field in (it.ref, it.to, it.sender):
            assert not any(s in field for s in secrets)
        assert it.body in SUBMITTED_BODIES  # the customer's text, unaltered: nothing added to it
    assert sent <= {(it.to, it.sender, it.body) for it in items}
    for a in accepted:
        assert a.message_id not in {it.ref for it in items}


def test_a_withdrawal_finds_nothing_queued_and_every_part_taken_is_answered_as_usual(pop, clock):
    ref = start(pop, clock, outcomes={"delivered": 1.0},
                latency={"distribution": "fixed", "ms": 20})
    submit(ref, [item(1, "x" * 300)])  # two parts, both on the wire at once
    ref.tell(m.encode(m.WithdrawSubmits(["ref1"])))
    pop.wait_for(lambda p: len(p.items(m.CarrierResponded)) == 2)
    assert {(r.part, r.outcome) for r in pop.items(m.CarrierResponded)} == {(0, "ok"), (1, "ok")}
    assert stats(ref)["withdraw_requests"] == 1


def test_a_late_receipt_is_ten_times_late_but_never_past_the_maximum_delay(pop, clock):
    # receipt_delay at its maximum (an hour): "ten times late" would hold the receipt ten hours
    ref = start(pop, clock, outcomes={"delivered": 1.0}, late_receipt_rate=1.0,
                receipt_delay={"distribution": "fixed", "ms": 3_600_000})
    submit(ref, [item(1)])
    stats(ref)  # answered once the submit was handled
    now = clock.now()
    due = [entry[0] for entry in ref.proxy()._actor._heap if entry[2] == "receipt"]
    assert len(due) == 1 and due[0] <= now + 3600.0, (due, now)
