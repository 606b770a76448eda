"""The SMPP ESME connector of one carrier: several binds, one submit queue, receipt matching, stats.

Everything here runs on one asyncio event loop (the carrier actor gives it its own thread). The actor calls
:meth:`SmppConnector.submit` and :meth:`SmppConnector.withdraw` through ``loop.call_soon_threadsafe``;
results leave through three callbacks, called on the loop thread: ``on_responses(list[CarrierResponseItem])``
- batched, one call per burst of resps that arrive together -, ``on_receipts(list[ReceiptItem])`` (batched the
same way) and ``on_state(available, reason)`` when the first transmitting bind comes up or the last one goes
down.

Every part handed to :meth:`submit` gets exactly one answer (``CarrierResponseItem.outcome``, see
:mod:`engine.messages`):

- ``ok``: ``submit_sm_resp`` 0; its message id is kept (bounded, ``receipt_match_seconds``) to match receipts.
- ``throttled``: 0x58 ESME_RTHROTTLED (the bind also slows down, see :mod:`engine.smpp.bind`) or 0x14
  ESME_RMSGQFUL, in a ``submit_sm_resp`` or a ``generic_nack``; our own queue is full (``queue_full``).
- ``retry``: 0x08 ESME_RSYSERR, 0x64 ESME_RX_T_APPN, any other ``generic_nack``, or no resp within
  ``resp_timeout_seconds`` (``resp_timeout``).
- ``reject``: any other status (e.g. 0x0B invalid destination) - permanent.
- ``offline``: the bind dropped while the part was in flight (``connection_lost``/``peer_closed``...); no
  bind came up within ``bind_wait_seconds`` (``not_bound``); the connector is stopping (``shutdown``).
- ``withdrawn``: the part was taken back before it was written: the POP withdrew its attempt
  (:meth:`withdraw`), or another part of the same message got an answer other than ``ok`` (the message
  cannot be completed by this attempt, so its queued parts are not sent).

**Waiting for a bind.** Parts submitted while no bind is up wait in the queue; when a bind comes up they are
sent. A part that has waited ``bind_wait_seconds`` with no bind up is answered ``offline``/``not_bound``.

**A missing resp is ambiguous** (``resp_timeout``, or the connection dropped with the part in flight): the
SMSC may have accepted the part and lost the answer. The POP resubmits (or fails over) and the message may be
delivered twice; treating it as a rejection instead would silently lose messages the SMSC never saw. A resp
that arrives after its timeout is counted (``late_resp``) and ignored; a receipt for it cannot be matched any
more and is counted as ``receipt_unmatched`` when its hold expires.

Receipts are matched by message id through :class:`engine.smpp.receipts.IdIndex` (hex/decimal/leading
zeros normalised). A receipt whose id is not known yet is held (``early_receipt_seconds``, bounded) and
matched when the resp arrives; when its hold expires it is counted and logged, never dropped silently.

**A receipt is answered once it is durable.** The SMSC forgets a receipt once its ``deliver_sm_resp`` says
0, so that answer waits: a matched receipt goes to the POP under a token (``ReceiptItem.token``) and is
answered when the POP says the commit that holds what it changed is durable (:meth:`answer_receipts`,
``stored``), or answered ``receipt_retry_status`` (0x64 ESME_RX_T_APPN) when that commit failed - a full
disk - so the SMSC delivers it again later. The id of a part whose final receipt was not stored stays
known, so that second delivery matches too. A receipt the POP has not answered within
``resp_timeout_seconds`` is answered the temporary error as well (nothing is lost: a duplicate receipt is
harmless). A receipt held for its id is answered 0 if it is still unmatched after ``resp_timeout_seconds``
(nothing of ours to store; it is still matched if its id turns up), an MO message or an unreadable receipt
at once. An answer owed on a connection that dropped is not sent: the SMSC delivers those again on the
next bind.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.messages import (
    OFFLINE,
    OK,
    REJECT,
    RETRY,
    THROTTLED,
    WITHDRAWN,
    CarrierResponseItem,
    ReceiptItem,
)
from engine.smpp import pdu as p
from engine.smpp.bind import CONGESTED, SmppBind
from engine.smpp.queue import PartQueue
from engine.smpp.receipts import IdIndex, ReceiptError, is_receipt, parse_receipt
from engine.smpp.submit import SubmitPart

log = logging.getLogger("engine.smpp.client")
RETRYABLE = frozenset({p.ESME_RX_T_APPN, p.ESME_RSYSERR})
_HOUSEKEEPING_SECONDS = 1.0
_MAX_HELD_RECEIPTS = 100_000
#: How long ``stop()`` waits for its cancelled tasks to end (re-cancelling them) before it gives up on them.
_STOP_GRACE_SECONDS = 2.0


@dataclass(slots=True)
class _Owed:
    """A receipt's ``deliver_sm_resp``, owed until its POP says whether what it changed is durable."""

    send: Callable[[int], None]  # writes the resp on the connection the receipt came on (or nothing)
    deadline: float  # monotonic: answered by the housekeeping after it
    matched: bool = False  # handed to the POP (else: held for its id)
    final_id: str = ""  # a final receipt's id: forgotten once the receipt is stored
    value: tuple[str, int] | None = None  # its (ref, part) under that id


