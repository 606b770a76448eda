"""SmppCarrierActor end to end: pykka actor -> SMPP binds -> simulated SMSC on loopback -> POP messages."""

from __future__ import annotations

import threading
import time

import pykka
import pytest

from actors.carrier_smpp import SmppCarrierActor
from bench.smsc import SmscConfig, SmscThread
from engine import messages as m
from engine.segments import plan
from engine.smpp import pdu as p
from engine.smpp import smsc_carrier_settings
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


class FakePop:
    """Stands in for the POP's ref: records every message told to it (from any thread)."""

    def __init__(self) -> None:
        self.messages: list[m.Message] = []
        self._cond = threading.Condition()

    def tell(self, raw: bytes) -> None:
        with self._cond:
            self.messages.append(m.decode(raw))
            self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("condition not met before the deadline")
                self._cond.wait(left)

    def of(self, cls) -> list:
        with self._cond:
            return [msg for msg in self.messages if isinstance(msg, cls)]

    def responses(self) -> list[m.CarrierResponseItem]:
        return [i for msg in self.of(m.CarrierResponded) for i in msg.items]

    def receipts(self) -> list[m.ReceiptItem]:
        return [i for msg in self.of(m.ReceiptsReceived) for i in msg.items]


@pytest.fixture(autouse=True)
def _stop_all_actors():
    yield
    pykka.ActorRegistry.stop_all()


def _start(smsc: SmscThread, **overrides):
    pop = FakePop()
    settings = smsc_carrier_settings("127.0.0.1", smsc.port, reconnect_min_seconds=0.05,
                                     reconnect_max_seconds=0.2, **overrides)
    ref = SmppCarrierActor.start("smpp1", settings, pop, None)
    pop.wait_for(lambda: any(s.available for s in pop.of(m.CarrierStateChanged)))
    return ref, pop


def _parts(items) -> int:
    return sum(len(plan(i.body, max_segments=255).parts) for i in items)


def _items(n: int) -> list[m.CarrierSubmitItem]:
    bodies = ["short", "long € text " * 20, "Привет", "😀 " * 50]
    return [m.CarrierSubmitItem(f"r{i}", f"+4915{i:08d}", "ACME", bodies[i % 4]) for i in range(n)]


def test_the_actor_answers_every_part_and_forwards_receipts_in_batches():
    states = {"DELIVRD": 0.5, "UNDELIV": 0.2, "EXPIRED": 0.15, "REJECTD": 0.15}
    with SmscThread(SmscConfig(seed=3, receipt_states=states, receipt_delay=(0, 0.01))) as smsc:
        ref, pop = _start(smsc, binds=2)
        items = _items(300)
        total = _parts(items)
        ref.tell(m.encode(m.SubmitToCarrier(items)))
        pop.wait_for(lambda: len(pop.responses()) == total and len(pop.receipts()) == total)
        responses = pop.responses()
        assert len({(r.ref, r.part) for r in responses}) == total
        assert {r.ref for r in responses} == {i.ref for i in items}
        assert all(r.outcome == "ok" for r in responses)
        assert len(smsc.smsc.parts) == total
        assert {r.state for r in pop.receipts()} == set(states)
        assert len(pop.of(m.CarrierResponded)) < total  # batched, not one message per part
        stats = ref.proxy().stats().get()
        assert (stats["kind"], stats["connected_binds"], stats["submitted"]) == ("smpp", 2, total)
        ref.stop()
        assert smsc.smsc.counters["unbind"] == 2


def test_invalid_items_are_rejected_without_reaching_the_smsc():
    with SmscThread(SmscConfig(seed=3)) as smsc:
        ref, pop = _start(smsc)
        ref.tell(m.encode(m.SubmitToCarrier([
            m.CarrierSubmitItem("bad-to", "+12ab", "ACME", "x"),
            m.CarrierSubmitItem("empty", "+4915100000001", "ACME", ""),
        ])))
        pop.wait_for(lambda: len(pop.responses()) == 2)
        assert {(r.ref, r.outcome, r.error) for r in pop.responses()} == {
            ("bad-to", "reject", "invalid_number"), ("empty", "reject", "invalid_body")}
        assert smsc.smsc.parts == []


def test_a_suspended_carrier_reports_unavailable_and_answers_offline():
    with SmscThread(SmscConfig(seed=3)) as smsc:
        ref, pop = _start(smsc)
        ref.tell(m.encode(m.SetCarrierSuspended(True)))
        ref.tell(m.encode(m.SubmitToCarrier(_items(2))))
        pop.wait_for(lambda: len(pop.responses()) == 2)
        assert pop.of(m.CarrierStateChanged)[-1] == m.CarrierStateChanged("smpp1", False,
                                                                            "suspended")
        wait_for(lambda: ref.proxy().stats().get()["connected"], "the bind to come up")
        view = ref.proxy().stats().get()
        assert (view["suspended"], view["connected"], view["available"]) == (True, True, False)
        assert [b["state"] for b in view["binds"]] == ["bound"]  # the link itself is fine
        assert {(r.outcome, r.error) for r in pop.responses()} == {("offline", "suspended")}
        ref.tell(m.encode(m.SetCarrierSuspended(False)))
        pop.wait_for(lambda: pop.of(m.CarrierStateChanged)[-1].available)


