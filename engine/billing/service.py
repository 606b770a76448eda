"""Billing: what the engine offers on top of the ledger (``engine.billing``, one per engine).

* :meth:`Billing.adjust` — an operator's credit or debit with a mandatory reason, idempotent by a
  client-supplied key per account; audit-logged with who made it. A debit never takes a balance below
  zero (the account's session reserves it first, as it does a message's price).
* :meth:`Billing.set_low_balance_threshold` / :meth:`Billing.on_low_balance` — a per-account threshold; the
  write that takes the balance below it is announced once (callbacks here, a webhook on HTTP).
* :meth:`Billing.usage` — an account's rows for a period (``engine.billing.usage``).
* :meth:`Billing.verify` — the ledger's hash chain (``storage.ledger_chain``).
* :meth:`Billing.reconcile` — records against ledger (``engine.billing.reconcile``); the engine runs it once
  after every start, in a background thread (``[engine] ledger_reconcile_at_start``), and keeps the
  report (:attr:`Billing.last_reconciliation`).

Every method may be called from any host thread (never from an actor: they wait for the ledger).
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine import messages as m
from engine.billing.amounts import parse_usd
from engine.billing.reconcile import CUTOFF_SECONDS, Cancelled, Reconciliation, reconcile
from engine.billing.usage import UsageRow, usage_rows
from engine.errors import ClusterUnavailable, InputError, SmsrouteError
from storage.ledger import ADJUSTMENT
from storage.ledger_chain import ChainReport

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 500
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, like an Idempotency-Key
LOGGED_DIFFERENCES = 50  # a start-up reconciliation logs this many differences, then a count
WORKERS_WAIT_S = 300.0  # a cluster's core waits this long for its workers to reconcile at start-up


@dataclass(frozen=True)
class Adjustment:
    """The answer to :meth:`Billing.adjust`."""

    account_id: str
    amount_micro_usd: int
    balance_micro_usd: int
    duplicate: bool  # the key was used before with the same amount and reason: nothing written


class Billing:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.last_reconciliation: Reconciliation | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._notices = 0
        runtime.bridge.on_low_balance(self._count_notice)

    @property
    def ledger(self):
        return self.runtime.ledger_store

    # --- adjustments ---------------------------------------------------------------------------

    def adjust(self, account_id: str, usd: Any, reason: str, key: str, *,
               actor: str = "embedding-api", timeout: float = 10.0) -> Adjustment:
        """Credit (``usd`` > 0) or debit (< 0) the account, with a reason, once per ``key``.

        ``InsufficientBalance`` for a debit beyond the balance still spendable; ``AdjustmentConflict``
        when ``key`` was used for this account with another amount or reason; a replay with the same
        amount and reason answers ``duplicate=True`` and writes nothing."""
        amount = parse_usd(usd, allow_negative=True)
        if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_CHARS:
            raise InputError(f"a reason is required (1-{MAX_REASON_CHARS} characters)")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InputError("the idempotency key is 1-255 visible ASCII characters")
        self.runtime.accounts.get(account_id)  # UnknownAccount if there is none
        request_id, fut = self.runtime.bridge.new_request()
        raw = m.encode(m.AdjustBalance(request_id, account_id, amount, reason.strip(), key, actor,
                                       time.time()))
        # A new debit is reserved by the account's session (never below zero); a credit, or a key
        # already used (a replay or a conflict, which the ledger answers), goes to the ledger at once.
        reserve = amount < 0 and not self.ledger.has(ADJUSTMENT, key, account_id)
        target = self.runtime.session_for(account_id) if reserve else self.runtime.directory.ledger
        target.tell(raw)
        try:
            reply = fut.result(timeout)
        except SmsrouteError as exc:
            self._audit(actor, "ledger_adjustment", account_id, exc.code, {"amount_micro_usd": amount})
            raise
        self._audit(actor, "ledger_adjustment", account_id, "replay" if reply.duplicate else "ok",
                    {"amount_micro_usd": amount})
        return Adjustment(account_id, amount, reply.balance_micro_usd, reply.duplicate)

    def _audit(self, actor: str, action: str, account_id: str, result: str, detail: dict) -> None:
        """Staff actions on an account are audit-logged (policy 9), synced: the ``data_subject``
        trail of ``GET /v1/audit``, which names who did it."""
        self.runtime.core_audit.append(actor, action, account_id, result, detail, account=account_id)
        self.runtime.core_env.sync(True)

    # --- low balance ---------------------------------------------------------------------------

    def set_low_balance_threshold(self, account_id: str, usd: Any, timeout: float = 10.0) -> int:
        """Notify once whenever the balance goes below ``usd`` (``"0"``: never); the threshold in
        micro-USD. If the balance is below it already, that is announced at once."""
        threshold = parse_usd(usd, allow_zero=True)
        self.runtime.accounts.get(account_id)
        return self.runtime.directory.ledger.ask(
            m.encode(m.SetLowBalanceThreshold(account_id, threshold)), timeout=timeout)

    def low_balance_threshold(self, account_id: str) -> int:
        self.runtime.accounts.get(account_id)
        return self.ledger.balance_row(account_id).threshold

    def on_low_balance(self, callback: Callable[[m.BalanceLow], None]) -> None:
        """Call ``callback(event)`` (an engine thread) each time an account's balance goes below its
        threshold: ``event.account_id``, ``balance_micro_usd``, ``threshold_micro_usd``, ``seq``, ``at``."""
        self.runtime.bridge.on_low_balance(callback)

    # --- usage, verification, reconciliation -----------------------------------------------------

    def usage(self, account_id: str, since: float = 0.0, until: float | None = None) -> Iterator[UsageRow]:
        """The account's usage rows for ``[since, until)`` (see ``engine.billing.usage``); every debit
        already sent to the ledger is written first."""
        self.runtime.accounts.get(account_id)
        self.runtime.sync_ledger()
        until = time.time() if until is None else until
        if until < since:
            raise InputError("the period ends before it starts")
        shards = self.runtime.shards  # (in a cluster: only the workers that may hold the account's)
        return usage_rows(self.ledger, functools.partial(shards.find_records, account_id=account_id),
                          account_id, since, until)

    def verify(self) -> ChainReport:
        """Walk the ledger's hash chain and open every entry; every broken place is reported."""
        self.runtime.sync_ledger()
        return self.ledger.verify()

    def reconcile(self, settle_seconds: float = CUTOFF_SECONDS) -> Reconciliation:
        """Reconcile the message records with the ledger now (the engine keeps running); messages
        accepted in the last ``settle_seconds`` are not checked."""
        report = reconcile(self.ledger, self.runtime.shards, cutoff=time.time() - settle_seconds,
                           sync=self.runtime.sync_ledger, cancelled=self._cancel.is_set)
        self.last_reconciliation = report
        return report

    # --- the start-up run --------------------------------------------------------------------------

    def start(self) -> Billing:
        """Reconcile once in the background (if configured); the report is logged and kept."""
        if self.runtime.settings.engine.ledger_reconcile_at_start:
            self._thread = threading.Thread(target=self._reconcile_at_start, daemon=True,
                                            name="smsroute-reconcile")
            self._thread.start()
        return self

    def stop(self) -> None:
        """Abandon a reconciliation still running (before the stores close)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(30)

    def _reconcile_at_start(self) -> None:
        """Once after the start; in a cluster's core, retried while the workers are not up yet (they
        start after the core), for up to ``WORKERS_WAIT_S``."""
        deadline = time.monotonic() + WORKERS_WAIT_S
        while True:
            try:
                report = self.reconcile(settle_seconds=0.0)  # what was accepted before now is billed
                break
            except Cancelled:
                return
            except ClusterUnavailable:
                if self._cancel.wait(1.0):
                    return  # stopping
                if time.monotonic() > deadline:
                    log.error("ledger reconciliation at start-up: the workers did not answer")
                    return
            except Exception:  # a store error must not go unnoticed, nor stop anything else
                log.exception("ledger reconciliation at start-up failed")
                return
        log_report(report, self.runtime.pseudonyms.pseudonym)

    def stats(self) -> dict[str, Any]:
        """For ``/metrics``: the chain's head, notices sent, the last reconciliation's differences."""
        report = self.last_reconciliation
        return {"head_seq": self.ledger.head()[0], "low_balance_notices": self._notices,
                "reconciliation_differences": report.differences_total if report else None}

    def _count_notice(self, _event: m.BalanceLow) -> None:
        self._notices += 1


def log_report(report: Reconciliation, pseudonym: Callable[[str], str]) -> None:
    """Log a reconciliation: one line when clean, else each difference (up to a bound) and a count.

    A log line outlives an erasure, so it names the account by its pseudonym (``psn_…``, what the
    ledger keeps after the erasure); the report itself (``GET /v1/ledger/reconciliation``) lists ids."""
    if report.ok:
        log.info("ledger reconciliation: no differences (%s)", report.counts)
        return
    for d in report.differences[:LOGGED_DIFFERENCES]:
        account = d.account if not d.account or d.account.startswith("psn_") else pseudonym(d.account)
        log.warning("ledger reconciliation: %s account=%s message=%s expected=%s found=%s", d.kind,
                    account, d.message_id or "-", d.expected, d.found)
    log.warning("ledger reconciliation: %d differences (%s); GET /v1/ledger/reconciliation lists them",
                report.differences_total, report.counts)
