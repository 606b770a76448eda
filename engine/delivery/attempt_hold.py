"""A POP's carrier attempts held while its status changes cannot be written, and how the hold ends.

Why: a carrier's acknowledgement - its message id, which receipts are matched by - that cannot be stored is
lost if the engine stops before space returns, and the message is sent again after the restart. So a
commit that fails holds the POP's attempts (:meth:`Dispatcher.hold`) until status changes are written
again: by the next commit that succeeds (:meth:`AttemptHold.committed`) or, when nothing is left to commit,
by a status-sized probe write on the tick (:meth:`AttemptHold.tick`, ``storage.space_watch``). The latter
is the only way out of a hold that a commit of new messages only left behind, when it failed for a reason
other than space (it is not written again without them: ``actors.group_commit``).

Logging: one ALARM when a hold starts and one line when it ends, at most one ALARM a minute
(:data:`HOLD_LOG_SECONDS`): on a disk that is just full, holds and resumes may alternate with every commit;
the next ALARM counts the holds in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("actors.pop")  # (the POP's lines, as before this module)
HOLD_LOG_SECONDS = 60.0  # at most one "carrier attempts held" ALARM this often


class AttemptHold:
    """The hold of one POP's carrier attempts: started by a failed commit, ended by a written one."""

    def __init__(self, pop: str, dispatcher: Any, space: Any, now: Callable[[], float],
                 counters: dict[str, int]) -> None:
        self.pop, self.dispatcher, self.space, self.now = pop, dispatcher, space, now
        self.counters = counters  # the POP's: attempt_hold_starts
        self._logged = False  # the current hold was logged (so its end is)
        self._next_log = 0.0  # monotonic: no hold ALARM before then
        self._unlogged = 0

    def commit_failed(self, why: str) -> None:
        """Status changes cannot be written: start no carrier attempt until they can."""
        d = self.dispatcher
        if d.holding:
            return
        d.hold()
        self.counters["attempt_hold_starts"] += 1
        now = self.now()
        self._logged = now >= self._next_log
        if not self._logged:
            self._unlogged += 1
            return
        self._next_log = now + HOLD_LOG_SECONDS
        log.error("pop %s: ALARM carrier attempts held: status changes cannot be written (%s), so a "
                  "carrier's acknowledgement could not be kept; %d messages wait (%d more holds since "
                  "the last report)", self.pop, why, len(d.held), self._unlogged)
        self._unlogged = 0

    def committed(self) -> None:
        """A commit was written: status changes are written again."""
        if self.dispatcher.holding:
            self._resume()

    def tick(self, nothing_to_commit: bool) -> None:
        """With nothing left to commit, no commit can end the hold: a probe write does."""
        if self.dispatcher.holding and nothing_to_commit and self.space.takes_status_changes():
            self._resume()

    def _resume(self) -> None:
        resumed = self.dispatcher.resume()
        if self._logged:
            log.warning("pop %s: status changes written again; %d held carrier attempts resume",
                        self.pop, resumed)
