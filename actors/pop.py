"""PopActor: one per POP (fra, sin, gru); owns each of its messages from acceptance to final status.

Messages in: ``AcceptMessages`` (sessions), ``CarrierResponded`` / ``ReceiptsReceived`` /
``CarrierStateChanged`` (carriers), ``RetryDue`` / ``Tick`` (clock), ``Flush`` (itself).
Messages out: ``SubmitsAccepted`` / ``SubmitRejected`` (bridge), ``DebitMessages`` (ledger),
``SubmitToCarrier`` (carriers), ``StatusesChanged`` (sessions), ``BalanceChanged`` (refunds on store failure).

Group commit: every change (new messages, record updates, body discards) is collected and written by the next
``Flush`` in ONE fsynced LMDB transaction; only after that commit are customers acknowledged, debits sent and
status events emitted. So an acknowledged message always survives ``kill -9``.

Delivery semantics (documented choices):

* The body is discarded (from memory and the store) when the carrier has acknowledged every part.
* A retryable carrier answer (``retry``) fails over to the next candidate after a backoff with full jitter.
  ``throttled`` (SMPP 0x58) puts that carrier in a short, growing cool-down during which other candidates
  are preferred; throttled attempts do not use up ``max_attempts`` (only the retry window bounds them), so
  a burst is slowed down, not failed. Retries stop after ``max_attempts`` or ``retry_window_seconds``.
* A retryable failure of any part retries the whole message, under a new concatenation reference. Parts the
  carrier had already accepted in the abandoned attempt may still reach the handset as an incomplete
  fragment: we prefer that to failing a message the carrier could deliver. A permanent rejection of a part
  is final for that part.
* Backoff grows with every retry of a message, including retries while no carrier is available, so a
  carrier outage does not turn into a retry storm.
* A submit with no answer within ``resp_timeout_seconds`` is retried. This is the one ambiguous case: the
  carrier may have accepted it and lost only its answer, so the recipient may get the message twice. We
  prefer a rare duplicate to a silent loss.
* No receipt within validity + grace: ``expired``.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import time
from collections import deque

import lmdb
import pykka

from actors.dispatch import DispatchedActor
from engine import messages as m
from engine.errors import StorageError, StoreFull
from engine.status import (
    ACCEPTED,
    DELIVERED,
    EXPIRED,
    FAILED,
    REJECTED,
    MessageState,
    status_from_smpp_state,
)
from storage.records import MessageRecord

log = logging.getLogger(__name__)


class InFlight:
    """What a POP holds in memory for a message that is not final yet."""

    __slots__ = ("record", "body", "state", "candidates", "cand_index", "ref", "carrier",
                 "acked", "answered", "attempt_open", "sent_at", "retries", "throttles",
                 "carrier_ids")

    def __init__(self, record: MessageRecord, body: str | None) -> None:
        self.record = record
        self.body = body
        self.state = MessageState(max(1, record.segments))
        self.candidates: tuple = ()
        self.cand_index = 0
        self.ref = ""
        self.carrier = record.carrier
        self.acked: set[int] = set()
        self.answered: set[int] = set()
        self.attempt_open = False
        self.sent_at = 0.0
        self.retries = 0  # backoff exponent: grows with every retry, sent or not
        self.throttles = 0  # attempts a carrier throttled: they do not use up max_attempts
        self.carrier_ids: dict[int, str] = {}  # part -> the carrier's message id (this attempt)


class PopActor(DispatchedActor):
    stage = "pop"

    def __init__(self, name: str, settings, directory, store, clock, bridge) -> None:
        super().__init__()
        self.name = name
        self.limits = settings.engine
        self.settings = settings
        self.directory = directory
        self.env, self.records, self.bodies = store.env, store.records, store.bodies
        self.clock = clock
        self.bridge = bridge
        self.rng = random.Random()
        self.inflight: dict[str, InFlight] = {}
        self.refs: dict[str, str] = {}  # carrier ref -> message id
        self._ref_prefix = os.urandom(3).hex()
        self._ref_seq = 0
        self._accepts: list[m.AcceptItem] = []
        self._dirty: dict[str, MessageRecord] = {}
        self._discards: list[str] = []
        self._events: list[m.StatusItem] = []
        self._acks: list[tuple[str, float]] = []  # carrier acknowledgements not yet told to the host
        self._expected: dict[str, list[m.ExpectedReceiptItem]] = {}  # recovered, for their carriers
        self._outbox: dict[str, list[m.CarrierSubmitItem]] = {}
        self._outstanding: dict[str, int] = {}
        self._waiting: dict[str, deque[str]] = {}
        self._unavailable: set[str] = set()
        self._cooldown: dict[str, float] = {}  # carrier -> clock time until which it is avoided
        self._throttle_streak: dict[str, int] = {}
        self._deadlines: list[tuple[float, str]] = []  # (expiry deadline, message id)
        self._timeouts: list[tuple[float, str, str]] = []  # (resp deadline, message id, ref)
        self._flush_scheduled = False
        self.counters = {"accepted": 0, "retries": 0, "failovers": 0, "resp_timeouts": 0,
                         "store_failures": 0, DELIVERED: 0, REJECTED: 0, FAILED: 0, EXPIRED: 0}

    # --- lifecycle ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._recover()

    def on_stop(self) -> None:
        self._flush()

    def on_receive(self, raw: bytes):
        msg = m.decode_or_drop(raw, f"pop {self.name}")
        match msg:
            case None:
                pass  # malformed: logged and dropped
            case m.AcceptMessages(items=items):
                self._accepts.extend(items)
                self._schedule_flush()
            case m.Flush():
                self._flush()
            case m.CarrierResponded(carrier=carrier, items=items):
                self._on_carrier_responded(carrier, items)
            case m.ReceiptsReceived(items=items):
                self._on_receipts_received(items)
            case m.CarrierStateChanged(carrier=carrier, available=available):
                self._on_carrier_state_changed(carrier, available)
            case m.RetryDue(message_id=mid):
                f = self.inflight.get(mid)
                if f is not None and not f.attempt_open and f.body is not None:
                    self._route(f)
            case m.Tick(now=now):
                self._on_tick(now)
            case m.ForgetAccount(account_id=account_id):
                return self._on_forget_account(account_id)
            case _:
                log.error("pop %s: unexpected %s", self.name, type(msg).__name__)
        self._send_outbox()
        return None

    def stats(self) -> dict:
        return {"pop": self.name, "in_flight": len(self.inflight), "outstanding": dict(self._outstanding),
                "waiting": {c: len(q) for c, q in self._waiting.items()},
                "unavailable": sorted(self._unavailable),
                "timers": len(self._deadlines) + len(self._timeouts), **self.counters}

    # --- accept and commit -------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.actor_ref.tell(m.encode(m.Flush()))

    def _flush(self) -> None:
        self._flush_scheduled = False
        accepts, self._accepts = self._accepts, []
        new = [self._admit(item) for item in accepts]
        if not new and not self._dirty and not self._discards:
            return
        dirty, discards = self._dirty, self._discards
        self._dirty, self._discards = {}, []
        now = time.time()
        ttl = self.limits.body_ttl_seconds
        try:
            with self.env.begin(write=True) as txn:
                self.records.put_many(txn, [f.record for f, _ in new] + list(dirty.values()))
                self.bodies.put_many(txn, [(f.record.message_id, f.body, self._body_expiry(f, now, ttl),
                                            f.record.account_id) for f, _ in new])
                if discards:
                    self.bodies.discard_many(txn, discards)
        except (lmdb.Error, StorageError) as exc:
            self._on_store_failure(exc, new, dirty, discards)
            return
        self._after_commit(new)

    def _body_expiry(self, f: InFlight, now: float, ttl: float) -> float:
        """A body is never needed past its message's validity (nor kept past the 24 h ceiling)."""
        rec = f.record
        return min(now + ttl, rec.submitted_at + rec.validity_seconds + self.limits.expiry_grace_seconds)

    def _admit(self, item: m.AcceptItem) -> tuple[InFlight, m.AcceptItem]:
        rec = MessageRecord(
            item.message_id, item.account_id, item.to, item.sender, item.country, self.name, "",
            item.encoding, item.segments, item.price_micro_usd, item.submitted_at, item.submitted_at,
            ACCEPTED, "", item.validity_seconds, item.callback_url, 0, 0.0)
        return InFlight(rec, item.body), item

    def _after_commit(self, new: list[tuple[InFlight, m.AcceptItem]]) -> None:
        debits, answers = [], []
        for f, item in new:
            rec = f.record
            self.inflight[rec.message_id] = f
            answers.append(m.AcceptedItem(item.request_id, rec.message_id, rec.segments,
                                          rec.price_micro_usd, self.name, rec.encoding,
                                          rec.country))
            debits.append(m.DebitItem(rec.message_id, rec.account_id, rec.price_micro_usd,
                                      rec.submitted_at))
            self._event(f, ACCEPTED, "")
            deadline = rec.submitted_at + rec.validity_seconds + self.limits.expiry_grace_seconds
            heapq.heappush(self._deadlines, (deadline, rec.message_id))
            self._route(f)
        if answers:
            self.bridge.tell(m.encode(m.SubmitsAccepted(answers)))
        if debits:
            self.counters["accepted"] += len(debits)
            self.directory.ledger.tell(m.encode(m.DebitMessages(debits)))
        self._emit_events()

    def _on_store_failure(self, exc, new, dirty, discards) -> None:
        self.counters["store_failures"] += 1
        err = StoreFull("message store is full") if isinstance(exc, lmdb.MapFullError) else exc
        if not isinstance(err, StorageError):
            err = StorageError(f"message store write failed: {type(exc).__name__}")
        log.error("pop %s: ALARM store write failed (%s): %d new messages refused",
                  self.name, err.code, len(new))
        for _, item in new:
            self.bridge.tell(m.encode(m.SubmitRejected(item.request_id, err.code, err.message)))
            target = self.directory.sessions.get(item.account_id)
            if target is not None:
                target.tell(m.encode(m.BalanceChanged(item.account_id, item.price_micro_usd)))
        dirty.update(self._dirty)  # keep updates for the next attempt; nothing accepted is dropped
        self._dirty = dirty
        self._discards = discards + self._discards

    # --- routing -----------------------------------------------------------------------------------

    def _route(self, f: InFlight) -> None:
        """Send ``f`` to its next available carrier, or schedule a retry / give up."""
        rec = f.record
        if not f.candidates:
            try:
                f.candidates = self.directory.routing.candidates_at(self.name, rec.to, rec.country)
            except Exception as exc:  # the routing table changed under us and no longer serves it
                self._finish(f, FAILED, getattr(exc, "message", "no route"))
                return
        carrier = self._next_available(f)
        if carrier is None:
            self._retry_later(f, "no carrier available")
            return
        if self._outstanding.get(carrier, 0) >= self._window(carrier):
            self._waiting.setdefault(carrier, deque()).append(rec.message_id)
            f.carrier = carrier
            f.attempt_open = True  # queued counts as an open attempt (not retried meanwhile)
            f.ref = ""
            return
        self._send(f, carrier)

    def _next_available(self, f: InFlight) -> str | None:
        """The first usable candidate from the current one on, preferring carriers not cooling down
        after a throttle; None if none is usable (the message then waits for a retry)."""
        n = len(f.candidates)
        now = self.clock.now()
        fallback = None
        for i in range(n):
            index = (f.cand_index + i) % n
            cand = f.candidates[index].carrier
            if cand in self._unavailable or cand not in self.directory.carriers:
                continue
            if self._cooldown.get(cand, 0.0) <= now:
                f.cand_index = index
                return cand
            if fallback is None:
                fallback = index
        if fallback is not None and f.retries and f.retries % 4 == 0:
            f.cand_index = fallback  # every carrier is cooling down: probe one now and then
            return f.candidates[fallback].carrier
        return None

    def _throttled(self, carrier: str) -> None:
        """A carrier said "slow down" (SMPP 0x58): route around it for a while, longer each time."""
        streak = self._throttle_streak.get(carrier, 0) + 1
        self._throttle_streak[carrier] = streak
        pause = min(1.0, 0.02 * 2 ** min(streak, 10))
        self._cooldown[carrier] = self.clock.now() + pause

    def _window(self, carrier: str) -> int:
        opts = self.settings.carriers[carrier].options
        return opts.window * getattr(opts, "binds", 1)  # SMPP: a window per bind

    def _new_ref(self) -> str:
        self._ref_seq += 1
        return f"{self._ref_prefix}{self._ref_seq:x}"

    def _send(self, f: InFlight, carrier: str) -> None:
        ref = self._new_ref()
        f.carrier_ids.clear()
        if f.ref:
            self.refs.pop(f.ref, None)
        f.ref, f.carrier = ref, carrier
        f.acked.clear()
        f.answered.clear()
        f.attempt_open = True
        f.sent_at = self.clock.now()
        rec = f.record
        f.record = rec._replace(carrier=carrier, attempts=rec.attempts + 1)
        self.refs[ref] = rec.message_id
        self._outstanding[carrier] = self._outstanding.get(carrier, 0) + 1
        self._outbox.setdefault(carrier, []).append(
            m.CarrierSubmitItem(ref=ref, to=rec.to, sender=rec.sender, body=f.body))
        heapq.heappush(self._timeouts,
                       (f.sent_at + self.limits.resp_timeout_seconds, rec.message_id, ref))

    def _send_outbox(self) -> None:
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, {}
        for carrier, items in outbox.items():
            ref = self.directory.carriers.get(carrier)
            if ref is None:
                continue
            try:
                ref.tell(m.encode(m.SubmitToCarrier(items)))
            except pykka.ActorDeadError:  # engine shutdown: the messages are durable and resume
                log.info("pop %s: carrier %s stopped; %d submits left for the next start",
                         self.name, carrier, len(items))

    def _close_attempt(self, f: InFlight) -> None:
        """The current attempt is over (answered, timed out or abandoned): free its window slot."""
        if not f.attempt_open:
            return
        f.attempt_open = False
        carrier = f.carrier
        if f.ref:
            self._outstanding[carrier] = max(0, self._outstanding.get(carrier, 0) - 1)
        self._drain_waiting(carrier)

    def _drain_waiting(self, carrier: str) -> None:
        queue = self._waiting.get(carrier)
        while queue and self._outstanding.get(carrier, 0) < self._window(carrier):
            f = self.inflight.get(queue.popleft())
            if f is not None and f.attempt_open and not f.ref and f.body is not None:
                if carrier in self._unavailable:
                    f.attempt_open = False
                    self._route(f)
                else:
                    self._send(f, carrier)

    def _retry_later(self, f: InFlight, reason: str, *, failover: bool = False) -> None:
        rec = f.record
        now = time.time()
        if rec.attempts - f.throttles >= self.limits.max_attempts or \
                now - rec.submitted_at > self.limits.retry_window_seconds:
            self._finish(f, FAILED, f"retries exhausted: {reason}")
            return
        if failover and len(f.candidates) > 1:
            f.cand_index = (f.cand_index + 1) % len(f.candidates)
            self.counters["failovers"] += 1
        self.counters["retries"] += 1
        f.retries += 1
        cap = min(self.limits.retry_cap_ms, self.limits.retry_base_ms * 2 ** min(f.retries, 30))
        self.clock.schedule(self.rng.uniform(0, cap) / 1000.0, self.actor_ref,
                            m.encode(m.RetryDue(rec.message_id)))

    # --- carrier answers ---------------------------------------------------------------------------

    def _on_carrier_responded(self, carrier: str, items: list[m.CarrierResponseItem]) -> None:
        for it in items:
            f = self.inflight.get(self.refs.get(it.ref, ""))
            if f is None or f.ref != it.ref or not f.attempt_open:
                continue  # a stale attempt, or a message already final
            if not f.answered:  # the first answer of an attempt tells how the carrier split it
                f.state.resize(it.parts)
            f.answered.add(it.part)
            if it.outcome == "ok":
                f.acked.add(it.part)
                f.carrier_ids[it.part] = it.carrier_message_id
                self._throttle_streak.pop(carrier, None)
            elif it.outcome == "reject":
                f.state.apply(it.part, REJECTED)
            else:  # retryable: the whole message goes again (see the module docstring)
                self._close_attempt(f)
                self.refs.pop(it.ref, None)  # late answers and receipts of this attempt are stale
                f.state = MessageState(len(f.state.parts))
                if it.outcome == "throttled":  # bounded by the retry window, not by max_attempts
                    f.throttles += 1
                    self._throttled(carrier)
                self._retry_later(f, it.error or it.outcome, failover=it.outcome == "retry")
                continue
            if len(f.answered) >= len(f.state.parts):
                self._attempt_answered(f, it.error)
        self._emit_events()

    def _attempt_answered(self, f: InFlight, error: str) -> None:
        self._close_attempt(f)
        if f.acked and f.body is not None:
            now = time.time()
            ids = tuple(f.carrier_ids.get(part, "") for part in range(len(f.state.parts)))
            f.record = f.record._replace(carrier_acked_at=now, carrier_ids=ids)
            f.body = None
            self._discards.append(f.record.message_id)
            self._acks.append((f.record.message_id, now))  # told after the commit that records it
        if f.state.final:
            self._finish(f, f.state.status, error)
        else:
            self._mark_dirty(f)

    def _on_receipts_received(self, items: list[m.ReceiptItem]) -> None:
        for it in items:
            f = self.inflight.get(self.refs.get(it.ref, ""))
            if f is None:
                continue  # late or duplicate receipt for a final message: harmless
            status = status_from_smpp_state(it.state)
            if status != ACCEPTED and f.state.apply(it.part, status) and f.state.final:
                self._finish(f, f.state.status, it.error)
        self._emit_events()

    def _on_carrier_state_changed(self, carrier: str, available: bool) -> None:
        if available:
            self._unavailable.discard(carrier)
            self._drain_waiting(carrier)
        else:
            self._unavailable.add(carrier)

    # --- erasure ------------------------------------------------------------------------------------

    def _on_forget_account(self, account_id: str) -> int:
        """Erasure: end the account's in-flight messages, drop their bodies, delete all its records."""
        self._flush()  # what the session handed over is committed (and billed) first
        for f in [f for f in self.inflight.values() if f.record.account_id == account_id]:
            self._finish(f, FAILED, "account erased")
        self._dirty = {mid: r for mid, r in self._dirty.items() if r.account_id != account_id}
        self._outbox = {c: [i for i in items if i.ref in self.refs]  # nothing of it goes out now
                        for c, items in self._outbox.items()}
        self._flush()
        self._emit_events()
        ids = [r.message_id for r in self.records.for_account(account_id)]
        return self.records.delete_many(ids)

    # --- time --------------------------------------------------------------------------------------

    def _on_tick(self, _now: float) -> None:
        if self._dirty or self._discards:  # a failed commit is retried on the next tick
            self._schedule_flush()
        self._compact_timers()
        if self._expected:
            self._send_expected()
        wall, mono = time.time(), self.clock.now()
        while self._timeouts and self._timeouts[0][0] <= mono:
            _, mid, ref = heapq.heappop(self._timeouts)
            f = self.inflight.get(mid)
            if f is not None and f.ref == ref and f.attempt_open \
                    and len(f.answered) < len(f.state.parts):  # some part still unanswered
                self.counters["resp_timeouts"] += 1
                self._close_attempt(f)
                self.refs.pop(ref, None)
                self._retry_later(f, "resp_timeout", failover=True)
        while self._deadlines and self._deadlines[0][0] <= wall:
            _, mid = heapq.heappop(self._deadlines)
            f = self.inflight.get(mid)
            if f is not None:
                self._finish(f, EXPIRED, "no final receipt within validity")
        self._emit_events()

    def _compact_timers(self) -> None:
        """Drop the timer entries of messages already final, so the heaps stay proportional to what is
        in flight (a deadline entry would otherwise live for the whole validity, up to 24 h)."""
        live = self.inflight
        if not live:  # nothing in flight: every entry left is stale (the slack below may keep ~1k)
            self._deadlines.clear()
            self._timeouts.clear()
            return
        if len(self._deadlines) > 2 * len(live) + 1024:
            self._deadlines = [e for e in self._deadlines if e[1] in live]
            heapq.heapify(self._deadlines)
        if len(self._timeouts) > 2 * len(live) + 1024:
            self._timeouts = [e for e in self._timeouts if e[1] in live]
            heapq.heapify(self._timeouts)

    # --- status ------------------------------------------------------------------------------------

    def _finish(self, f: InFlight, status: str, error: str) -> None:
        if not f.state.final:
            f.state.finish(status)
        rec = f.record
        self._close_attempt(f)
        self.inflight.pop(rec.message_id, None)
        self.refs.pop(f.ref, None)
        if f.body is not None:
            f.body = None
            self._discards.append(rec.message_id)
        self.counters[f.state.status] = self.counters.get(f.state.status, 0) + 1
        self._event(f, f.state.status, error)
        self._mark_dirty(f, status=f.state.status, error=error[:200])

    def _mark_dirty(self, f: InFlight, **changes) -> None:
        """Record ``changes`` (and the time) on the message; the next group commit writes it."""
        f.record = f.record._replace(updated_at=time.time(), **changes)
        self._dirty[f.record.message_id] = f.record
        self._schedule_flush()

    def _event(self, f: InFlight, status: str, error: str) -> None:
        r = f.record
        self._events.append(m.StatusItem(r.message_id, r.account_id, status, time.time(), self.name,
                                         f.carrier, r.country, r.segments, r.price_micro_usd,
                                         error[:200], r.callback_url))

    def _emit_events(self) -> None:
        if self._dirty:
            return  # a status change is emitted only after the commit that makes it durable
        if self._acks:
            acks, self._acks = self._acks, []
            for message_id, at in acks:
                self.bridge.carrier_acked(message_id, at)
        if not self._events:
            return
        events, self._events = self._events, []
        by_account: dict[str, list[m.StatusItem]] = {}
        for e in events:
            by_account.setdefault(e.account_id, []).append(e)
        for account_id, items in by_account.items():
            raw = m.encode(m.StatusesChanged(items))
            try:
                self.directory.session_or_bridge(account_id).tell(raw)
            except pykka.ActorDeadError:  # the session stopped first (engine shutdown)
                self.bridge.tell(raw)

    def _expect_receipts(self, f: InFlight) -> None:
        """A message the carrier acknowledged before the restart: a new ref, and ask its carrier (on
        the first tick, once carriers run) to match receipts for its message ids to that ref."""
        rec = f.record
        f.ref, f.carrier = self._new_ref(), rec.carrier
        f.state = MessageState(max(1, len(rec.carrier_ids)))
        self.refs[f.ref] = rec.message_id
        self._expected.setdefault(rec.carrier, []).extend(
            m.ExpectedReceiptItem(cid, f.ref, part) for part, cid in enumerate(rec.carrier_ids) if cid)

    def _send_expected(self) -> None:
        for carrier in list(self._expected):
            ref = self.directory.carriers.get(carrier)
            if ref is not None:
                ref.tell(m.encode(m.ExpectReceipts(self._expected.pop(carrier))))

    def _on_corrupt_record(self, message_id: str, exc: Exception) -> None:
        self.counters["store_failures"] += 1
        log.error("pop %s: ALARM message record %s does not decode (%s); skipped", self.name,
                  message_id, type(exc).__name__)

    # --- recovery ----------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Resume every message that was accepted but not final when the engine last stopped."""
        resumed = 0
        open_records = list(self.records.open_records(on_corrupt=self._on_corrupt_record))
        self.bridge.gate.force_acquire(len(open_records))
        for rec in open_records:
            f = InFlight(rec, None)
            self.inflight[rec.message_id] = f
            deadline = rec.submitted_at + rec.validity_seconds + self.limits.expiry_grace_seconds
            heapq.heappush(self._deadlines, (deadline, rec.message_id))
            if not rec.carrier_acked_at:
                try:
                    f.body = self.bodies.get(rec.message_id)
                except StorageError as exc:  # one unreadable body must not stop the POP
                    self.counters["store_failures"] += 1
                    log.error("pop %s: ALARM body of %s unreadable (%s)", self.name,
                              rec.message_id, exc.code)
                    self._finish(f, FAILED, f"body unreadable: {exc.code}")
                    continue
                if f.body is None:
                    self._finish(f, FAILED, "body no longer stored")
                    continue
                self.actor_ref.tell(m.encode(m.RetryDue(rec.message_id)))
            elif any(rec.carrier_ids):
                self._expect_receipts(f)
            resumed += 1
        if open_records:
            log.info("pop %s: resumed %d open messages", self.name, resumed)
        self._emit_events()
