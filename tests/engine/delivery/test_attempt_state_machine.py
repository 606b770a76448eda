"""The attempt state machine (``engine.delivery.attempt.Delivery``) under any interleaving, without threads.

Hypothesis drives one message through a carrier modelled like the SMPP connector - its parts wait in a real
``PartQueue``, are written one at a time, and are answered ``ok``, ``retry``, ``throttled``, ``offline``,
``reject`` or never - while receipts arrive, response deadlines pass and the validity ends, in any order.
The test acts on each verdict exactly as the POP's dispatcher does (withdraw open parts, drop answers to
attempts that are over) and checks after every step:

* no part of an abandoned attempt is written after it was abandoned, and never two attempts' parts queued;
* a permanent rejection (that reached the message) makes it final ``rejected``, so it is never resent;
* a final message has its worst part's status;
* the message is refundable exactly when no carrier acknowledged any part of it.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.delivery.attempt import (
    ABANDONED,
    ACKED,
    ACKED_ALL,
    CLOSING,
    FINAL,
    FINISHED,
    IDLE,
    NO_CARRIER_AVAILABLE,
    SENT,
    SETTLED,
    TIMED_OUT,
    VALIDITY_ELAPSED,
    Delivery,
)
from engine.messages import OFFLINE, OK, REJECT, RETRY, THROTTLED, WITHDRAWN
from engine.smpp.queue import PartQueue
from engine.smpp.submit import SubmitPart
from engine.status import ACCEPTED, EXPIRED, FAILED, REJECTED, status_from_smpp_state, worst
from engine.status import FINAL as FINAL_STATUSES
from storage.records import MessageRecord

RECEIPT_STATES = ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "ENROUTE", "ACCEPTD"]


def record(segments: int) -> MessageRecord:
    return MessageRecord("msg_1", "acc_1", "+4915112345678", "ACME", "DE", "fra", "", "GSM-7",
                         segments, 75_000 * segments, 0.0, 0.0, ACCEPTED, "", 30, None, 0, 0.0)


class DeliveryMachine(RuleBasedStateMachine):
    @initialize(segments=st.integers(1, 3), payload=st.booleans(), withdraws_rest=st.booleans())
    def start(self, segments: int, payload: bool, withdraws_rest: bool) -> None:
        self.d = Delivery(record(segments), "body")
        self.parts = 1 if payload else segments  # a carrier may send a long message whole
        self.withdraws_rest = withdraws_rest  # like the SMPP connector after a failed part
        self.queue = PartQueue()  # the carrier's parts not written yet
        self.on_wire: dict[tuple[str, int], int] = {}  # written, not answered: (ref, part) -> parts
        self.in_transit: list[tuple[str, int, int, str]] = []  # answers on their way to the POP
        self.carrier_took: set[tuple[str, int]] = set()  # parts the carrier accepted (may receipt)
        self.mapped = ""  # the ref whose answers and receipts the POP routes to the message
        self.abandoned: set[str] = set()
        self.attempts = 0
        self.acked_seen = False
        self.rejected = False
        self.forced: str | None = None
        self.parts_status: dict[int, str] = {}  # receipts of the current attempt, as the model sees them

    # --- the POP -----------------------------------------------------------------------------------

    @precondition(lambda self: self.d.phase is IDLE)
    @rule()
    def pop_starts_an_attempt(self) -> None:
        assert len(self.queue) == 0, "a new attempt while parts of the last one could still go out"
        self.attempts += 1
        ref = f"r{self.attempts}"
        self.d.begin(ref, "carrier", 0.0)
        self.mapped = ref
        self.parts_status = {}
        for part in range(self.parts):
            self.queue.put(SubmitPart(ref, part, self.parts), 0.0)

    @precondition(lambda self: self.in_transit)
    @rule(data=st.data())
    def pop_receives_an_answer(self, data) -> None:
        ref, part, parts, outcome = self.in_transit.pop(
            data.draw(st.integers(0, len(self.in_transit) - 1)))
        if ref != self.mapped:
            return  # an attempt that is over: the POP has forgotten its ref
        before = self.d.phase
        verdict = self.d.answer(part, parts, outcome, f"id-{ref}-{part}" if outcome == OK else "",
                                "" if outcome == OK else "0x0000000b")
        if before in (SENT, CLOSING):
            self.acked_seen |= outcome == OK
            self.rejected |= outcome == REJECT
        self._act(verdict)

    @precondition(lambda self: self.d.phase in (SENT, CLOSING))
    @rule()
    def response_deadline_passes(self) -> None:
        self._act(self.d.timeout())
        assert self.d.phase is IDLE  # the attempt is over, answered or not

    @precondition(lambda self: self.d.phase in (SENT, ACKED)
                  and any(ref == self.mapped for ref, _ in self.carrier_took))
    @rule(data=st.data(), state=st.sampled_from(RECEIPT_STATES))
    def receipt_arrives(self, data, state: str) -> None:
        """A receipt for a part the carrier took - maybe before the POP has its answer."""
        part = data.draw(st.sampled_from(sorted(p for r, p in self.carrier_took if r == self.mapped)))
        status = status_from_smpp_state(state)
        self.acked_seen = True  # only a carrier that took the part can receipt it
        if status != ACCEPTED:
            self.parts_status.setdefault(part, status)
        self._act(self.d.receipt(part, status))

    @precondition(lambda self: self.d.phase is not FINAL)
    @rule(parked=st.booleans())
    def validity_ends(self, parked: bool) -> None:
        self.d.parked = parked and self.d.phase is IDLE
        status, error = self.d.expiry()
        assert (status == EXPIRED) == self.acked_seen
        assert status == EXPIRED or error in (NO_CARRIER_AVAILABLE, VALIDITY_ELAPSED)
        if self.d.phase is SENT and self.d.has_open_parts():  # as Dispatcher.finish does
            self._withdraw(self.mapped)
        self.d.finish(status)
        self.forced = self.forced or status
        self._forget()

    @precondition(lambda self: self.d.phase is FINAL)
    @rule(state=st.sampled_from(RECEIPT_STATES), outcome=st.sampled_from([OK, REJECT, RETRY]))
    def late_news_change_nothing_once_final(self, state: str, outcome: str) -> None:
        status = self.d.state.status
        assert self.d.receipt(0, status_from_smpp_state(state)) is None
        assert self.d.answer(0, 1, outcome, "late", "") is None
        assert self.d.timeout() is None
        assert self.d.state.status == status

    def _act(self, verdict: str | None) -> None:
        """What the dispatcher does with a verdict."""
        ref = self.mapped
        if verdict == ABANDONED:
            self.parts_status = {}
            if self.d.phase is CLOSING:
                self._withdraw(ref)
            else:
                self._forget()
        elif verdict == TIMED_OUT:
            self.parts_status = {}
            self._withdraw(ref)
            self._forget()
        elif verdict == SETTLED:
            self._forget()
        elif verdict == FINISHED:
            if self.d.has_open_parts():
                self._withdraw(ref)
            self._forget()
        else:
            assert verdict in (None, ACKED_ALL)

    def _withdraw(self, ref: str) -> None:
        self.abandoned.add(ref)
        for part in self.queue.withdraw(ref):
            self.in_transit.append((ref, part.part, part.parts, WITHDRAWN))

    def _forget(self) -> None:
        self.abandoned.add(self.mapped)
        self.mapped = ""

    # --- the carrier -------------------------------------------------------------------------------

    @precondition(lambda self: len(self.queue) > 0)
    @rule()
    def carrier_writes_a_part(self) -> None:
        part = self.queue.pop()
        assert part.ref not in self.abandoned, "a part of an abandoned attempt reached the carrier"
        self.on_wire[(part.ref, part.part)] = part.parts

    @precondition(lambda self: self.on_wire)
    @rule(data=st.data(), outcome=st.sampled_from([OK, OK, RETRY, THROTTLED, OFFLINE, REJECT]))
    def carrier_answers_a_part(self, data, outcome: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.on_wire)))
        parts = self.on_wire.pop(key)
        self.in_transit.append((key[0], key[1], parts, outcome))
        if outcome == OK:
            self.carrier_took.add(key)
        if outcome != OK and self.withdraws_rest:
            for rest in self.queue.withdraw(key[0]):
                self.in_transit.append((rest.ref, rest.part, rest.parts, WITHDRAWN))

    @precondition(lambda self: self.on_wire)
    @rule(data=st.data())
    def carrier_never_answers_a_part(self, data) -> None:
        del self.on_wire[data.draw(st.sampled_from(sorted(self.on_wire)))]

    # --- what must always hold ---------------------------------------------------------------------

    @invariant()
    def only_the_current_attempt_can_still_be_written(self) -> None:
        if hasattr(self, "d"):
            assert not any(ref in self.queue for ref in self.abandoned)

    @invariant()
    def a_permanent_rejection_is_final(self) -> None:
        if hasattr(self, "d") and self.rejected and self.forced is None:
            assert self.d.phase is FINAL and self.d.state.status == REJECTED

    @invariant()
    def a_final_message_has_its_worst_parts_status(self) -> None:
        if not hasattr(self, "d") or self.d.phase is not FINAL:
            return
        state = self.d.state
        assert state.final and state.status == worst(state.parts)
        if self.forced is None and not self.rejected:  # final by the receipts of this attempt
            assert all(s in FINAL_STATUSES for s in state.parts)
            assert set(self.parts_status) == set(range(len(state.parts)))
            assert state.status == worst(list(self.parts_status.values()))
        if self.forced == FAILED:
            assert not self.acked_seen

    @invariant()
    def refunded_exactly_when_no_carrier_acknowledged_any_part(self) -> None:
        if hasattr(self, "d"):
            assert self.d.refundable == (not self.acked_seen)

    @invariant()
    def a_closing_attempt_waits_only_for_open_parts(self) -> None:
        if hasattr(self, "d") and self.d.phase is CLOSING:
            assert self.d.has_open_parts()

    @invariant()
    def a_sent_attempt_is_the_one_the_pop_listens_to(self) -> None:
        if hasattr(self, "d") and self.d.phase in (SENT, CLOSING):
            assert self.mapped == self.d.ref


TestDeliveryStateMachine = DeliveryMachine.TestCase
TestDeliveryStateMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
