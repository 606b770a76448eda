"""One message's way through its carriers: its attempts, the answer to each part, and what follows.

:class:`Delivery` is the state machine of one message at its POP. The POP drives it with what carriers
answer, what the clock says and what receipts report, and acts on the verdict each call returns; the
hypothesis stateful test (``tests/engine/delivery/test_attempt_state_machine.py``) drives it the same
way, without threads.

Phases (``Delivery.phase``)::

    IDLE     no attempt: new, waiting for a backoff, or waiting for a carrier to be available
    QUEUED   a carrier is chosen; waiting for a slot in the POP's window for it (nothing handed over yet)
    SENT     handed to the carrier under ``ref``; its parts are being answered
    CLOSING  abandoned while parts were still open at the carrier: the POP withdraws them, and the next
             attempt waits until each is answered (``withdrawn``, or whatever the carrier says) or the
             response deadline passes - two attempts of one message are never on the wire together
    ACKED    every part acknowledged by the carrier: waiting for receipts
    FINAL    final status reached (terminal)

Rules, in the order they apply to an answer for a part of the current attempt:

* The first answer of an attempt says how many parts the carrier made of the message.
* ``reject`` (permanent) for any part -> FINAL ``rejected`` at once, also while CLOSING: the message can
  never be assembled on the handset, so it is never sent again (verdict ``FINISHED``; the POP withdraws the
  parts still open).
* ``ok`` for every part -> ACKED (verdict ``ACKED``: the body is discarded, the carrier's ids recorded).
* ``retry``, ``throttled``, ``offline`` or ``withdrawn`` for a part while SENT -> the attempt is abandoned
  (verdict ``RETRY``) and every part starts over in the next attempt, under a new ref. If parts are still
  open the phase is CLOSING until they are answered (verdict ``SETTLED``).
* The response deadline passes while SENT -> abandoned and over (verdict ``TIMED_OUT``): the open parts are
  withdrawn, but the carrier may have written one and lost only its answer - the one duplicate window.
  While CLOSING -> ``SETTLED``.
* Receipts count for the attempt that is SENT or ACKED (a receipt may overtake the answer to the submit);
  the message is final once every part is final, with its worst part's status (``engine.status``).

Billing: a message is charged once a carrier acknowledged any part of it, in any attempt, by an answer or a
receipt (``ever_acked``: that part may reach the handset). One that ends without any is ``refundable``.
"""

from __future__ import annotations

from engine.messages import OK, REJECT, RETRY
from engine.status import ACCEPTED, EXPIRED, FAILED, REJECTED, MessageState

IDLE, QUEUED, SENT, CLOSING, ACKED, FINAL = "idle", "queued", "sent", "closing", "acked", "final"

# verdicts: what the POP must do after a call (None: nothing)
ACKED_ALL = "acked_all"  # every part acknowledged
ABANDONED = "abandoned"  # a retryable answer ended the attempt; if CLOSING, withdraw its open parts
TIMED_OUT = "timed_out"  # the response deadline ended the attempt; withdraw its open parts
SETTLED = "settled"  # a CLOSING attempt has no open part left: the next attempt may start
FINISHED = "finished"  # the message is final (``state.status``)

# why a message ends without a carrier's acknowledgement (the record's ``error``)
NO_CARRIER_AVAILABLE = "no_carrier_available"  # validity ended while every candidate carrier was down
VALIDITY_ELAPSED = "validity_elapsed_before_send"  # validity ended before any carrier took the message
RETRIES_EXHAUSTED = "retries_exhausted"  # max_attempts (or the retry window) used up by carrier errors