def test_each_binds_state_and_last_error_are_shown_when_the_smsc_refuses_the_bind():
    with SmscThread(SmscConfig(seed=3, system_id="someone-else")) as smsc:
        settings = smsc_carrier_settings("127.0.0.1", smsc.port, binds=2, reconnect_min_seconds=0.05,
                                         reconnect_max_seconds=0.2)
        ref = SmppCarrierActor.start("smpp1", settings, FakePop(), None)

        def refused_twice() -> dict | None:
            view = ref.proxy().stats().get()
            states = [(b["state"], b["last_error"]) for b in view["binds"]]
            return view if states == [("refused", "ESME_RINVSYSID")] * 2 else None

        view = wait_for(refused_twice, "both binds to be refused")
        assert [(b["index"], b["mode"]) for b in view["binds"]] == [(0, "transceiver"),
                                                                   (1, "transceiver")]
        assert (view["suspended"], view["connected"], view["available"]) == (False, False, False)
        assert view["bind_refusals"] == {"ESME_RINVSYSID": 2}  # the default 5 s before a retry
        assert smsc.call(lambda: smsc.smsc.counters["binds_refused"]) == 2


def test_resuming_a_carrier_retries_its_refused_binds_at_once():
    """The operator fixed the password on the SMSC side and resumes the carrier: no waiting out a
    backoff of minutes (here 60 s, far beyond the test's deadline)."""
    with SmscThread(SmscConfig(seed=3, bind_status=p.ESME_RINVPASWD)) as smsc:
        pop = FakePop()
        settings = smsc_carrier_settings("127.0.0.1", smsc.port, reconnect_min_seconds=0.05,
                                         reconnect_max_seconds=0.2, auth_retry_min_seconds=60.0,
                                         auth_retry_max_seconds=120.0)
        ref = SmppCarrierActor.start("smpp1", settings, pop, None)
        wait_for(lambda: ref.proxy().stats().get()["binds"][0]["state"] == "refused", "a refusal")
        ref.ask(m.encode(m.SetCarrierSuspended(True)))
        ref.ask(m.encode(m.SetCarrierSuspended(False)))  # retried at once: refused again
        wait_for(lambda: smsc.call(lambda: smsc.smsc.counters["binds_refused"]) == 2, "a retry",
                 timeout=5)
        smsc.call(setattr, smsc.smsc.config, "bind_status", 0)  # fixed on the SMSC side
        ref.ask(m.encode(m.SetCarrierSuspended(True)))
        ref.ask(m.encode(m.SetCarrierSuspended(False)))
        pop.wait_for(lambda: pop.of(m.CarrierStateChanged)[-1].available, timeout=5)
        view = ref.proxy().stats().get()
        assert [b["state"] for b in view["binds"]] == ["bound"]
        assert view["bind_refusals"] == {"ESME_RINVPASWD": 2}


def test_a_malformed_message_is_dropped_and_the_actor_keeps_working():
    with SmscThread(SmscConfig(seed=3)) as smsc:
        ref, pop = _start(smsc)
        ref.tell(b"\xc1 not msgpack")
        ref.tell(m.encode(m.SubmitToCarrier(_items(1))))
        pop.wait_for(lambda: pop.responses())
        assert ref.proxy().stats().get()["dropped_messages"] == 1


def test_an_smsc_killed_mid_window_and_restarted_on_the_same_port_gets_every_message():
    """The test plays the POP: it resubmits each message answered ``retry`` until all parts are ok."""
    first = SmscThread(SmscConfig(seed=3, latency=(0.01, 0.03), receipts=False)).start()
    port = first.port
    ref, pop = _start(first, window=20)
    items = {i.ref: i for i in _items(200)}
    batch = list(items.values())
    seen = 0
    ref.tell(m.encode(m.SubmitToCarrier(batch)))
    pop.wait_for(lambda: ref.proxy().stats().get()["window_in_use"] > 0, timeout=10)
    first.stop()
    second = None
    try:
        ok: set[str] = set()
        for _round in range(30):
            want = _parts(batch)
            pop.wait_for(lambda s=seen, w=want: len(pop.responses()) - s == w)
            answered = pop.responses()[seen:]
            failed = {r.ref for r in answered if r.outcome != "ok"}
            ok |= {r.ref for r in answered} - failed
            if not failed:
                break
            if second is None:
                second = SmscThread(SmscConfig(seed=4, receipts=False), port=port).start()
            pop.wait_for(lambda: pop.of(m.CarrierStateChanged)[-1].available)
            batch = [items[k] for k in sorted(failed)]
            seen = len(pop.responses())
            ref.tell(m.encode(m.SubmitToCarrier(batch)))
        assert ok == set(items)
        assert _round >= 1  # the kill really forced resubmission
        stats = ref.proxy().stats().get()
        assert stats["reconnects"] >= 1
    finally:
        ref.stop()
        if second is not None:
            second.stop()


def test_throughput_and_window_settings_reach_the_binds():
    with SmscThread(SmscConfig(seed=3, receipts=False)) as smsc:
        ref, pop = _start(smsc, window=3, binds=2, throughput=50)
        stats = ref.proxy().stats().get()
        assert stats["window"] == 6 and len(stats["binds"]) == 2
        ref.tell(m.encode(m.SubmitToCarrier(_items(4))))
        pop.wait_for(lambda: len(pop.responses()) >= 4)
        assert p.ESME_ROK in {part.status for part in smsc.smsc.parts}
