"""PopActor: one per POP (fra, sin, gru); owns each of its messages from acceptance to final status.

Messages in: ``AcceptMessages`` (sessions), ``CarrierResponded`` / ``ReceiptsReceived`` /
``CarrierStateChanged`` (carriers), ``RefundsRecorded`` / ``DebitsRecorded`` (ledger), ``RetryDue`` /
``Tick`` (clock), ``Flush`` (itself), ``ForgetAccount`` (erasure, asked), ``WebhookPrefs`` (sessions),
``WebhookSettingsChanged`` / ``WebhookEventsDone`` / ``WebhookEventsRetrying`` (the host's webhook feed),
``GroupCommitted`` (the committer, when the POPs of the process share an environment).
Messages out: ``SubmitsAccepted`` / ``SubmitRejected`` / ``CarriersAcked`` / ``MessagesResumed`` (bridge),
``DebitMessages`` / ``RefundMessages``
(ledger), ``SubmitToCarrier`` / ``WithdrawSubmits`` / ``ExpectReceipts`` / ``ReceiptsStored`` (carriers),
``StatusesChanged``
(sessions), ``BalanceChanged`` (a refused submit's reservation, back to its session),
``WebhookEventsStored`` (bridge).

The actor receives, commits and sends. What it decides comes from :mod:`engine.delivery` (admission at the
door, then the dispatcher with the attempt state machine, retry policy, carrier board and timers - each
module's docstring holds its rules); what it writes goes through :class:`storage.pop_commit.PopCommit`.

Group commit: every change is collected and written by the next ``Flush`` in ONE fsynced LMDB transaction
(shared with the other POPs of the process when they share an environment: ``actors.group_commit``);
only after that commit are customers acknowledged, debits and refunds sent and status events emitted. So an
acknowledged message survives ``kill -9``, and so does the refund of a message that ended without any
carrier acknowledgement (it is owed in the same transaction as the final record). Likewise a carrier is told
that a receipt is stored (and the SMSC answered 0) only after the commit that follows it; a commit that
fails has its receipts refused, for the SMSC to deliver again (``engine.delivery.receipt_answers``).

While commits fail (a full disk), the POP starts no carrier attempt (``engine.delivery.attempt_hold``): a
carrier's acknowledgement - its message id - that cannot be stored is lost if the engine stops before space
returns, and the message is sent again after the restart. The next commit that succeeds - the tick retries
the failed one; with nothing to retry, a status-sized probe write (``storage.space_watch``) - resumes them.
"""

from __future__ import annotations

import logging
import random
import time

import pykka

from actors.dispatch import DispatchedActor
from actors.group_commit import commit_alone
from engine import messages as m
from engine.delivery.admission import Admission
from engine.delivery.attempt import ACKED, Delivery
from engine.delivery.attempt_hold import AttemptHold
from engine.delivery.carriers import CarrierBoard
from engine.delivery.dispatcher import Dispatcher
from engine.delivery.outbox import Outbox
from engine.delivery.owed import OwedToLedger
from engine.delivery.receipt_answers import ReceiptAnswers, merge, tell_carriers
from engine.delivery.retry import RetryPolicy
from engine.delivery.timers import Timers
from engine.errors import CarriersSaturated, SmsrouteError, StorageError, StoreFull
from engine.routing import order_candidates
from engine.status import ACCEPTED, DELIVERED, EXPIRED, FAILED, REJECTED, status_from_smpp_state
from engine.webhook_events import WebhookEvents, outbox_share
from storage.pop_commit import PopCommit, StagedBatch, as_storage_error
from storage.records import LiveRecord
from storage.space_watch import SpaceWatch

log = logging.getLogger(__name__)


