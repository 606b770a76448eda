"""What a POP writes to its durable webhook outbox, and when (the POP's policy; the store is
``storage.webhook_outbox``).

A status change goes to the outbox when the account wants a webhook for it: the message has a
``callback_url`` or the account a webhook URL, and the status is among the account's ``receipt_statuses``
(all when unset). The POP learns an account's settings from the account's session (``WebhookPrefs``, at the
session's start and after each change) or, for an account whose session it has not heard from, reads them
through ``prefs`` (cached; again after a ``WebhookSettingsChanged``). A cluster worker's ``prefs`` cannot
read the accounts store and answers "every status": safe (the core's feed drops what is not wanted), only
slower. Events are written in the POP's group commit (:meth:`write`), and so are removals (:attr:`done`,
reported by the webhook dispatcher) and retry schedules (:attr:`retrying`). At most ``limit`` events are
stored per POP shard (:func:`outbox_share`); beyond that an event is dropped and counted (the backlog is bounded, and visible in
metrics).

Threads: the POP's (the dispatcher thread); nothing here is shared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import lmdb

from engine.messages import StatusItem, WebhookPrefs

log = logging.getLogger(__name__)

MAX_CACHED_ACCOUNTS = 100_000
LOG_EVERY = 10_000  # a full outbox logs its first drop and then one line per this many
Prefs = tuple[bool, frozenset[str] | None]  # (the account has a webhook URL, statuses wanted or None)


def prefs_of(account_id: str, record: Any) -> WebhookPrefs:
    """What a POP needs of an account's webhook settings, from its ``storage.accounts.AccountRecord``."""
    statuses = None if record.receipt_statuses is None else list(record.receipt_statuses)
    return WebhookPrefs(account_id, record.webhook_url is not None, statuses)


def as_prefs(prefs: WebhookPrefs) -> Prefs:
    """The form a POP keeps and asks (a frozen set of the statuses wanted)."""
    statuses = prefs.webhook_statuses
    return prefs.webhook_url_set, None if statuses is None else frozenset(statuses)


def outbox_share(settings: Any, workers: int = 1) -> int:
    """Each POP shard's share of ``[http] webhook_max_backlog``: in a cluster every worker runs a shard of
    every POP, and all of them feed the core's one dispatcher, so the share is divided by the workers too
    (at least one event; what the dispatcher has no room for waits in the core's webhook feed)."""
    total = int(getattr(getattr(settings, "http", None), "webhook_max_backlog", 0) or 100_000)
    pops = max(1, len(getattr(settings, "pops", {}) or {"": None}))
    return max(1, total // (pops * max(1, workers)))


class Staged(NamedTuple):
    """A POP's webhook work taken out with one staged batch."""

    pending: list[StatusItem]
    done: list[int]
    retrying: list[tuple[list[int], int, float]]


class WebhookEvents:
    """The POP's side of the webhook outbox: pending writes, pending removals, the bound."""

    def __init__(self, store: Any, prefs: Callable[[str], Prefs] | None, limit: int) -> None:
        self.store = store  # storage.webhook_outbox.WebhookOutbox, or None (no outbox: nothing stored)
        self._prefs = prefs
        self.limit = limit
        self.pending: list[StatusItem] = []  # status changes not yet written with their commit
        self.done: list[int] = []  # outbox sequences delivered or given up: removed at the next commit
        self.retrying: list[tuple[list[int], int, float]] = []  # (seqs, attempt, next_at) to record
        self.dropped = 0
        self._cache: dict[str, Prefs] = {}

    def __bool__(self) -> bool:
        return bool(self.pending or self.done or self.retrying)

    @property
    def count(self) -> int:
        return self.store.count if self.store is not None else 0

    def forget(self, account_id: str) -> None:
        self._cache.pop(account_id, None)

    def learn(self, prefs: WebhookPrefs) -> None:
        """The account's settings as its session knows them: in a cluster worker, which has no accounts
        store, the only way to keep unwanted events out of the outbox."""
        self._remember(prefs.account_id, as_prefs(prefs))

    def wanted(self, item: StatusItem) -> bool:
        if self.store is None or self._prefs is None:
            return False
        prefs = self._cache.get(item.account_id)
        if prefs is None:
            prefs = self._remember(item.account_id, self._prefs(item.account_id))
        has_url, statuses = prefs
        return bool(item.callback_url or has_url) and (statuses is None or item.status in statuses)

    def _remember(self, account_id: str, prefs: Prefs) -> Prefs:
        if len(self._cache) >= MAX_CACHED_ACCOUNTS:
            self._cache.clear()  # (an account not cached is read through ``prefs`` again)
        self._cache[account_id] = prefs
        return prefs

    def stage(self) -> Staged:
        """What is pending now, taken out for the batch being staged (``storage.pop_commit``)."""
        staged = Staged(self.pending, self.done, self.retrying)
        self.pending, self.done, self.retrying = [], [], []
        return staged

    def write(self, txn: lmdb.Transaction, accepted: list[StatusItem], staged: Staged
              ) -> tuple[tuple[list[int], list[StatusItem]] | None, tuple[int, int, int]]:
        """Inside the POP's commit: store the wanted events of a staged batch (``accepted`` first: those
        messages are new in this commit, so their other events cannot precede them), remove its done
        ones, record its retries. Returns ``(seqs, items)`` stored (for the bridge) or None, and the
        (added, removed, dropped) counts for :meth:`committed`. Nothing is counted here: a write whose
        transaction fails is written again (``actors.group_commit``), and must not count twice."""
        if self.store is None:
            return None, (0, 0, 0)
        events = [e for e in (*accepted, *staged.pending) if self.wanted(e)]
        room = self.limit - self.store.entries(txn) + len(staged.done)
        lost = 0
        if len(events) > room:
            lost = len(events) - max(0, room)
            events = events[:max(0, room)]
        seqs = self.store.add(txn, events)
        removed = self.store.remove(txn, staged.done) if staged.done else 0
        for retry_seqs, attempt, next_at in staged.retrying:  # (skips events removed just now)
            self.store.set_retry(txn, retry_seqs, attempt, next_at)
        kept = [(s, e) for s, e in zip(seqs, events, strict=True) if s]
        if not kept:
            return None, (0, removed, lost)
        return ([s for s, _ in kept], [e for _, e in kept]), (len(kept), removed, lost)

    def committed(self, writing: tuple[int, int, int]) -> None:
        """The commit that held a batch's events (``writing``: :meth:`write`'s counts) is durable: the
        outbox's count moves, and the events dropped over the bound are counted (and logged)."""
        if self.store is None:
            return
        added, removed, lost = writing
        self.store.committed(added, removed)
        if lost:
            if self.dropped // LOG_EVERY != (self.dropped + lost) // LOG_EVERY or not self.dropped:
                log.warning("webhook outbox full: %d events dropped so far", self.dropped + lost)
            self.dropped += lost

    def unstage(self, staged: Staged) -> None:
        """A staged batch was not written: its events go back in front of what came since."""
        self.pending = staged.pending + self.pending
        self.done = staged.done + self.done
        self.retrying = staged.retrying + self.retrying
