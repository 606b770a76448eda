"""SimulatedCarrierActor: an in-process carrier link that behaves like a real one.

It has a submit window, a throughput limit, a latency distribution for submit answers, a receipt delay
distribution and an outcome mix: ``delivered``, ``undeliverable``, ``rejected`` (permanent submit error),
``expired``, ``throttled`` (retryable) and ``no_answer`` (the submit is never answered). A share of receipts
arrives late (``late_receipt_rate``, ten times the delay) or twice (``duplicate_receipt_rate``); parts are
receipted independently, so receipts arrive out of order.

Messages in: ``SubmitToCarrier`` and ``WithdrawSubmits`` (its POP), ``CarrierEmitDue`` (clock),
``SetCarrierSuspended`` (operator).
Messages out: ``CarrierResponded`` and ``ReceiptsReceived`` to its POP, in batches; ``CarrierStateChanged``
on suspend/resume.

Answers follow the same vocabulary as an SMPP link (:mod:`engine.messages`): a full window is ``throttled``
(0x14), an exhausted throughput budget ``throttled`` (0x58), a suspended carrier ``offline``. It has no send
queue: everything it takes is on the wire at once, exactly like parts an SMPP bind has already written, so a
withdrawal finds nothing left to take back (it is counted, and the parts are answered as usual).

It sees only what a carrier may see (``CarrierSubmitItem``: destination, sender ID, body, opaque ref); it
keeps a count of what it received (``stats()``) for tests and the control port.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from actors.dispatch import DispatchedActor
from engine import messages as m
from engine.config import DELAY_MS, SIMULATED_OUTCOMES, SimulatedCarrierOptions, carrier_options
from engine.errors import InvalidBody
from engine.segments import plan

log = logging.getLogger(__name__)

TIMER_SLACK_S = 0.001
OUTCOMES = SIMULATED_OUTCOMES
#: A lognormal delay draw is at most this many times its median (sigma up to 1.5, what real carriers
#: show, reaches it about once in a thousand draws)
LOGNORMAL_MAX_MEDIANS = 100
_RECEIPT_STATE = {"delivered": "DELIVRD", "undeliverable": "UNDELIV", "expired": "EXPIRED"}


def sample_ms(spec: Any, rng: random.Random) -> float:
    """Draw a delay in ms from ``{distribution = fixed|uniform|lognormal, ...}`` (or a plain number).

    A lognormal draw is capped at ``LOGNORMAL_MAX_MEDIANS`` times its median and at the configured
    maximum delay: uncapped, one draw in a thousand at sigma 3 is ~10,000 medians, and a simulated
    carrier would hold that message for hours (a real carrier's answer or receipt that late is one a
    POP has long given up on)."""
    return delay_sampler(spec)(rng)


def delay_sampler(spec: Any) -> Callable[[random.Random], float]:
    """:func:`sample_ms` with ``spec`` read once: a function of the generator that draws one delay in
    ms. Why: a carrier draws two delays per message, and reading the table (type checks, key lookups)
    for every draw cost more than the draw itself."""
    if spec is None:
        return _constant(0.0)
    if isinstance(spec, int | float):
        return _constant(float(spec))
    kind = spec.get("distribution", "fixed")
    if kind == "fixed":
        return _constant(float(spec.get("ms", 0)))
    if kind == "uniform":
        low, high = float(spec.get("min_ms", 0)), float(spec.get("max_ms", 0))
        return lambda rng: rng.uniform(low, high)
    if kind == "lognormal":
        median = float(spec.get("median_ms", 0))
        if median <= 0:
            return _constant(0.0)
        sigma, cap = float(spec.get("sigma", 0.5)), min(median * LOGNORMAL_MAX_MEDIANS, DELAY_MS.high)
        return lambda rng: min(median * math.exp(rng.gauss(0.0, sigma)), cap)
    raise ValueError(f"unknown distribution {kind!r}")


def _constant(ms: float) -> Callable[[random.Random], float]:
    return lambda _rng: ms


class SimulatedCarrierActor(DispatchedActor):
    stage = "carrier"

    def __init__(self, name: str, options: SimulatedCarrierOptions | dict, pop_ref, clock,
                 seed: int | None = None) -> None:
        super().__init__()
        if isinstance(options, dict):  # validated like a config table (ConfigError names a bad key)
            options = carrier_options("simulated", options, f"carriers.{name}")
        self.name = name
        self.pop_ref = pop_ref
        self.clock = clock
        self.rng = random.Random(seed)
        self.latency = options.latency
        self.receipt_delay = options.receipt_delay
        self._latency_ms = delay_sampler(options.latency)  # read once, drawn per message
        self._receipt_delay_ms = delay_sampler(options.receipt_delay)
        self.window = options.window
        self.throughput = options.throughput
        mix = options.outcomes
        self._outcomes = list(mix)
        self._weights = list(itertools.accumulate(float(mix[k]) for k in self._outcomes))
        self.late_rate = options.late_receipt_rate
        self.duplicate_rate = options.duplicate_receipt_rate
        self.suspended = False
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._wake_at = math.inf
        self._open = 0  # submits answered later (the window)
        self._tokens = self.throughput
        self._last_refill = clock.now()
        self._ids = itertools.count(1)
        self.counts = {k: 0 for k in (*OUTCOMES, "window_full", "submitted", "parts",
                                      "withdraw_requests")}

    def on_receive(self, raw: bytes) -> None:
        msg = m.decode_or_drop(raw, f"carrier {self.name}")
        match msg:
            case None:
                pass  # malformed: logged and dropped
            case m.SubmitToCarrier(items=items):
                self._on_submit(items)
            case m.ExpectReceipts():
                pass  # a simulated carrier's pending receipts do not survive a restart
            case m.WithdrawSubmits(refs=refs):
                self.counts["withdraw_requests"] += len(refs)  # nothing queued: see the docstring
            case m.CarrierEmitDue():
                self._wake_at = math.inf
                self._emit_due()
            case m.SetCarrierSuspended(suspended=suspended):
                self.suspended = suspended
                self.pop_ref.tell(m.encode(m.CarrierStateChanged(
                    self.name, not suspended, "suspended" if suspended else "resumed")))
            case _:
                log.error("carrier %s: unexpected %s", self.name, type(msg).__name__)

    def stats(self) -> dict:
        """For the control port, in the shape every carrier kind has: an in-process link is always
        connected and has no SMPP binds; a suspended one is ``suspended`` and not ``available``."""
        return {"carrier": self.name, "kind": "simulated", "suspended": self.suspended,
                "connected": True, "available": not self.suspended, "binds": [],
                "window": self.window, "window_in_use": self._open, "throughput": self.throughput,
                **self.counts}

    # --- submits -----------------------------------------------------------------------------------

    def _on_submit(self, items: list[m.CarrierSubmitItem]) -> None:
        now = self.clock.now()
        self._refill(now)
        immediate: list[m.CarrierResponseItem] = []
        receipts: list[tuple[str, int, str, str]] = []  # (ref, part, state, error): stamped when sent
        counts = self.counts
        counts["submitted"] += len(items)
        for item in items:
            try:  # the session counted the parts already; count only when it did not say
                parts = item.segments or len(plan(item.body, max_segments=255).parts)
            except InvalidBody:
                immediate.append(m.CarrierResponseItem(item.ref, 0, 1, m.REJECT, "", "0x00000001"))
                continue
            counts["parts"] += parts
            refusal = self._refusal()
            if refusal:
                outcome, error = refusal
                immediate.extend(m.CarrierResponseItem(item.ref, p, parts, outcome, "", error)
                                 for p in range(parts))
                continue
            outcome = self._draw()
            counts[outcome] += 1
            if outcome == "no_answer":
                continue
            self._answer(item.ref, parts, outcome, now, immediate, receipts)
        self._send(immediate, receipts)
        self._arm()

    def _refusal(self) -> tuple[str, str] | None:
        if self.suspended:
            return m.OFFLINE, "suspended"
        if self._open >= self.window:
            self.counts["window_full"] += 1
            return m.THROTTLED, "0x00000014"  # ESME_RMSGQFUL
        if self.throughput:
            if self._tokens < 1:
                self.counts["throttled"] += 1
                return m.THROTTLED, "0x00000058"  # ESME_RTHROTTLED
            self._tokens -= 1
        return None

    def _answer(self, ref, parts, outcome, now, immediate, receipts) -> None:
        delay = self._latency_ms(self.rng) / 1000.0
        if outcome == "throttled":
            answers = [m.CarrierResponseItem(ref, p, parts, m.THROTTLED, "", "0x00000058")
                       for p in range(parts)]
        elif outcome == "rejected":
            answers = [m.CarrierResponseItem(ref, p, parts, m.REJECT, "", "0x0000000B")
                       for p in range(parts)]
        else:
            answers = [m.CarrierResponseItem(ref, p, parts, m.OK, f"{next(self._ids):x}", "")
                       for p in range(parts)]
            state = _RECEIPT_STATE.get(outcome, "DELIVRD")
            for p in range(parts):
                self._schedule_receipt(ref, p, state, now, now + delay, receipts)
        if delay <= 0:
            immediate.extend(answers)
        else:
            self._open += 1
            self._push(now + delay, "resp", answers)

    def _schedule_receipt(self, ref, part, state, now, acked_at, receipts) -> None:
        """A receipt for one part, due ``acked_at`` plus a drawn delay: into ``receipts`` (sent with
        this batch) if it is due already (``now`` was read before it), else onto the timed heap."""
        rng = self.rng
        delay = self._receipt_delay_ms(rng) / 1000.0
        if rng.random() < self.late_rate:  # ten times late, but never past the maximum delay
            delay = min(delay * 10 + 1.0, DELAY_MS.high / 1000.0)
        copies = 2 if rng.random() < self.duplicate_rate else 1
        err = "" if state == "DELIVRD" else "001"  # as an SMPP carrier reads err:000: no error
        item = (ref, part, state, err)
        due = acked_at + delay
        for _ in range(copies):
            if due <= now or due <= self.clock.now():
                receipts.append(item)
            else:
                self._push(due, "receipt", item)

    def _draw(self) -> str:
        x = self.rng.random() * self._weights[-1]
        for name, edge in zip(self._outcomes, self._weights, strict=True):
            if x < edge:
                return name
        return self._outcomes[-1]

    def _refill(self, now: float) -> None:
        if self.throughput:
            self._tokens = min(self.throughput, self._tokens + (now - self._last_refill) * self.throughput)
        self._last_refill = now

    # --- timed emission ----------------------------------------------------------------------------

    def _push(self, due: float, kind: str, payload: Any) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), kind, payload))

    def _arm(self) -> None:
        # Wake-ups are rounded up to TIMER_SLACK_S, so answers due close together leave in one batch
        # (one clock entry and one tell for many messages) at the cost of at most that much delay.
        if not self._heap:
            return
        due = math.ceil(self._heap[0][0] / TIMER_SLACK_S) * TIMER_SLACK_S
        if due < self._wake_at:
            self._wake_at = due
            self.clock.schedule(self._wake_at - self.clock.now(), self.actor_ref,
                                m.encode(m.CarrierEmitDue(self._wake_at)))

    def _emit_due(self) -> None:
        now = self.clock.now()
        responses: list[m.CarrierResponseItem] = []
        receipts: list[m.ReceiptItem] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, kind, payload = heapq.heappop(self._heap)
            if kind == "resp":
                self._open -= 1
                responses.extend(payload)
            else:
                receipts.append(payload)
        self._send(responses, receipts)
        self._arm()

    def _send(self, responses: list, receipts: list) -> None:
        if responses:
            self.pop_ref.tell(m.encode(m.CarrierResponded(self.name, responses)))
        if receipts:  # stamped as they leave (a receipt's ``at`` is when it reached us)
            at, item = time.time(), m.ReceiptItem
            self.pop_ref.tell(m.encode(m.ReceiptsReceived(
                self.name, [item(ref, part, state, err, at) for ref, part, state, err in receipts])))