class Delivery:
    """What a POP holds in memory for a message that is not final yet. Not thread-safe: one owner."""

    __slots__ = ("record", "body", "state", "candidates", "cand_index", "route_key", "ref", "carrier",
                 "phase", "answered", "carrier_ids", "sent_at", "ever_acked", "failures",
                 "first_failure_at", "retries", "retry_due", "parked", "error")

    def __init__(self, record, body: str | None) -> None:
        self.record = record
        self.body = body
        self.state = MessageState(max(1, record.segments))
        self.candidates: tuple = ()
        self.cand_index = 0
        self.route_key: str | None = None  # set while counted in its route's admission backlog
        self.ref = ""
        self.carrier = record.carrier
        self.phase = IDLE
        self.answered: set[int] = set()  # parts of the current attempt the carrier has answered
        self.carrier_ids: dict[int, str] = {}  # part -> the carrier's message id (current attempt)
        self.sent_at = 0.0
        self.ever_acked = bool(record.carrier_acked_at) or any(record.carrier_ids)
        self.failures = 0  # answers that use up max_attempts (retry, response timeout)
        self.first_failure_at = 0.0
        self.retries = 0  # the backoff exponent: grows with every retry, whatever its cause
        self.retry_due = False  # the backoff has passed while the attempt was still CLOSING
        self.parked = False  # waiting for any candidate carrier to become available
        self.error = ""  # why the last attempt did not go through

    # --- attempts ----------------------------------------------------------------------------------

    def queue(self, carrier: str) -> None:
        """A carrier is chosen but its window is full: wait for a slot (nothing is handed over)."""
        self.carrier, self.phase, self.parked = carrier, QUEUED, False

    def begin(self, ref: str, carrier: str, now: float) -> None:
        """Hand the whole message to ``carrier`` under a new ``ref``."""
        self.ref, self.carrier, self.phase, self.sent_at = ref, carrier, SENT, now
        self.retry_due = self.parked = False
        self.answered.clear()
        self.carrier_ids.clear()

    def answer(self, part: int, parts: int, outcome: str, carrier_message_id: str,
               error: str) -> str | None:
        """The carrier's answer for one part of the current attempt; returns a verdict or None."""
        phase = self.phase
        if phase is not SENT and phase is not CLOSING:
            return None  # queued, idle, acked or final: an answer to an attempt that is over
        answered = self.answered
        if phase is SENT and not answered:
            self.state.resize(parts)
            if self.state.final:  # receipts that overtook this answer already settled every part
                self.phase = FINAL
                return FINISHED
        if part in answered or not 0 <= part < len(self.state.parts):
            return None
        answered.add(part)
        if outcome == OK:
            self.ever_acked = True
            self.carrier_ids[part] = carrier_message_id
            if phase is SENT and len(answered) == len(self.state.parts):
                self.phase = ACKED
                return ACKED_ALL
        elif outcome == REJECT:
            return self._reject(part, error)
        elif phase is SENT:
            return self._abandon(outcome, error)
        if phase is CLOSING and len(answered) == len(self.state.parts):
            self.phase = IDLE
            return SETTLED
        return None

    def timeout(self) -> str | None:
        """The response deadline of the current attempt has passed."""
        if self.phase is SENT:
            self.error = "resp_timeout"
            self.failures += 1
            self.state = MessageState(len(self.state.parts))
            self.phase = IDLE
            return TIMED_OUT
        if self.phase is CLOSING:
            self.phase = IDLE
            return SETTLED
        return None

    def has_open_parts(self) -> bool:
        """Parts of the attempt just ended that the carrier has not answered (to withdraw)."""
        return len(self.answered) < len(self.state.parts)

    def _abandon(self, outcome: str, error: str) -> str:
        self.error = error or outcome
        if outcome == RETRY:
            self.failures += 1
        n = len(self.state.parts)
        self.state = MessageState(n)  # every part goes again in the next attempt
        self.phase = CLOSING if len(self.answered) < n else IDLE
        return ABANDONED

    def _reject(self, part: int, error: str) -> str:
        self.error = error or REJECT
        self.state.apply(part, REJECTED)
        self.state.finish(REJECTED)  # rejected is the worst status: nothing can make it better
        self.phase = FINAL
        return FINISHED

    # --- receipts and the end ----------------------------------------------------------------------

    def receipt(self, part: int, status: str) -> str | None:
        """A receipt for a part of the current attempt; FINISHED once every part is final.

        A receipt can overtake the carrier's answer to the submit; either way the carrier has the part,
        so the message counts as acknowledged (charged) from here on."""
        if self.phase is not ACKED and self.phase is not SENT:
            return None
        self.ever_acked = True
        if status == ACCEPTED:
            return None
        if self.state.apply(part, status) and self.state.final:
            self.phase = FINAL
            return FINISHED
        return None

    def finish(self, status: str) -> None:
        """Force the message final (expiry, retries exhausted, no route, erasure); a message already
        final keeps its status."""
        self.state.finish(status)
        self.phase = FINAL

    def expiry(self) -> tuple[str, str]:
        """The final status and reason when the validity (and grace) ends before a final receipt."""
        if self.ever_acked:
            return EXPIRED, "no final receipt within validity"
        return FAILED, NO_CARRIER_AVAILABLE if self.parked else VALIDITY_ELAPSED

    @property
    def refundable(self) -> bool:
        """No carrier ever acknowledged any part: the customer gets the price back."""
        return not self.ever_acked
