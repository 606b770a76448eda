"""The SMPP ESME connector of one carrier: several binds, one submit queue, receipt matching, stats.

Everything here runs on one asyncio event loop (the carrier actor gives it its own thread). The actor calls
:meth:`SmppConnector.submit` through ``loop.call_soon_threadsafe``; results leave through three callbacks,
called on the loop thread: ``on_responses(list[CarrierResponseItem])`` - batched, one call per burst of
resps that arrive together -, ``on_receipts(list[ReceiptItem])`` (batched the same way) and
``on_state(available, reason)`` when the first transmitting bind comes up or the last one goes down.

Outcomes of a part (``CarrierResponseItem.outcome``):

- ``ok``: ``submit_sm_resp`` 0; its message id is kept (bounded, ``receipt_match_seconds``) to match receipts.
- ``throttled``: 0x58 ESME_RTHROTTLED; the bind also slows down (see :mod:`engine.smpp.bind`).
- ``retry``: 0x14 ESME_RMSGQFUL, 0x64 ESME_RX_T_APPN, 0x08 ESME_RSYSERR; a ``generic_nack``; the bind
  dropped while the part was in flight (``connection_lost``/``peer_closed``...); no bind up
  (``not_bound``); the queue is full (``queue_full``); the connector is stopping (``shutdown``).
- ``reject``: any other status (e.g. 0x0B invalid destination) - permanent.

**A missing resp is ambiguous** (``resp_timeout``): the SMSC may have accepted the part and lost the answer.
We report ``retry`` with error ``resp_timeout``, so the POP resubmits (or fails over) and the message may be
delivered twice; reporting ``reject`` instead would silently lose messages the SMSC never saw. A resp that
arrives after its timeout is counted (``late_resp``) and ignored; a receipt for it cannot be matched any more
and is counted as ``receipt_unmatched`` when its hold expires.

Receipts are matched by message id through :class:`engine.smpp.receipts.IdIndex` (hex/decimal/leading
zeros normalised). A receipt whose id is not known yet is held (``early_receipt_seconds``, bounded) and
matched when the resp arrives; when its hold expires it is counted and logged, never dropped silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from engine.messages import CarrierResponseItem, ReceiptItem
from engine.smpp import pdu as p
from engine.smpp.bind import SmppBind
from engine.smpp.receipts import IdIndex, ReceiptError, is_receipt, parse_receipt
from engine.smpp.submit import SubmitPart

log = logging.getLogger("engine.smpp.client")
RETRYABLE = frozenset({p.ESME_RMSGQFUL, p.ESME_RX_T_APPN, p.ESME_RSYSERR})
_HOUSEKEEPING_SECONDS = 1.0
_MAX_HELD_RECEIPTS = 100_000


def outcome_of(status: int) -> str:
    """``ok`` | ``throttled`` | ``retry`` | ``reject`` for a ``submit_sm_resp`` command_status."""
    if status == p.ESME_ROK:
        return "ok"
    if status == p.ESME_RTHROTTLED:
        return "throttled"
    return "retry" if status in RETRYABLE else "reject"


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
        self.queue: asyncio.Queue[SubmitPart] = asyncio.Queue()
        self.binds: list[SmppBind] = []
        self.submitted = 0
        self.reconnects = 0
        self.throttle_pauses = 0
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.receipts = 0
        self.available = False
        self._sent = IdIndex(float(settings["receipt_match_seconds"]),
                             int(settings["max_pending_receipts"]))
        self._early = IdIndex(float(settings["early_receipt_seconds"]), _MAX_HELD_RECEIPTS)
        self._resp_batch: list[CarrierResponseItem] = []
        self._receipt_batch: list[ReceiptItem] = []
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    async def start(self) -> None:
        modes = {"transceiver": ["transceiver"],
                 "transmitter_receiver": ["transmitter", "receiver"]}[self.settings["bind_mode"]]
        for _i in range(int(self.settings["binds"])):
            for mode in modes:
                self.binds.append(SmppBind(self, len(self.binds), mode))
        self._tasks = [asyncio.create_task(b.run()) for b in self.binds]
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work, let in-flight resps arrive (up to ``timeout``), unbind, close."""
        self._stopping = True
        self._drain_queue("shutdown")
        await asyncio.gather(*(b.unbind(timeout) for b in self.binds if b.bound),
                             return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._flush()

    # --- from the actor -------------------------------------------------------------------------

    def submit(self, parts: list[SubmitPart]) -> None:
        """Queue parts for the binds; resolve them at once as ``retry`` when they cannot go."""
        if self._stopping or not self.available:
            for part in parts:
                self.resolve(part, "retry", "", "shutdown" if self._stopping else "not_bound")
            return
        room = int(self.settings["queue_limit"]) - self.queue.qsize()
        for i, part in enumerate(parts):
            if i < room:
                self.queue.put_nowait(part)
            else:
                self.resolve(part, "retry", "", "queue_full")

    def stats(self) -> dict[str, Any]:
        """A snapshot for the control port (safe to read from another thread)."""
        return {
            "carrier": self.name,
            "available": self.available,
            "binds": [b.view() for b in self.binds],
            "connected_binds": sum(1 for b in self.binds if b.bound),
            "window": sum(b.window_size for b in self.binds if b.transmits),
            "window_in_use": sum(len(b.inflight) for b in self.binds),
            "queued": self.queue.qsize(),
            "submitted": self.submitted,
            "outcomes": dict(self.outcomes),
            "receipts": self.receipts,
            "receipts_held": len(self._early),
            "awaiting_receipt": len(self._sent),
            "throttle_pauses": self.throttle_pauses,
            "reconnects": self.reconnects,
            "errors": dict(self.errors),
        }

    # --- from the binds -------------------------------------------------------------------------

    def bind_changed(self, bind: SmppBind, up: bool, reason: str) -> None:
        available = any(b.bound and b.transmits for b in self.binds) and not self._stopping
        if available != self.available:
            self.available = available
            if not available:
                self._drain_queue("not_bound")
            self._on_state(available, reason)

    def count_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def resolve(self, part: SubmitPart, outcome: str, message_id: str, error: str) -> None:
        if not self._resp_batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self.outcomes[outcome] += 1
        self._resp_batch.append(
            CarrierResponseItem(part.ref, part.part, part.parts, outcome, message_id, error))

    def on_submit_resp(self, part: SubmitPart, status: int, message_id: str) -> None:
        outcome = outcome_of(status)
        error = "" if outcome == "ok" else p.status_name(status)
        self.resolve(part, outcome, message_id, error)
        if outcome != "ok":
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
        for receipt, at in early or ():
            self._match(receipt, at)

    def on_deliver(self, pdu: p.Pdu) -> None:
        if not is_receipt(pdu):
            self.count_error("mo_ignored")
            return
        try:
            receipt = parse_receipt(pdu)
        except ReceiptError:
            self.count_error("bad_receipt")
            log.warning("smpp_bad_receipt carrier=%s", self.name)
            return
        if not self._match(receipt, time.time()):
            self.count_error("receipt_held")
            evicted = self._early.put(receipt.message_id, (receipt, time.time()), time.monotonic())
            for old, _at in evicted:
                self.count_error("receipt_unmatched")
                log.warning("smpp_receipt_unmatched carrier=%s id=%s state=%s (hold full)",
                            self.name, old.message_id, old.state)

    def _match(self, receipt, at: float) -> bool:
        refs = self._sent.get(receipt.message_id)
        if not refs:
            return False
        ref, part = refs[0]
        if receipt.final:
            refs.pop(0)
            if not refs:
                self._sent.pop(receipt.message_id)
        if not self._receipt_batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self.receipts += 1
        self._receipt_batch.append(ReceiptItem(ref, part, receipt.state, receipt.error, at))
        return True

    # --- internals ------------------------------------------------------------------------------

    def _drain_queue(self, reason: str) -> None:
        while not self.queue.empty():
            self.resolve(self.queue.get_nowait(), "retry", "", reason)

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
            for receipt, _at in self._early.expire(now):
                self.count_error("receipt_unmatched")
                log.warning("smpp_receipt_unmatched carrier=%s id=%s state=%s", self.name,
                            receipt.message_id, receipt.state)
            expired = len(self._sent.expire(now))
            if expired:
                self.errors["receipt_never_arrived"] += expired
