"""LedgerActor: the single writer of debits, refunds, deposits and adjustments.

Messages in: ``DebitMessages`` and ``RefundMessages`` (POPs, after the commit that makes them durable),
``CreditAccount`` (host deposits), ``AdjustBalance`` (operator adjustments: credits from the host, debits
through the account's session, which has reserved them), ``SetLowBalanceThreshold`` (asked by the host),
``RegisterSession`` (told once by each new session, answered with ``SessionRegistered``: the balance and
the account's snapshot), ``PseudonymiseAccount`` (asked by erasure), ``Flush`` and ``Tick`` (itself / the
clock).
Messages out: ``BalanceChanged`` to the account's session, ``CreditApplied`` / ``SubmitRejected`` to the
bridge, ``BalanceLow`` to the bridge (once per crossing of an account's threshold), ``DebitsRecorded`` and
``RefundsRecorded`` to the POP that owed the debits and refunds.

Debits are grouped: every debit that arrived before a ``Flush`` is written in one transaction — one sealed,
chained entry per account (its commit fsyncs the data pages it wrote but not the meta page that makes
them current: the core environment is ``MDB_NOMETASYNC``, see ``storage.env`` and ``storage.ledger``).
A debit waits up to
``DEBIT_WAIT_S`` for others to share its write (at once when ``DEBIT_BATCH`` are queued): nothing waits on
the write (the session reserved the price at the submit, and a balance read flushes first), and under an
open load each POP commit would otherwise cost the ledger a transaction (and an fsync) of its own. One
``env.sync`` per clock tick makes durable every debit written since (it writes the meta page), and then
each POP is told which of its batches it no longer owes; the tick does
not write the debits still waiting for their timer (that split their shared write in two: one transaction
and fsync more on the actors' thread, the ledger's longest turn under load). Refunds wait for the same timer (they
used to be written at once: with the debits queued before them, two fsynced transactions per refund batch,
~60 per 1,000 messages over HTTP at a few % refunds; ``bench/RESULTS.md``, session 12) and are fsynced,
because the POP forgets it owes them once told ``RefundsRecorded``; they are written after the debits queued
before them, so a message is never refunded before it is billed. Every kind of write is
idempotent (message id per kind, chain + tx hash, adjustment key), so a repeat never bills, refunds or
credits twice; a deposit or adjustment whose key is recorded with other details is refused
(``deposit_conflict`` / ``adjustment_conflict``). If a write fails (store full), debits and refunds stay
queued and are retried on the next tick; the POPs send again what a crash lost (``storage.owed_debits``).
A full store (its map or its disk) is ``store_full``: logged once when it starts, then a summary at most
every ``FULL_SUMMARY_SECONDS``, and once when the ledger writes again (``storage.full_alarm``), not on
every retry.
"""

from __future__ import annotations

import logging
import struct
import time

import pykka

from actors.dispatch import DispatchedActor
from engine import messages as m
from engine.billing.amounts import LIMIT_MICRO
from engine.errors import LedgerConflict, SmsrouteError, StorageError, StoreFull
from engine.webhook_events import prefs_of
from storage.full_alarm import FullAlarm
from storage.ledger import (
    ADJUSTMENT,
    DEBIT,
    DEPOSIT,
    LEDGER_STORE,
    REFUND,
    LedgerStore,
    LowBalance,
    Written,
)

log = logging.getLogger(__name__)

# What a write raises for an amount its 64-bit fields cannot hold: only a forged frame from another
# process carries one (a session prices a message far below it), so it is looked for only then.
_TOO_LARGE = (struct.error, OverflowError)
DEBIT_BATCH = 4096  # queued debits written at once, without waiting for more
DEBIT_WAIT_S = 0.05  # the longest a debit waits for others to share its transaction (README: Billing)
FULL_SUMMARY_SECONDS = 60.0  # while the store is full: at most one log line this often


