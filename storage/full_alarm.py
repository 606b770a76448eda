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
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class FullAlarm:
    """The full-store log lines of one writer (``who``, e.g. ``ledger``) for one store. Not thread-safe:
    one owner (an actor)."""

    def __init__(self, who: str, store: str, every: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.who, self.store, self.every, self.clock = who, store, every, clock
        self.full = False
        self._refused = 0  # writes refused since the last line
        self._next_summary = 0.0

    def refused(self, what: str) -> None:
        """A write was refused for lack of space; ``what`` says what waits (no identifiers)."""
        self._refused += 1
        now = self.clock()
        if not self.full:
            self.full = True
            self._next_summary = now + self.every
            log.error("%s: ALARM store %s is full (disk or LMDB map): %s, retried until it takes writes "
                      "again; nothing stored is lost", self.who, self.store, what)
            self._refused = 0
        elif now >= self._next_summary:
            log.error("%s: ALARM store %s still full: %d writes refused in the last %.0f s; %s",
                      self.who, self.store, self._refused, now - self._next_summary + self.every, what)
            self._next_summary = now + self.every
            self._refused = 0

    def wrote(self) -> None:
        """A write succeeded: if the store was full, say that it takes writes again (once)."""
        if not self.full:
            return
        self.full = False
        log.warning("%s: store %s takes writes again (%d writes refused since the last report)",
                    self.who, self.store, self._refused)
        self._refused = 0