class PopActor(DispatchedActor):
    stage = "pop"

    def __init__(self, name: str, settings, directory, store, clock, bridge,
                 address: str = "", webhook_prefs=None, group=None, workers: int = 1) -> None:
        super().__init__()
        self.group = group  # actors.group_commit.GroupCommit: the process's POPs commit together
        self._staged: list[StagedBatch] = []  # flushed, waiting for the group's round
        self._committed: list[tuple[list[StagedBatch], BaseException | None]] = []  # written, to answer
        self.name = name
        self.address = address or name  # what the ledger answers to (``<node>/<pop>`` in a cluster)
        self.limits = limits = settings.engine
        self.directory = directory
        self.records, self.bodies, self.store = store.records, store.bodies, store
        self.clock = clock
        self.bridge = bridge
        self.rng = random.Random()
        self.commit = PopCommit(store, limits.body_ttl_seconds, limits.expiry_grace_seconds)
        bodies = getattr(store, "bodies", None)
        self.space = SpaceWatch(name, store.env, directory.full_stores,  # full: not ready
                                bodies.can_seal if bodies is not None else None)
        self.hooks = self.commit.hooks = WebhookEvents(getattr(store, "webhooks", None), webhook_prefs,
                                                       outbox_share(settings, workers))
        board = CarrierBoard({n: c for n, c in settings.carriers.items() if c.pop == name},
                             limits.resp_timeout_seconds)
        self.admission = Admission(limits.admission_horizon_seconds, board)
        self.timers = Timers()
        self.outbox = Outbox()
        self.dispatcher = Dispatcher(self, board, RetryPolicy(limits, self.rng), self.admission,
                                     self.timers, self.outbox, clock.now, directory.carriers, self.rng)
        self.inflight = self.dispatcher.inflight
        self.owed = OwedToLedger()  # debit batches and refunds told to the ledger, not yet answered
        self._accepts: list[m.AcceptItem] = []
        self._events: list[m.StatusItem] = []
        self._acks: list[m.CarrierAckItem] = []  # carrier acknowledgements not yet told to the host
        self.receipt_answers = ReceiptAnswers()  # receipts answered after the next commit
        self._expected: dict[str, list[m.ExpectedReceiptItem]] = {}  # recovered, for their carriers
        self._flush_scheduled = False
        self.counters = {"accepted": 0, "refused_saturated": 0, "refunds": 0, "store_failures": 0,
                         "webhook_events_stored": 0, "commits": 0, "attempt_hold_starts": 0,
                         DELIVERED: 0, REJECTED: 0, FAILED: 0, EXPIRED: 0}
        self.attempt_hold = AttemptHold(name, self.dispatcher, self.space, clock.now, self.counters)

    # --- lifecycle ---------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._recover()

    def on_stop(self) -> None:
        self._flush_sync()
        self._emit_events()
        self.space.stopped()

    def on_receive(self, raw: bytes):
        msg = m.decode_or_drop(raw, f"pop {self.name}")
        d = self.dispatcher
        match msg:
            case None:
                pass  # malformed: logged and dropped
            case m.AcceptMessages(items=items):
                self._accepts.extend(items)
                self._schedule_flush()
            case m.Flush():
                self._flush()
            case m.GroupCommitted():
                self._on_committed()
            case m.CarrierResponded(items=items):
                d.answered(items)
            case m.ReceiptsReceived(carrier=carrier, items=items):
                d.receipted(items, status_from_smpp_state)
                self.receipt_answers.add(carrier, items)
                self._schedule_flush()  # answered after the commit of what they changed
            case m.CarrierStateChanged(carrier=carrier, available=available, reason=reason):
                d.carrier_state_changed(carrier, available, reason)
            case m.RefundsRecorded(message_ids=ids):
                self.owed.refunds_recorded(ids)
                self.commit.refunded.extend(ids)
                self._schedule_flush()
            case m.DebitsRecorded(batches=batches):
                self.commit.debited.extend(self.owed.debits_recorded(batches))
                self._schedule_flush()
            case m.RetryDue(message_id=mid):
                d.retry_due(mid)
            case m.Tick(now=now):
                self._on_tick(now)
            case m.ForgetAccount(account_id=account_id):
                return self._on_forget_account(account_id)
            case m.WebhookSettingsChanged(account_id=account_id):
                self.hooks.forget(account_id)
            case m.WebhookPrefs():
                self.hooks.learn(msg)
            case m.WebhookEventsDone(seqs=seqs):
                self.hooks.done.extend(seqs)
                self._schedule_flush()
            case m.WebhookEventsRetrying(seqs=seqs, attempt=attempt, next_at=next_at):
                self.hooks.retrying.append((seqs, attempt, next_at))
                self._schedule_flush()
            case _:
                log.error("pop %s: unexpected %s", self.name, type(msg).__name__)
        self._emit_events()
        self._send_outbox()
        return None

    def stats(self) -> dict:
        d = self.dispatcher
        links = d.board.links.values()
        return {"pop": self.name, "in_flight": len(self.inflight),
                "outstanding": {c.name: c.outstanding for c in links},
                "waiting": {c.name: len(c.waiting) for c in links},
                "unavailable": sorted(c.name for c in links if not c.available),
                "pace": {c.name: round(c.rate, 1) for c in links},
                "parked": len(d.parked), "attempts_held": len(d.held), "backlog": dict(self.admission.backlog),
                "timers": len(self.timers), "webhook_outbox": self.hooks.count,
                "webhooks_dropped": self.hooks.dropped, "store_full": int(self.space.full),
                **self.counters, **d.counters}

    # --- accept and commit -------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.actor_ref.tell(m.encode(m.Flush()))

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._committed:  # a failed batch's changes are pending again before the next is staged,
            self._on_committed()  # so a batch that commits holds everything changed before it
        accepts, self._accepts = self._accepts, []
        new = self._admit_all(accepts)
        receipts = self.receipt_answers.take()
        if not new and not self.commit:
            if self._staged:  # durable once what is staged is
                merge(self._staged[-1].receipts, receipts)
            elif receipts:  # everything changed before them is durable
                tell_carriers(self.directory.carriers, receipts, True)
            return
        accepted = [self._status_item(f, ACCEPTED, "") for f, _ in new]  # their webhooks: same commit
        batch = self.commit.stage([f for f, _ in new], accepted, new)
        # the events of the changes in the batch go with it: emitted once it is committed, however many
        # changes have been made (and staged) since
        batch.events, self._events = self._events, []
        batch.acks, self._acks = self._acks, []
        batch.receipts = receipts
        self._staged.append(batch)
        if self.group is not None:
            self.group.request(self)  # written by the group's next round (actors.group_commit)
        else:
            self._commit_staged()

    # --- the group commit (actors.group_commit) ---------------------------------------------------

    def take_staged(self) -> list[StagedBatch]:
        """The batches staged since the last round (the committer writes them)."""
        staged, self._staged = self._staged, []
        return staged

    def commit_outcome(self, batches: list[StagedBatch], error: BaseException | None) -> None:
        """``batches`` were written (``error`` None) or could not be; acted on by :meth:`_on_committed`
        (after ``GroupCommitted`` when the committer wrote them)."""
        self._committed.append((batches, error))

    def _on_committed(self) -> None:
        done, self._committed = self._committed, []
        for batches, error in done:
            if error is not None:
                self._commit_failed(batches, error)
                continue
            self.attempt_hold.committed()  # status changes are written again
            for b in batches:
                self.commit.committed(b)
                self.counters["commits"] += 1
                if b.refused:  # the store is down to its reserve (storage.pop_commit)
                    self._refuse_new(b.refused, b.refused_error)
                elif b.new:
                    self.space.wrote_new()  # room again (storage.space_watch)
                if b.refunds:
                    self.directory.ledger.tell(m.encode(m.RefundMessages(self.address, b.refunds)))
                    self.owed.refunds_sent((r.message_id for r in b.refunds), self.clock.now())
                if b.stored is not None:
                    self.counters["webhook_events_stored"] += len(b.stored[0])
                    self.bridge.tell(m.encode(m.WebhookEventsStored(self.address, *b.stored)))
                self._after_commit(b.admitted, b.debit_batch)
                self._emit(b.acks, b.events + b.accepted)
                tell_carriers(self.directory.carriers, b.receipts, True)

    def _commit_failed(self, batches: list[StagedBatch], error: BaseException) -> None:
        err = as_storage_error(error, self.store.env.path())
        self.attempt_hold.commit_failed(err.code)
        for b in reversed(batches):  # (each goes back in front of what came after it)
            self.commit.unstage(b)  # its other changes are written by the next commit
            self._events = b.events + self._events
            self._acks = b.acks + self._acks
            tell_carriers(self.directory.carriers, b.receipts, False)  # the SMSC delivers them again
        # (the rest is written by the next commit: at the latest the tick's)
        self._refuse_new([new for b in batches for new in (*b.admitted, *b.refused)], err)

    def _refuse_new(self, admitted: list, err: StorageError) -> None:
        """New messages a commit did not write (it failed, or the store is down to its reserve): refused
        with ``err``, and an alarm for the operator."""
        self.counters["store_failures"] += 1
        if isinstance(err, StoreFull):  # logged when it starts, then once a minute (space_watch)
            self.space.refused(len(admitted), self.clock.now(), getattr(err, "store", "message"))
        else:
            log.error("pop %s: ALARM store write failed (%s): %d new messages refused", self.name,
                      err.code, len(admitted))
        for f, item in admitted:
            self.admission.remove(f.route_key)
            self._refuse(item, err)

    def _commit_staged(self) -> None:
        """Commit what is staged now, in a transaction of this POP's own, and act on the outcome."""
        staged = self.take_staged()
        if staged:
            self.commit_outcome(staged, commit_alone(self.store.env, self, staged))
        self._on_committed()

    def _flush_sync(self) -> None:
        """Flush and commit now (erasure, stop): with a group commit, what is staged would otherwise be
        written after the caller goes on."""
        self._flush()
        if self.group is not None:
            self._commit_staged()

    def _admit_all(self, items: list[m.AcceptItem]) -> list[tuple[Delivery, m.AcceptItem]]:
        """The messages to accept; those the route's carriers cannot take in time are refused here."""
        routing, now, out = self.directory.routing, self.clock.now(), []
        for item in items:
            try:
                route = routing.route_at(self.name, item.to, item.country, self.rng)
            except SmsrouteError as exc:  # the routing table changed since the session chose us
                self._refuse(item, exc)
                continue
            key = route.key
            if not self.admission.admit(key, route.carriers, now):
                self.counters["refused_saturated"] += 1
                self._refuse(item, CarriersSaturated(
                    f"the carriers for {item.country} are at capacity; retry shortly"))
                continue
            f = Delivery(LiveRecord(
                item.message_id, item.account_id, item.to, item.sender, item.country, self.name, "",
                item.encoding, item.segments, item.price_micro_usd, item.submitted_at,
                item.submitted_at, ACCEPTED, "", item.validity_seconds, item.callback_url, 0, 0.0,
                client_ref=item.client_ref), item.body)
            f.candidates = order_candidates(route.carriers, self.rng)
            f.route_key = key
            self.admission.add(key)
            out.append((f, item))
        return out

    def _refuse(self, item: m.AcceptItem, err: SmsrouteError) -> None:
        """Answer a submit that is not accepted, and hand its reserved price back to the session."""
        self.directory.reply_ref(item.reply_to).tell(
            m.encode(m.SubmitRejected(item.request_id, err.code, err.message)))
        target = self.directory.sessions.get(item.account_id)
        if target is not None:
            target.tell(m.encode(m.BalanceChanged(item.account_id, item.price_micro_usd)))

    def _after_commit(self, new: list[tuple[Delivery, m.AcceptItem]], batch: int) -> None:
        """Answer, bill and route the messages just committed, owed to the ledger as debit ``batch``."""
        debits, answers = [], {}
        grace, pop = self.limits.expiry_grace_seconds, self.name
        inflight, expire_at, route = self.inflight, self.timers.expire_at, self.dispatcher.route
        accepted_item, debit_item = m.AcceptedItem, m.DebitItem
        for f, item in new:  # (names bound once: this loop runs for every message)
            rec = f.record
            mid = rec.message_id
            inflight[mid] = f
            answer = accepted_item(item.request_id, mid, rec.segments, rec.price_micro_usd, pop,
                                   rec.encoding, rec.country)
            to = answers.get(item.reply_to)
            if to is None:
                answers[item.reply_to] = [answer]
            else:
                to.append(answer)
            debits.append(debit_item(mid, rec.account_id, rec.price_micro_usd, rec.submitted_at))
            expire_at(rec.submitted_at + rec.validity_seconds + grace, mid)
            route(f)
        for reply_to, items in answers.items():  # the core's bridge, or an HTTP edge's
            self.directory.reply_ref(reply_to).tell(m.encode(m.SubmitsAccepted(items)))
        if debits:
            self.counters["accepted"] += len(debits)
            self.directory.ledger.tell(m.encode(m.DebitMessages(self.address, batch, debits)))
            self.owed.debit_sent(batch, self.clock.now())

    def _send_outbox(self) -> None:
        if not self.outbox:
            return
        for carrier, msg, submits in self.outbox.take():
            ref = self.directory.carriers.get(carrier)
            if ref is None:
                continue
            try:
                ref.tell(m.encode(msg))
            except pykka.ActorDeadError:  # engine shutdown: the messages are durable and resume
                log.info("pop %s: carrier %s stopped; %d submits left for the next start",
                         self.name, carrier, submits)

    # --- the dispatcher's owner (engine.delivery.dispatcher) ---------------------------------------

    def schedule_retry(self, message_id: str, delay: float) -> None:
        self.clock.schedule(delay, self.actor_ref, m.encode(m.RetryDue(message_id)))

    def acked(self, f: Delivery) -> None:
        """Every part acknowledged: the body goes, the carrier's ids are kept for receipts."""
        if f.body is not None:
            now = time.time()
            get = f.carrier_ids.get
            ids = tuple([get(part, "") for part in range(len(f.state.parts))])
            rec = f.record
            rec.carrier_acked_at, rec.carrier_ids = now, ids
            f.body = None
            self.commit.discards.append(rec.message_id)
            self._acks.append(m.CarrierAckItem(rec.message_id, now))  # told after the commit
        self.persist(f)

    def finalised(self, f: Delivery, error: str, refund: bool) -> None:
        """``f`` is final: commit it, announce it, and refund it if no carrier ever acknowledged it."""
        rec = f.record
        if f.body is not None:
            f.body = None
            self.commit.discards.append(rec.message_id)
        final = f.state.status
        self.counters[final] = self.counters.get(final, 0) + 1
        refunded = refund and f.refundable and rec.price_micro_usd > 0
        if refunded:
            self.commit.refunds.append(
                m.RefundItem(rec.message_id, rec.account_id, rec.price_micro_usd, time.time()))
            self.counters["refunds"] += 1
        self._event(f, final, error)
        rec.status, rec.error = final, error[:200]  # (set here, not as persist's keywords: per message)
        if refunded:
            rec.refunded_micro_usd = rec.price_micro_usd
        self.persist(f)

    def persist(self, f: Delivery, **changes) -> None:
        """Record ``changes`` (and the time) on the message; the next group commit writes it."""
        rec = f.record
        rec.updated_at = time.time()
        for name, value in changes.items():
            setattr(rec, name, value)
        self.commit.dirty[rec.message_id] = rec  # the live record: the commit writes its latest state
        self._schedule_flush()

    # --- status events -----------------------------------------------------------------------------

    def _event(self, f: Delivery, status: str, error: str) -> None:
        item = self._status_item(f, status, error)
        self._events.append(item)
        if self.hooks.wanted(item):  # to the webhook outbox, with the commit of the change
            self.hooks.pending.append(item)

    def _status_item(self, f: Delivery, status: str, error: str) -> m.StatusItem:
        r = f.record
        return m.StatusItem(r.message_id, r.account_id, status, time.time(), self.name, f.carrier,
                            r.country, r.segments, r.price_micro_usd, error[:200], r.callback_url,
                            r.client_ref)

    def _emit_events(self) -> None:
        if self.commit.dirty or self._staged or self._committed:
            return  # a status change is emitted only after the commit that makes it durable
        acks, self._acks = self._acks, []
        events, self._events = self._events, []
        self._emit(acks, events)

    def _emit(self, acks: list[m.CarrierAckItem], events: list[m.StatusItem]) -> None:
        """Tell the host of carrier acknowledgements and the sessions of status changes (committed)."""
        if acks:
            self.bridge.tell(m.encode(m.CarriersAcked(acks)))
        if not events:
            return
        by_account: dict[str, list[m.StatusItem]] = {}
        for e in events:
            by_account.setdefault(e.account_id, []).append(e)
        for account_id, items in by_account.items():
            raw = m.encode(m.StatusesChanged(items))
            try:
                self.directory.session_or_bridge(account_id).tell(raw)
            except pykka.ActorDeadError:  # the session stopped first (engine shutdown)
                self.bridge.tell(raw)

    # --- time and erasure --------------------------------------------------------------------------

    def _on_tick(self, _now: float) -> None:
        if self.commit:
            self._schedule_flush()  # a failed commit is retried on the next tick
        mono = self.clock.now()
        self.space.tick(mono)  # while full: probe for space, so readiness comes back
        self.attempt_hold.tick(not (self.commit or self._staged or self._committed))
        self.dispatcher.board.sample(mono)
        self.admission.refresh()
        self.timers.compact(self.inflight, len(self.inflight))
        if self._expected:
            self._send_expected()
        self.dispatcher.timed_out(mono)
        self._send_owed_again(mono)
        for mid in self.timers.due_expiries(time.time()):
            f = self.inflight.get(mid)
            if f is not None:
                self.dispatcher.finish(f, *f.expiry())

    def _send_owed_again(self, mono: float) -> None:
        """Debit batches and refunds the ledger has not answered for a while (or owed since before a
        restart) go again, rebuilt from the message records (idempotent at the ledger)."""
        batches, refund_ids = self.owed.due(mono)
        if not batches and not refund_ids:
            return
        owed_batches = self.store.debits.all() if batches else {}
        for batch in batches:
            items = [m.DebitItem(r.message_id, r.account_id, r.price_micro_usd, r.submitted_at)
                     for r in map(self.records.get, owed_batches.get(batch, ())) if r is not None]
            if batch not in owed_batches:  # already forgotten (answered meanwhile)
                self.owed.debits_recorded([batch])
                continue
            self.directory.ledger.tell(m.encode(m.DebitMessages(self.address, batch, items)))
            self.owed.debit_sent(batch, mono)
        refunds = []
        for mid in refund_ids:
            r = self.records.get(mid)  # None: erased since, nothing to credit
            if r is not None and r.refunded_micro_usd > 0:
                refunds.append(m.RefundItem(mid, r.account_id, r.refunded_micro_usd, r.updated_at))
            else:
                self.owed.refunds_recorded([mid])
                self.commit.refunded.append(mid)
        if refunds:
            self.directory.ledger.tell(m.encode(m.RefundMessages(self.address, refunds)))
            self.owed.refunds_sent((r.message_id for r in refunds), mono)
        if self.commit:
            self._schedule_flush()

    def _on_forget_account(self, account_id: str) -> int:
        """Erasure: end the account's in-flight messages, drop their bodies, delete all its records."""
        self._flush_sync()  # what the session handed over is committed (and billed) first
        for f in [f for f in self.inflight.values() if f.record.account_id == account_id]:
            self.dispatcher.finish(f, FAILED, "account erased", refund=False)
        self.commit.forget_account(account_id)
        self.outbox.keep_only(self.dispatcher.refs)  # nothing of the account goes out now
        self._flush_sync()
        self._emit_events()
        self._send_outbox()  # withdrawals of its attempts
        ids = [r.message_id for r in self.records.for_account(account_id)]
        return self.records.delete_many(ids)

    # --- recovery ----------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Resume every message that was accepted but not final when the engine last stopped, and owe
        the ledger again what it had not confirmed."""
        self.owed.owed_at_start(self.store.debits.all(), self.store.refunds.all())
        open_records = list(self.records.open_records(on_corrupt=self._on_corrupt_record))
        if open_records:  # they hold in-flight slots like the messages accepted since
            self.bridge.tell(m.encode(m.MessagesResumed(self.name, len(open_records))))
        grace = self.limits.expiry_grace_seconds
        for stored in open_records:
            rec = LiveRecord.of(stored)
            f = Delivery(rec, None)
            self.inflight[rec.message_id] = f
            self.timers.expire_at(rec.submitted_at + rec.validity_seconds + grace, rec.message_id)
            if rec.carrier_acked_at:
                f.phase = ACKED
                if any(rec.carrier_ids):
                    self._expect_receipts(f)
            elif self._resume_unsent(f):
                self.actor_ref.tell(m.encode(m.RetryDue(rec.message_id)))
        if open_records:
            log.info("pop %s: resumed %d open messages", self.name, len(open_records))
        self._send_owed_again(self.clock.now())  # what the ledger may lack: at once (idempotent there)
        self._emit_events()

    def _resume_unsent(self, f: Delivery) -> bool:
        """Reload the body and the route of a message no carrier had acknowledged; False if it cannot
        go any more (it is then failed, and refunded unless a carrier had taken part of it)."""
        rec = f.record
        try:
            f.body = self.bodies.get(rec.message_id)
        except StorageError as exc:  # one unreadable body must not stop the POP
            self.counters["store_failures"] += 1
            log.error("pop %s: ALARM body of %s unreadable (%s)", self.name, rec.message_id, exc.code)
            self.dispatcher.finish(f, FAILED, f"body unreadable: {exc.code}")
            return False
        if f.body is None:
            self.dispatcher.finish(f, FAILED, "body no longer stored")
            return False
        try:
            route = self.directory.routing.route_at(self.name, rec.to, rec.country, self.rng)
        except SmsrouteError as exc:
            self.dispatcher.finish(f, FAILED, exc.message)
            return False
        f.candidates, f.route_key = order_candidates(route.carriers, self.rng), route.key
        self.admission.add(route.key)
        return True

    def _expect_receipts(self, f: Delivery) -> None:
        """A message the carrier acknowledged before the restart: a new ref, and ask its carrier (on
        the first tick, once carriers run) to match receipts for its message ids to that ref."""
        rec = f.record
        f.ref = self.dispatcher.new_ref()
        f.state.resize(max(1, len(rec.carrier_ids)))
        self.dispatcher.refs[f.ref] = rec.message_id
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
                  message_id, getattr(exc, "code", type(exc).__name__))