class LedgerActor(DispatchedActor):
    stage = "ledger"

    def __init__(self, store: LedgerStore, directory, accounts, clock) -> None:
        super().__init__()
        self.store = store
        self.clock = clock  # actors.clock.Clock: the debits' short wait
        self._debit_timer = False
        self.directory = directory
        self.accounts = accounts  # storage.accounts.AccountStore: the snapshot a new session starts from
        self._debits: list[m.DebitItem] = []
        self._batches: list[tuple[str, int]] = []  # (pop, batch) of the debits in _debits
        self._unsynced: list[tuple[str, int]] = []  # written, not yet fsynced: not yet confirmed
        self._refunds: list[tuple[str, m.RefundItem]] = []  # (pop, refund)
        self._flush_scheduled = False
        self._registered: set[str] = set()  # accounts whose session is told every balance change
        self.alarms = 0
        self.low_balance_notices = 0
        self.full = FullAlarm("ledger", LEDGER_STORE, FULL_SUMMARY_SECONDS)

    def on_receive(self, raw: bytes):
        msg = m.decode_or_drop(raw, "ledger")
        match msg:
            case None:
                pass  # malformed: logged and dropped
            case m.DebitMessages(pop=pop, batch=batch, items=items):
                self._debits.extend(items)
                self._batches.append((pop, batch))
                self._wait_for_others(len(self._debits))
            case m.RefundMessages(pop=pop, items=items):
                self._refunds.extend((pop, item) for item in items)
                self._wait_for_others(len(self._refunds))
            case m.Flush():  # (one that finds nothing queued, e.g. a timer's after a full batch: no-op)
                self._flush_scheduled = self._debit_timer = False
                self._write_debits()
                self._write_refunds()
            case m.Tick():
                if not self._debit_timer:  # (what waits for the timer is written by it)
                    self._write_debits()
                    self._write_refunds()
                self._confirm_debits()
            case m.CreditAccount():
                self._on_credit_account(msg)
            case m.AdjustBalance():
                self._on_adjust_balance(msg)
            case m.SetLowBalanceThreshold(account_id=account_id, threshold_micro_usd=threshold):
                return self._on_set_low_balance_threshold(account_id, threshold)
            case m.RegisterSession(account_id=account_id):
                self._on_register_session(account_id)
            case m.PseudonymiseAccount(account_id=account_id):
                return self._on_pseudonymise_account(account_id)
            case _:
                log.error("ledger: unexpected %s", type(msg).__name__)
        return None

    def on_stop(self) -> None:
        self._write_debits()
        self._write_refunds()
        self._confirm_debits()

    def _wait_for_others(self, queued: int) -> None:
        """Debits and refunds wait up to ``DEBIT_WAIT_S`` for others to share their write (at once
        when ``DEBIT_BATCH`` of one kind are queued)."""
        if queued >= DEBIT_BATCH:
            self._schedule_flush()
        elif not self._debit_timer:
            self._debit_timer = True
            self.clock.schedule(DEBIT_WAIT_S, self.actor_ref, m.encode(m.Flush()))

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.actor_ref.tell(m.encode(m.Flush()))

    def _write_debits(self) -> None:
        if not self._debits:
            return
        batch, self._debits = self._debits, []
        batches, self._batches = self._batches, []
        rows = [(DEBIT, d.account_id, -d.amount_micro_usd, d.message_id, d.at, "", "") for d in batch]
        try:
            written = self.store.write(rows, durable=False, answers=False)  # confirmed at the tick's sync
        except StorageError as exc:
            self._alarm(exc, f"{len(batch)} debits wait", "could not write %d debits", len(batch))
            self._debits = batch + self._debits
            self._batches = batches + self._batches
            return
        except _TOO_LARGE:
            kept = _holdable(batch, "debits")
            if len(kept) == len(batch):
                raise
            self._debits = kept + self._debits  # their batches are confirmed: the POP forgets them
            self._batches = batches + self._batches
            self._write_debits()
            return
        self.full.wrote()
        self._unsynced.extend(batches)
        self._announce(written.low_balance)

    def _confirm_debits(self) -> None:
        """One ``env.sync`` for every debit written since the last (on the clock's tick, not per batch:
        each write fsynced its data pages, this makes the meta page that points to them durable), then
        tell each POP which of its batches it no longer owes (``DebitsRecorded``)."""
        if not self._unsynced:
            return
        try:
            self.store.sync()
        except StorageError as exc:
            self._alarm(exc, f"{len(self._unsynced)} debit batches unconfirmed", "could not sync debits")
            return
        self.full.wrote()
        done, self._unsynced = self._unsynced, []
        by_pop: dict[str, list[int]] = {}
        for pop, batch in done:
            by_pop.setdefault(pop, []).append(batch)
        for pop, batches in by_pop.items():
            self._tell_pop(pop, m.DebitsRecorded(batches))  # (a stopped POP sends them again)

    def _write_refunds(self) -> None:
        """Credit back messages no carrier acknowledged (after the debits queued before them)."""
        if not self._refunds:
            return
        self._write_debits()
        if self._debits:
            return  # the debits could not be written: the refunds wait with them
        batch, self._refunds = self._refunds, []
        rows = [(REFUND, r.account_id, r.amount_micro_usd, r.message_id, r.at, "", "")
                for _, r in batch]
        try:
            written = self.store.write(rows)  # fsynced: the POPs forget what they owed after this
        except StorageError as exc:
            self._alarm(exc, f"{len(batch)} refunds wait", "could not write %d refunds", len(batch))
            self._refunds = batch + self._refunds
            return
        except _TOO_LARGE:
            kept = _holdable(batch, "refunds", lambda r: r[1].amount_micro_usd)
            if len(kept) == len(batch):
                raise
            self._refunds = kept + self._refunds  # (a forged refund is owed by no POP: none resends it)
            self._write_refunds()
            return
        self.full.wrote()
        by_pop: dict[str, list[str]] = {}
        for (pop, refund), (_, new) in zip(batch, written.results, strict=True):
            by_pop.setdefault(pop, []).append(refund.message_id)
            if new:
                self._tell_session(refund.account_id, refund.amount_micro_usd)
        for pop, ids in by_pop.items():
            self._tell_pop(pop, m.RefundsRecorded(ids))  # (a stopped POP sends them again)
        self._announce(written.low_balance)

    def _alarm(self, exc: StorageError, waiting: str, failed: str, *args: object) -> None:
        """A write or sync of what the ledger retries failed: a full store is logged by ``self.full``
        (once, then a summary), any other error on each failure."""
        self.alarms += 1
        if isinstance(exc, StoreFull):
            self.full.refused(waiting)
        else:
            log.error("ledger: ALARM %s (%s); will retry", failed % args, exc.code)

    def _tell_pop(self, pop: str, msg: m.Message) -> None:
        """Tell a POP what it no longer owes. A POP already stopped (the engine stops the ledger last)
        drops it: it still owes those debits or refunds and sends them again when it starts."""
        ref = self.directory.pop_ref(pop)
        if ref is None:
            return
        try:
            ref.tell(m.encode(msg))
        except pykka.ActorDeadError:
            log.info("ledger: pop %s stopped; it sends what it still owes at its next start", pop)

    def _on_credit_account(self, msg: m.CreditAccount) -> None:
        row = (DEPOSIT, msg.account_id, msg.amount_micro_usd, msg.tx_hash, msg.at, msg.chain,
               msg.from_address)
        written = self._write_one(msg.request_id, row)
        if written is None:
            return
        [(_, new)] = written.results
        if new:
            self._tell_session(msg.account_id, msg.amount_micro_usd)
        self._answer(msg.request_id, msg.account_id, not new)

    def _on_adjust_balance(self, msg: m.AdjustBalance) -> None:
        """An operator's credit or debit. A debit reserved by the session (``reserved``) is handed back
        unless it is written; a new credit is spendable at once."""
        amount = msg.amount_micro_usd
        row = (ADJUSTMENT, msg.account_id, amount, msg.key, msg.at, "", "", msg.reason, msg.actor)
        written = self._write_one(msg.request_id, row)
        new = written is not None and written.results[0][1]
        if msg.reserved and not new:
            self._tell_session(msg.account_id, -amount, registered_only=False)  # the reservation
        elif amount > 0 and new:
            self._tell_session(msg.account_id, amount)
        if written is not None:
            self._answer(msg.request_id, msg.account_id, not new)

    def _write_one(self, request_id: int, row: tuple) -> Written | None:
        """Write one deposit or adjustment (fsynced), in arrival order after what is queued; refusals
        (conflict, store full) are answered to the bridge and give None."""
        self._write_debits()
        self._write_refunds()
        try:
            written = self.store.write([row])
        except (LedgerConflict, StorageError) as exc:
            if isinstance(exc, StoreFull):
                self.full.refused("a deposit or adjustment refused store_full")
            self.directory.bridge.tell(m.encode(m.SubmitRejected(request_id, exc.code, exc.message)))
            return None
        self.full.wrote()
        self._announce(written.low_balance)
        return written

    def _answer(self, request_id: int, account_id: str, duplicate: bool) -> None:
        balance = self.store.balance(account_id) - self._queued_for(account_id)
        self.directory.bridge.tell(m.encode(m.CreditApplied(request_id, account_id, balance, duplicate)))

    def _on_set_low_balance_threshold(self, account_id: str, threshold: int) -> int:
        self._write_debits()  # the threshold is judged against every debit already told
        crossed = self.store.set_threshold(account_id, threshold)
        self._announce([crossed] if crossed is not None else [])
        return max(0, threshold)

    def _announce(self, crossings: list[LowBalance]) -> None:
        """Tell the bridge each account whose balance just went below its threshold."""
        now = time.time()
        for c in crossings:
            self.low_balance_notices += 1
            self.directory.bridge.tell(m.encode(m.BalanceLow(
                c.account_id, c.balance_micro_usd, c.threshold_micro_usd, c.seq, now)))

    def _tell_session(self, account_id: str, delta: int, *, registered_only: bool = True) -> None:
        if registered_only and account_id not in self._registered:
            return
        session = self.directory.session_ref(account_id)
        if session is not None:
            session.tell(m.encode(m.BalanceChanged(account_id, delta)))

    def _on_pseudonymise_account(self, account_id: str) -> int:
        """Erasure: write what is queued, then shred the account's ledger key (its rows keep amounts
        and times under its pseudonym; a later debit of it is stored without identifiers)."""
        self._write_debits()
        rows = self.store.forget_account(account_id)
        self._registered.discard(account_id)
        return rows

    def _on_register_session(self, account_id: str) -> None:
        # From now on this account's session hears every change; everything before is in the answer.
        self._registered.add(account_id)
        balance = self.store.balance(account_id) - self._queued_for(account_id)
        try:
            a = self.accounts.get(account_id)
            hooks = prefs_of(account_id, a)
            snapshot = (list(a.key_digests), list(a.senders), a.state, bool(a.email_confirmed_at),
                        hooks.webhook_url_set, hooks.webhook_statuses)
        except SmsrouteError:  # erased or swept meanwhile: a session that refuses everything
            snapshot = ([], [], "closed", False, False, None)
        session = self.directory.session_ref(account_id)
        if session is not None:
            session.tell(m.encode(m.SessionRegistered(account_id, balance, *snapshot)))

    def _queued_for(self, account_id: str) -> int:
        return sum(d.amount_micro_usd for d in self._debits if d.account_id == account_id)


def _holdable(batch: list, what: str, amount=lambda item: item.amount_micro_usd) -> list:
    """The items of a batch whose amount a ledger can hold (below a billion USD either way); the
    others, which only a forged frame carries, are dropped and logged (their count, never an id)."""
    kept = [item for item in batch if -LIMIT_MICRO < amount(item) < LIMIT_MICRO]
    if len(kept) < len(batch):
        log.error("ledger: dropped %d %s with an amount beyond a billion USD", len(batch) - len(kept),
                  what)
    return kept
