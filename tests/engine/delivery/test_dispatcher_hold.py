"""The dispatcher starts no carrier attempt while its owner holds them (status changes cannot be written).

A carrier's acknowledgement that cannot be stored is lost with a restart and the message sent again, so
while the POP's commits fail nothing new goes to a carrier: not a message waiting for a window slot, not a
new one, not a retry. What is on the wire stays there. ``resume`` sends them in the order they were held.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

from engine.config import CarrierSettings, carrier_options
from engine.delivery.admission import Admission
from engine.delivery.attempt import Delivery
from engine.delivery.carriers import CarrierBoard
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.outbox import Outbox
from engine.delivery.retry import RetryPolicy
from engine.delivery.timers import Timers
from engine.messages import OK, CarrierResponseItem
from engine.routing import CarrierCandidate
from storage.records import LiveRecord
from tests.engine.delivery.test_attempt_state_machine import record

LIMITS = SimpleNamespace(max_attempts=3, retry_window_seconds=10.0, retry_base_ms=20.0,
                         retry_cap_ms=1000.0)


class Owner:
    def __init__(self) -> None:
        self.acks: list[str] = []

    def schedule_retry(self, message_id: str, delay: float) -> None:
        pass

    def acked(self, f: Delivery) -> None:
        self.acks.append(f.record.message_id)

    def finalised(self, f: Delivery, error: str, refund: bool) -> None:
        pass

    def persist(self, f: Delivery, **changes) -> None:
        pass


def dispatcher(window: int = 1) -> tuple[Dispatcher, Owner]:
    board = CarrierBoard({"a": CarrierSettings("a", "fra", "simulated",
                                               carrier_options("simulated", {"window": window}))}, 3.0)
    owner = Owner()
    d = Dispatcher(owner, board, RetryPolicy(LIMITS, random.Random(1)), Admission(5.0, board), Timers(),
                   Outbox(), lambda: 100.0, {"a"}, random.Random(1))
    return d, owner


def message(d: Dispatcher, n: int) -> Delivery:
    rec = LiveRecord.of(record(1))
    rec.message_id = f"msg_{n}"
    f = Delivery(rec, "body")
    f.candidates = (CarrierCandidate("a"),)
    d.inflight[f.record.message_id] = f
    return f


def sent(d: Dispatcher) -> list[str]:
    return [d.refs[item.ref] for _, msg, _ in d.outbox.take() for item in msg.items]


def ack(d: Dispatcher, f: Delivery) -> None:
    d.answered([CarrierResponseItem(f.ref, 0, 1, OK, f"c-{f.record.message_id}", "")])


def test_while_held_nothing_new_reaches_a_carrier_and_resume_sends_the_held_in_order():
    d, owner = dispatcher(window=1)
    first, second, third = (message(d, n) for n in (1, 2, 3))
    d.route(first)
    d.route(second)  # waits for the window's one slot
    assert sent(d) == ["msg_1"]

    d.hold()  # a commit failed
    d.route(third)  # a new message
    ack(d, first)  # the attempt on the wire is answered: its slot would go to msg_2
    d.retry_due("msg_3")
    assert sent(d) == [] and list(d.held) == ["msg_2", "msg_3"]
    assert owner.acks == ["msg_1"]  # what was on the wire is still taken

    assert d.resume() == 2
    assert sent(d) == ["msg_2"] and not d.held  # in order, within the window
    ack(d, second)
    assert sent(d) == ["msg_3"]


def test_a_held_message_that_ends_meanwhile_is_not_sent_on_resume():
    d, _ = dispatcher()
    f = message(d, 1)
    d.hold()
    d.route(f)
    d.finish(f, "expired", "validity over")
    assert not d.held
    assert d.resume() == 0 and sent(d) == []
