"""The log of a writer that retries into a full store: one ALARM, a summary now and then, one recovery line.

Why: a writer that keeps what it could not write and retries on every tick (the ledger's debits and
refunds) logged one ALARM per retry - twenty lines a second at a 50 ms tick, for as long as the disk
stayed full - which buried every other line and said nothing new after the first. :class:`FullAlarm`
logs the first refusal, then at most one summary every ``every`` seconds with how many writes were refused
since the last line, and one line when a write succeeds again. Counting each refusal in
``smsroute_store_full_refusals_total`` is ``storage.full.store_full``'s job, not this one's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from engine.retry_log import RetryLog

log = logging.getLogger(__name__)


class FullAlarm(RetryLog):
    """The full-store log lines of one writer (``who``, e.g. ``ledger``) for one store: when to say them
    is ``engine.retry_log.RetryLog``'s (a retry is a write), the words are about a full store. Not
    thread-safe: one owner (an actor)."""

    def __init__(self, who: str, store: str, every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(log, f"{who}: store {store} is full", f"{who}: store {store} takes writes again",
                         every, clock)
        self.who, self.store = who, store

    @property
    def full(self) -> bool:
        return self.failing

    def refused(self, what: str) -> None:
        """A write was refused for lack of space; ``what`` says what waits (no identifiers)."""
        self.failed(what)

    def wrote(self) -> None:
        """A write succeeded: if the store was full, say that it takes writes again (once)."""
        self.succeeded()

    def _first(self, what: str) -> None:
        log.error("%s: ALARM store %s is full (disk or LMDB map): %s, retried until it takes writes "
                  "again; nothing stored is lost", self.who, self.store, what)

    def _summary(self, what: str, failing_for: float, failed: int, window: float) -> None:
        log.error("%s: ALARM store %s still full: %d writes refused in the last %.0f s; %s",
                  self.who, self.store, failed, window, what)

    def _recovered(self, failing_for: float, since_last_line: int, failed_in_all: int) -> None:
        log.warning("%s: store %s takes writes again (%d writes refused since the last report)",
                    self.who, self.store, since_last_line)


class RefusalAlarm(FullAlarm):
    """:class:`FullAlarm` for a writer that keeps nothing to retry: each refused write is answered
    ``store_full`` to its caller (a new account whose keys cannot be stored), who may try again. Same
    three lines and counts; the first one says what is refused instead of "retried". Thread-safe: account
    creation runs on any caller's thread."""

    def __init__(self, who: str, store: str, every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(who, store, every, clock)
        self._lock = threading.Lock()

    def refused(self, what: str) -> None:
        with self._lock:
            super().refused(what)

    def wrote(self) -> None:
        if not self.full:  # (the common case, without the lock: a stale read only delays the line)
            return
        with self._lock:
            super().wrote()

    def _first(self, what: str) -> None:
        log.error("%s: ALARM store %s is full: %s, refused store_full until it takes writes again; "
                  "nothing stored is lost", self.who, self.store, what)
