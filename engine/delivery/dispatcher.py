"""The POP's delivery loop: route each message to a carrier, and act on every verdict of its attempts.

:class:`Dispatcher` holds a POP's messages in flight (``Delivery`` by message id, and the carrier ref of each
current attempt) and applies the rules of the other modules of this package:

* **Routing.** The first usable candidate from the current one on (:meth:`CarrierBoard.pick`); with its
  window full, the message queues for a slot. Every candidate cooling down: wait for the first to be usable.
  Every candidate down or suspended: the message is *parked* until a candidate comes back.
* **Verdicts** (:mod:`engine.delivery.attempt`). ``ACKED_ALL``: the owner records the acknowledgement.
  ``ABANDONED`` / ``TIMED_OUT``: the open parts are withdrawn from the carrier, and the next attempt goes
  to the next candidate after a backoff - but never before the abandoned attempt has settled, so two
  attempts of one message are never on the wire together. ``FINISHED``: final.
* **Window slots** are held from the hand-over until the attempt is over (acknowledged, settled, timed out
  or final) and then given to the next message waiting for that carrier.
* **Holding attempts.** While the owner cannot write status changes (its commits fail: a full disk), no
  attempt starts (:meth:`hold`): a carrier's acknowledgement is its message id, and one that cannot be
  stored is lost if the engine stops before space returns - the message would be sent again after the
  restart, a second SMS to the handset. Messages that would start one wait in ``held`` (they are in flight
  already: ``max_in_flight`` bounds them) and are routed again, in order, on :meth:`resume`.

It decides and records; the owner (the POP actor) commits and tells. The owner provides
``schedule_retry(message_id, delay)``, ``acked(f)``, ``finalised(f, error, refund)`` and
``persist(f, **changes)``; carrier traffic goes to :class:`~engine.delivery.outbox.Outbox`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Container

from engine.delivery.admission import Admission
from engine.delivery.attempt import (
    ABANDONED,
    ACKED_ALL,
    CLOSING,
    FINAL,
    FINISHED,
    IDLE,
    QUEUED,
    RETRIES_EXHAUSTED,
    SENT,
    SETTLED,
    TIMED_OUT,
    Delivery,
)
from engine.delivery.carriers import CarrierBoard
from engine.delivery.outbox import Outbox
from engine.delivery.retry import RetryPolicy
from engine.delivery.timers import Timers
from engine.messages import REJECT, THROTTLED, CarrierSubmitItem
from engine.status import FAILED


class Dispatcher:
    def __init__(self, owner, board: CarrierBoard, retry: RetryPolicy, admission: Admission,
                 timers: Timers, outbox: Outbox, now: Callable[[], float],
                 running: Container[str], rng: random.Random) -> None:
        self.owner = owner
        self.board, self.retry, self.admission = board, retry, admission
        self.timers, self.outbox = timers, outbox
        self.now = now  # the monotonic clock
        self.running = running  # carriers whose actor runs (the directory)
        self.rng = rng
        self.inflight: dict[str, Delivery] = {}
        self.refs: dict[str, str] = {}  # carrier ref of a current attempt -> message id
        self.parked: dict[str, None] = {}  # message ids waiting for a candidate to be available
        self.holding = False  # no attempt may start (hold / resume)
        self.held: dict[str, None] = {}  # message ids whose next attempt waits for resume
        self.counters = {"retries": 0, "failovers": 0, "resp_timeouts": 0, "withdrawals": 0}
        self._ref_prefix = os.urandom(3).hex()
        self._ref_seq = 0

    # --- routing -----------------------------------------------------------------------------------

    def route(self, f: Delivery) -> None:
        """Hand ``f`` to its next usable carrier, or queue it for a window slot, or let it wait."""
        if self.holding:
            self.held[f.record.message_id] = None
            return
        now = self.now()
        index, wait = self.board.pick(f.candidates, f.cand_index, now, self.running)
        if index < 0:
            mid = f.record.message_id
            if wait > 0:  # every usable candidate is cooling down: try when the first is back
                f.parked = False
                self.owner.schedule_retry(mid, wait + self.rng.uniform(0, 0.01))
            else:  # every candidate is down or suspended: wait for one (carrier_state_changed)
                f.parked = True
                self.parked[mid] = None
            return
        f.cand_index = index
        carrier = f.candidates[index].carrier
        if self.board.has_room(carrier):
            self._send(f, carrier, now)
        else:
            f.queue(carrier)
            self.board.wait_for_slot(carrier, f.record.message_id, now)

    def new_ref(self) -> str:
        self._ref_seq += 1
        return f"{self._ref_prefix}{self._ref_seq:x}"

    def _send(self, f: Delivery, carrier: str, now: float) -> None:
        ref = self.new_ref()
        if f.ref:
            self.refs.pop(f.ref, None)
        f.begin(ref, carrier, now)
        rec = f.record  # the POP's live record (storage.records.LiveRecord)
        rec.carrier = carrier
        rec.attempts += 1
        self.refs[ref] = rec.message_id
        self.board.take(carrier)
        self.outbox.submit(carrier, CarrierSubmitItem(ref, rec.to, rec.sender, f.body, rec.segments))
        self.timers.expect_answer(now + self.board.links[carrier].attempt_timeout, rec.message_id, ref)

    def _release(self, f: Delivery) -> None:
        """``f``'s attempt no longer occupies its carrier's window: hand the slot to the next waiting."""
        self.board.release(f.carrier)
        link = self.board.links.get(f.carrier)
        if link is not None:
            self._drain_waiting(link)

    def _drain_waiting(self, link) -> None:
        if self.holding:
            return  # (emptied by hold: what comes meanwhile is held)
        queue, now, carrier = link.waiting, self.now(), link.name
        while queue and link.outstanding < link.window:
            f = self.inflight.get(queue.popleft())
            if f is None or f.phase is not QUEUED or f.carrier != carrier:
                continue
            if link.available:
                self._send(f, carrier, now)
            else:
                f.phase = IDLE
                self.route(f)

    def _withdraw(self, f: Delivery) -> None:
        """Take back the parts of ``f``'s attempt the carrier has not written yet."""
        if self.outbox.withdraw(f.carrier, f.ref):
            self.counters["withdrawals"] += 1

    # --- holding attempts (the owner cannot write status changes) ---------------------------------

    def hold(self) -> None:
        """Start no attempt until :meth:`resume`; the messages waiting for a window slot are held too.
        Attempts already handed to a carrier go on (withdrawing them would count as failed attempts)."""
        self.holding = True
        for link in self.board.links.values():
            while link.waiting:
                mid = link.waiting.popleft()
                f = self.inflight.get(mid)
                if f is not None and f.phase is QUEUED and f.carrier == link.name:
                    f.phase = IDLE
                    self.held[mid] = None

    def resume(self) -> int:
        """Attempts may start again: route every held message, in the order it was held; how many."""
        self.holding = False
        held, self.held = self.held, {}
        for mid in held:
            f = self.inflight.get(mid)
            if f is not None and f.phase is IDLE and not f.parked:
                self.route(f)
        return len(held)

    # --- what carriers and the clock say -----------------------------------------------------------

    def answered(self, items) -> None:
        """``CarrierResponseItem``s from one carrier."""
        inflight, refs = self.inflight, self.refs
        for it in items:
            f = inflight.get(refs.get(it.ref, ""))
            if f is None or f.ref != it.ref:
                continue  # an attempt that is over, or a message already final
            before = f.phase
            verdict = f.answer(it.part, it.parts, it.outcome, it.carrier_message_id, it.error)
            if verdict is not None:
                self._on_verdict(f, before, verdict, it.outcome, it.error)

    def receipted(self, items, status_of: Callable[[str], str]) -> None:
        """``ReceiptItem``s (late and duplicate ones are harmless)."""
        inflight, refs = self.inflight, self.refs
        for it in items:
            f = inflight.get(refs.get(it.ref, ""))
            if f is not None:
                before = f.phase
                verdict = f.receipt(it.part, status_of(it.state))
                if verdict is not None:
                    self._on_verdict(f, before, verdict, "", it.error)

    def timed_out(self, now: float) -> None:
        """Response deadlines due at ``now`` (monotonic)."""
        inflight = self.inflight
        for mid, ref in self.timers.due_answers(now):
            f = inflight.get(mid)
            if f is not None and f.ref == ref:
                before = f.phase
                verdict = f.timeout()
                if verdict is not None:
                    self._on_verdict(f, before, verdict)

    def retry_due(self, mid: str) -> None:
        f = self.inflight.get(mid)
        if f is None:
            return
        if f.phase is IDLE and not f.parked:
            self.route(f)
        elif f.phase is CLOSING:
            f.retry_due = True  # the next attempt starts once this one has settled

    def carrier_state_changed(self, carrier: str, available: bool, reason: str) -> None:
        self.board.set_available(carrier, available, reason, self.now())
        self.admission.refresh()
        link = self.board.links.get(carrier)
        if link is None:
            return
        if available:
            for mid in list(self.parked):
                f = self.inflight.get(mid)
                if f is None or any(c.carrier == carrier for c in f.candidates):
                    del self.parked[mid]
                    if f is not None:
                        f.parked = False
                        self.route(f)
            self._drain_waiting(link)
            return
        waiting = list(link.waiting)  # never handed over: route it elsewhere now
        link.waiting.clear()
        for mid in waiting:
            f = self.inflight.get(mid)
            if f is not None and f.phase is QUEUED and f.carrier == carrier:
                f.phase = IDLE
                self.route(f)

    # --- verdicts ----------------------------------------------------------------------------------

    def _on_verdict(self, f: Delivery, before: str, verdict: str, outcome: str = "",
                    error: str = "") -> None:
        if (before is SENT or before is CLOSING) and f.phase is not SENT and f.phase is not CLOSING:
            self._release(f)
        if verdict is ACKED_ALL:
            self.board.acknowledged(f.carrier)
            self._leave_backlog(f)
            self.owner.acked(f)
        elif verdict is FINISHED:  # a part rejected (its error is f.error), or the last receipt
            if f.has_open_parts():
                self._withdraw(f)
            self.finish(f, f.state.status, f.error if outcome == REJECT else error)
        elif verdict is ABANDONED:
            if outcome == THROTTLED:
                self.board.throttled(f.carrier, self.now())
            if f.phase is CLOSING:
                self._withdraw(f)
            else:
                self.refs.pop(f.ref, None)
            self._retry_or_give_up(f)
        elif verdict is TIMED_OUT:
            self.counters["resp_timeouts"] += 1
            self._withdraw(f)
            self.refs.pop(f.ref, None)
            self._retry_or_give_up(f)
        elif verdict is SETTLED:
            self.refs.pop(f.ref, None)
            self._keep_fragment_acks(f)
            if f.retry_due:
                self.route(f)

    def _retry_or_give_up(self, f: Delivery) -> None:
        """After an abandoned attempt: the next one (another candidate first) after a backoff."""
        if f.phase is not CLOSING:
            self._keep_fragment_acks(f)
        if self.retry.exhausted(f, self.now()):
            self.finish(f, FAILED, f"{RETRIES_EXHAUSTED}: {f.error}")
            return
        if len(f.candidates) > 1:
            f.cand_index = (f.cand_index + 1) % len(f.candidates)
            self.counters["failovers"] += 1
        self.counters["retries"] += 1
        self.owner.schedule_retry(f.record.message_id, self.retry.backoff(f))

    def _keep_fragment_acks(self, f: Delivery) -> None:
        """A part of an abandoned attempt was acknowledged (it may reach the handset, so the message
        stays charged): keep that on the record, so that a restart knows it too."""
        if f.ever_acked and f.carrier_ids and not any(f.record.carrier_ids):
            ids = tuple(f.carrier_ids.get(part, "") for part in range(len(f.state.parts)))
            self.owner.persist(f, carrier_ids=ids)

    def _leave_backlog(self, f: Delivery) -> None:
        if f.route_key is not None:
            self.admission.remove(f.route_key)
            f.route_key = None

    # --- the end -----------------------------------------------------------------------------------

    def finish(self, f: Delivery, status: str, error: str, *, refund: bool = True) -> None:
        """Make ``f`` final, free what it holds, and let the owner commit and announce it."""
        if f.phase is SENT or f.phase is CLOSING:  # forced (expiry, retries exhausted, erasure)
            if f.phase is SENT and f.has_open_parts():  # a CLOSING attempt was withdrawn already
                self._withdraw(f)
            f.phase = FINAL
            self._release(f)
        f.finish(status)  # no change if the state machine made it final already
        mid = f.record.message_id
        self.inflight.pop(mid, None)
        self.refs.pop(f.ref, None)
        self.parked.pop(mid, None)
        self.held.pop(mid, None)
        self._leave_backlog(f)
        self.owner.finalised(f, error, refund)
