"""The log of something retried until it works: one line when it starts failing, a summary now and then,
one line when it works again.

Why: the HTTP layer reads the webhook outboxes once at start and retries every second while they cannot
be read (a cluster's worker hung, or of another protocol); it logged one warning per attempt - 3,600
lines an hour for as long as the worker stayed away - which buried every other line and said nothing
new after the first. :class:`RetryLog` serves any such retry: the first failure, then at most one
summary every ``every`` seconds with the attempts that failed since the last line, and one line when it
succeeds. ``storage.full_alarm.FullAlarm`` (a writer retrying into a full store) is this with its own
words.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RetryLog:
    """The log lines of one retried operation. ``failing`` says what is wrong (``"webhooks: outboxes
    not readable yet"``), ``recovered`` what is right again (``"webhooks: outboxes readable"``); a
    failure's ``reason`` is a stable code, never an identifier. Not thread-safe: one owner. A subclass
    words the three lines its own way (:meth:`_first`, :meth:`_summary`, :meth:`_recovered`;
    ``storage.full_alarm.FullAlarm``) and keeps this one account of when to say them."""

    def __init__(self, log: logging.Logger, failing: str, recovered: str, every: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.failing_text, self.recovered_text = log, failing, recovered
        self.every, self.clock = every, clock
        self.failing = False
        self._since = 0.0  # when it started failing
        self._failed = 0  # attempts failed since the last line
        self._failed_in_all = 0
        self._next_summary = 0.0

    def failed(self, reason: str) -> None:
        """An attempt failed; it is retried."""
        now = self.clock()
        self._failed += 1
        self._failed_in_all += 1
        if not self.failing:
            self.failing, self._since = True, now
            self._next_summary = now + self.every
            self._failed = 0
            self._first(reason)
        elif now >= self._next_summary:
            self._summary(reason, now - self._since, self._failed, now - self._next_summary + self.every)
            self._next_summary = now + self.every
            self._failed = 0

    def succeeded(self) -> None:
        """An attempt succeeded: if it was failing, say so once."""
        if not self.failing:
            return
        self._recovered(self.clock() - self._since, self._failed, self._failed_in_all)
        self.failing = False
        self._failed = self._failed_in_all = 0

    # --- the lines -----------------------------------------------------------------------------------

    def _first(self, reason: str) -> None:
        self.log.warning("%s (%s); retrying", self.failing_text, reason)

    def _summary(self, reason: str, failing_for: float, failed: int, window: float) -> None:
        """``failed`` attempts in the last ``window`` seconds, failing for ``failing_for``."""
        self.log.warning("%s (%s) after %.0f s; still retrying: %d attempts failed in the last %.0f s",
                         self.failing_text, reason, failing_for, failed, window)

    def _recovered(self, failing_for: float, since_last_line: int, failed_in_all: int) -> None:
        self.log.warning("%s after %.0f s (%d attempts failed)", self.recovered_text, failing_for,
                         failed_in_all)