def outcome_of(status: int) -> str:
    """``ok`` | ``throttled`` | ``retry`` | ``reject`` for a ``submit_sm_resp`` command_status."""
    if status == p.ESME_ROK:
        return OK
    if status in CONGESTED:
        return THROTTLED
    return RETRY if status in RETRYABLE else REJECT


class SmppConnector:
    """One carrier's binds. Construct, ``await start()``, ``submit(parts)``, ``await stop()``."""

    def __init__(
        self,
        name: str,
        settings: dict[str, Any],
        on_responses: Callable[[list[CarrierResponseItem]], None],
        on_receipts: Callable[[list[ReceiptItem]], None],
        on_state: Callable[[bool, str], None],
    ) -> None:
        self.name = name
        self.settings = settings
        self._on_responses, self._on_receipts, self._on_state = on_responses, on_receipts, on_state
        self.queue = PartQueue()
        self.binds: list[SmppBind] = []
        self.submitted = 0
        self.reconnects = 0
        self.throttle_pauses = 0
        self.bind_refusals: Counter[str] = Counter()  # bind_*_resp error statuses, by name
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.receipts = 0
        self.available = False
        self._sent = IdIndex(float(settings["receipt_match_seconds"]),
                             int(settings["max_pending_receipts"]))
        self._early = IdIndex(float(settings["early_receipt_seconds"]), _MAX_HELD_RECEIPTS)
        self._owed: dict[int, _Owed] = {}  # token -> the deliver_sm_resp it waits for
        self._tokens = itertools.count(1)
        self._answer_wait = float(settings["resp_timeout_seconds"])
        self._retry_status = int(settings.get("receipt_retry_status", p.ESME_RX_T_APPN))
        self.receipts_refused = 0  # answered the temporary error: not stored, or not answered in time
        self._resp_batch: list[CarrierResponseItem] = []
        self._receipt_batch: list[ReceiptItem] = []
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._bind_wait = float(settings["bind_wait_seconds"])
        self._down_since = time.monotonic()  # no bind is up before the first one binds
        self._bind_wait_task: asyncio.Task | None = None

    async def start(self) -> None:
        modes = {"transceiver": ["transceiver"],
                 "transmitter_receiver": ["transmitter", "receiver"]}[self.settings["bind_mode"]]
        for _i in range(int(self.settings["binds"])):
            for mode in modes:
                self.binds.append(SmppBind(self, len(self.binds), mode))
        self._tasks = [asyncio.create_task(b.run()) for b in self.binds]
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        if self._bind_wait > 0:  # parts submitted before the first bind is up wait for it
            self._bind_wait_task = asyncio.create_task(self._watch_bind_wait())

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work, let in-flight resps arrive (up to ``timeout``), unbind, close."""
        self._stopping = True
        for part in self.queue.drain():
            self.resolve(part, OFFLINE, "", "shutdown")
        await asyncio.gather(*(b.unbind(timeout) for b in self.binds if b.bound),
                             return_exceptions=True)
        tasks = [*self._tasks, *([self._bind_wait_task] if self._bind_wait_task else [])]
        await _cancel_bounded(tasks, _STOP_GRACE_SECONDS, self.name)
        self._flush()

    @property
    def stopping(self) -> bool:
        """``stop()`` has been called: binds make no further connection attempt."""
        return self._stopping

    # --- from the actor -------------------------------------------------------------------------

    def submit(self, parts: list[SubmitPart]) -> None:
        """Queue parts for the binds (they wait up to ``bind_wait_seconds`` for one to be up); resolve
        them at once when they cannot go."""
        if self._stopping:
            for part in parts:
                self.resolve(part, OFFLINE, "", "shutdown")
            return
        if not self.available and self._bind_wait <= 0:
            for part in parts:
                self.resolve(part, OFFLINE, "", "not_bound")
            return
        room = int(self.settings["queue_limit"]) - len(self.queue)
        now = time.monotonic()
        for i, part in enumerate(parts):
            if i < room:
                self.queue.put(part, now)
            else:
                self.resolve(part, THROTTLED, "", "queue_full")

    def retry_now(self) -> None:
        """Binds waiting after a refusal try again at once (the operator resumed the carrier, maybe
        after fixing the credentials); their backoff goes on if refused again."""
        for bind in self.binds:
            bind.retry_now()

    def withdraw(self, refs: list[str]) -> None:
        """Take back every queued part of these refs (answered ``withdrawn``); parts already written
        are answered by the SMSC as usual."""
        for ref in refs:
            for part in self.queue.withdraw(ref):
                self.resolve(part, WITHDRAWN, "", "withdrawn")

    def stats(self) -> dict[str, Any]:
        """A snapshot for the control port (safe to read from another thread)."""
        return {
            "carrier": self.name,
            "available": self.available,
            "binds": [b.view() for b in self.binds],
            "connected_binds": sum(1 for b in self.binds if b.bound),
            "window": sum(b.window_size for b in self.binds if b.transmits),
            "window_in_use": sum(len(b.inflight) for b in self.binds),
            "queued": len(self.queue),
            "submitted": self.submitted,
            "outcomes": dict(self.outcomes),
            "receipts": self.receipts,
            "receipts_held": len(self._early),
            "receipts_unanswered": len(self._owed),
            "receipts_refused": self.receipts_refused,
            "awaiting_receipt": len(self._sent),
            "throttle_pauses": self.throttle_pauses,
            "reconnects": self.reconnects,
            "bind_refusals": dict(self.bind_refusals),
            "errors": dict(self.errors),
        }

    # --- from the binds -------------------------------------------------------------------------

    def bind_changed(self, bind: SmppBind, up: bool, reason: str) -> None:
        available = any(b.bound and b.transmits for b in self.binds) and not self._stopping
        if available != self.available:
            self.available = available
            if not available:
                self._down_since = time.monotonic()
                if self._bind_wait <= 0:
                    self._expire_bind_wait(self._down_since)
                elif self._bind_wait_task is None or self._bind_wait_task.done():
                    self._bind_wait_task = asyncio.get_running_loop().create_task(
                        self._watch_bind_wait())
            self._on_state(available, reason)

    def bind_refused(self, status: int) -> None:
        self.bind_refusals[p.status_name(status)] += 1

    def count_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def resolve(self, part: SubmitPart, outcome: str, message_id: str, error: str) -> None:
        """Answer one part. A part that failed makes the rest of its message pointless for this
        attempt: its parts still queued are withdrawn rather than written."""
        if not self._resp_batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outcomes[outcome] += 1
        self._resp_batch.append(
            CarrierResponseItem(part.ref, part.part, part.parts, outcome, message_id, error))
        if outcome != OK and outcome != WITHDRAWN:
            for rest in self.queue.withdraw(part.ref):
                self.outcomes[WITHDRAWN] += 1
                self._resp_batch.append(CarrierResponseItem(
                    rest.ref, rest.part, rest.parts, WITHDRAWN, "", "withdrawn"))

    def on_submit_resp(self, part: SubmitPart, status: int, message_id: str) -> None:
        outcome = outcome_of(status)
        error = "" if outcome == OK else p.status_name(status)
        self.resolve(part, outcome, message_id, error)
        if outcome != OK:
            return
        if not message_id:
            self.count_error("empty_message_id")
            return
        self.expect(message_id, part.ref, part.part)

    def expect(self, message_id: str, ref: str, part: int) -> None:
        """Match receipts for ``message_id`` to (ref, part): after an accepted submit, or after a
        restart for parts accepted before it (loop thread)."""
        for evicted in self._sent.put(message_id, (ref, part), time.monotonic()):
            self.count_error("receipt_index_full")
            log.warning("smpp_receipt_index_full carrier=%s ref=%s", self.name, evicted[0])
        early = self._early.pop(message_id)
        for receipt, at, token in early or ():
            self._match(receipt, at, token)

    def on_deliver(self, pdu: p.Pdu, answer: Callable[[int], None]) -> None:
        """A ``deliver_sm`` or ``data_sm``, answered through ``answer(status)``: a receipt is matched and
        answered once its POP has stored it (module doc); a mobile-originated message is not ours to
        handle: answered, counted and logged (the command only, never its content)."""
        if not is_receipt(pdu):
            answer(p.ESME_ROK)
            self.count_error("mo_ignored")
            log.info("smpp_mo_ignored carrier=%s command=%s", self.name, pdu.name)
            return
        try:
            receipt = parse_receipt(pdu)
        except ReceiptError:
            answer(p.ESME_ROK)  # delivering it again would not make it readable
            self.count_error("bad_receipt")
            log.warning("smpp_bad_receipt carrier=%s", self.name)
            return
        token = next(self._tokens)
        self._owed[token] = _Owed(answer, time.monotonic() + self._answer_wait)
        if not self._match(receipt, time.time(), token):
            self.count_error("receipt_held")
            evicted = self._early.put(receipt.message_id, (receipt, time.time(), token),
                                      time.monotonic())
            for old, _at, old_token in evicted:
                self._answer_unmatched(old_token)
                self.count_error("receipt_unmatched")
                log.warning("smpp_receipt_unmatched carrier=%s id=%s state=%s (hold full)",
                            self.name, old.message_id, old.state)

    def answer_receipts(self, tokens: list[int], stored: bool) -> None:
        """The POP's word on the receipts under ``tokens`` (loop thread): durable - answered 0, and a
        final one's id forgotten -, or not - answered the temporary error, its id kept for the SMSC's
        next delivery. A token already answered (timed out, or its connection dropped) is skipped."""
        for token in tokens:
            owed = self._owed.pop(token, None)
            if owed is None:
                continue
            if not stored:
                self.receipts_refused += 1
                owed.send(self._retry_status)
                continue
            owed.send(p.ESME_ROK)
            if owed.final_id:
                self._forget(owed.final_id, owed.value)

    def _match(self, receipt, at: float, token: int = 0) -> bool:
        refs = self._sent.get(receipt.message_id)
        if not refs:
            return False
        ref, part = refs[0]
        owed = self._owed.get(token)
        if owed is not None:
            owed.matched = True
        else:
            token = 0  # its answer was given already (it waited too long for its id)
        if receipt.final:
            if owed is not None:  # forgotten once stored: a second delivery must still match
                owed.final_id, owed.value = receipt.message_id, (ref, part)
            else:
                self._forget(receipt.message_id, (ref, part))
        if not self._receipt_batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self.receipts += 1
        self._receipt_batch.append(ReceiptItem(ref, part, receipt.state, receipt.error, at, token))
        return True

    def _forget(self, message_id: str, value: tuple[str, int] | None) -> None:
        """A final receipt for ``message_id`` is stored: no receipt for that part is expected any more."""
        refs = self._sent.get(message_id)
        if refs and value in refs:
            refs.remove(value)
            if not refs:
                self._sent.pop(message_id)

    def _answer_unmatched(self, token: int) -> None:
        """A held receipt that matched nothing: answered 0 (there is nothing of ours to store)."""
        owed = self._owed.pop(token, None)
        if owed is not None:
            owed.send(p.ESME_ROK)

    def _answer_late(self, now: float) -> None:
        """Owed answers past their deadline: a receipt the POP did not answer in time gets the temporary
        error (the SMSC delivers it again), one still held for its id 0 (module doc)."""
        late = [token for token, owed in self._owed.items() if owed.deadline <= now]
        for token in late:
            owed = self._owed.pop(token)
            if owed.matched:
                self.receipts_refused += 1
                self.count_error("receipt_answer_timeout")
                owed.send(self._retry_status)
            else:
                owed.send(p.ESME_ROK)

    # --- internals ------------------------------------------------------------------------------

    async def _watch_bind_wait(self) -> None:
        """While no bind is up: answer ``not_bound`` each part that has waited ``bind_wait_seconds``."""
        tick = min(0.1, self._bind_wait / 10)
        while not self.available and not self._stopping:
            await asyncio.sleep(tick)
            if not self.available:
                self._expire_bind_wait(time.monotonic() - self._bind_wait)

    def _expire_bind_wait(self, waited_since: float) -> None:
        """Parts queued before ``waited_since`` that also waited that long for a bind: ``not_bound``."""
        if self._down_since > waited_since:
            return  # the binds went down less than bind_wait_seconds ago
        for part in self.queue.expire(waited_since):
            self.resolve(part, OFFLINE, "", "not_bound")

    def _flush(self) -> None:
        if self._resp_batch:
            batch, self._resp_batch = self._resp_batch, []
            self._on_responses(batch)
        if self._receipt_batch:
            batch, self._receipt_batch = self._receipt_batch, []
            self._on_receipts(batch)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(_HOUSEKEEPING_SECONDS)
            now = time.monotonic()
            for receipt, _at, token in self._early.expire(now):
                self._answer_unmatched(token)
                self.count_error("receipt_unmatched")
                log.warning("smpp_receipt_unmatched carrier=%s id=%s state=%s", self.name,
                            receipt.message_id, receipt.state)
            expired = len(self._sent.expire(now))
            if expired:
                self.errors["receipt_never_arrived"] += expired
            if self._owed:
                self._answer_late(now)


async def _cancel_bounded(tasks: list[asyncio.Task], grace: float, carrier: str) -> None:
    """Cancel ``tasks`` and wait for them, at most ``grace`` seconds: a stop (the operator's SIGTERM) must
    not hang on a task that lost its cancellation (an await that swallows it - Python 3.11's
    ``asyncio.wait_for`` did when its awaitable finished in the same loop iteration). A survivor is
    cancelled again every 0.1 s; one still running at the end is logged and left behind."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    pending = [t for t in tasks if not t.done()]
    while pending:
        for t in pending:
            t.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _done, still = await asyncio.wait(pending, timeout=min(0.1, left))
        pending = list(still)
    for t in tasks:
        if t.done() and not t.cancelled():
            t.exception()  # retrieved: an error of a task that ended is not logged as never retrieved
    if pending:
        log.error("smpp_stop_tasks_left carrier=%s tasks=%d", carrier, len(pending))
