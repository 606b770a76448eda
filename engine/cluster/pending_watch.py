"""Fail at once what waits for a worker that will not answer it (killed, restarted, hung).

A process that hands submits to workers (the core; an HTTP edge) refuses a NEW submit for a worker
that is not ready (``engine.cluster.presence``). But a submit sent in the moment before the worker died
(the supervisor sees an exit within its 0.2 s round; a remote worker is judged by its announcements)
used to wait for ``_ExpireUnanswered`` - 10-20 s in the core, 15-30 s in an edge - and a question the
core asked it (a status read, an export, an action) its whole time-out (up to 30 s). The answer never
comes: the process that would give it is gone.

So every remote hand-off notes the worker it went to (``Bridge.sent_to``), and :class:`PendingWatch`
reads the same readiness verdicts the submits are refused by (``Transport.readiness``), every
``EVERY_S``. When a worker turns not ready for a reason that means it will not answer what it already
has - or, at once, when a board of announcements hears it gone (``PresenceBoard.on_gone``: a worker
restarted on another host asks as it starts, then beats within milliseconds, between two rounds) - it
fails:

* the submits sent to it with ``OutcomeUnknown`` (503 ``cluster_unavailable``): the frame went out and
  may have been accepted and committed before the worker died, so the client must not be told nothing
  was sent - an ``Idempotency-Key`` stays pending and a retry with it answers 409
  ``idempotency_outcome_unknown`` instead of sending (and billing) the message twice;
* the questions it was asked (``Transport.give_up_on``: 503 ``cluster_unavailable``) - all of them
  for a worker that exited, restarted or changed protocol; only the reads for one that is hung
  (``hung``, ``silent``), which may still wake and act on an action (never reported failed and done).

Not for ``stopping``: a worker that says so on SIGTERM (``PresenceAnnouncer.stopping``) still answers
what it took before it stops; if it does not, its restart (``starting``) fails what is left, or the
unanswered expiry does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine.cluster.presence import STOPPING
from engine.errors import OutcomeUnknown

log = logging.getLogger(__name__)

EVERY_S = 0.1  # how often the verdicts are read (a dict read per worker)
SETTLE_S = 1.0  # how long after a worker turned gone a request still noted to it is failed
HUNG = ("hung", "silent")  # verdicts of a worker that may still wake (LocalCluster; PresenceBoard)


def gone_error() -> OutcomeUnknown:
    """What a client whose submit went to a worker that then died is told (names no worker)."""
    return OutcomeUnknown(
        "the worker holding this account stopped answering (killed, restarted or hung) after the "
        "message was sent to it; the message may or may not have been accepted: check your messages "
        "before sending it again (a retry with the same Idempotency-Key answers 409 "
        "idempotency_outcome_unknown)")


class PendingWatch:
    """Reads ``readiness_of()`` (an object with ``refusal(node) -> str | None``; None: no verdicts)
    for each worker of ``workers`` every :data:`EVERY_S` - told by the core's clock (``tell``), or on
    a thread of its own (``start``: an HTTP edge) - and fails what ``bridge`` and ``transport`` (None:
    the submits only) still wait for from one judged gone."""

    def __init__(self, workers: Iterable[str], bridge: Any, transport: Any,
                 readiness_of: Callable[[], Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = tuple(workers)
        self.bridge, self.transport = bridge, transport
        self._readiness_of = readiness_of
        self._clock = clock
        self._gone_since: dict[str, float] = {}  # node -> when it was first seen gone (this time)
        self.failed = {"submits": 0, "questions": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="smsroute-pending-watch")

    def start(self) -> PendingWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(EVERY_S):
            self.tell(None)

    def tell(self, _message: Any) -> None:  # (actors.clock.Clock.every)
        try:
            self.check()
        except Exception:  # (one bad round must not end the watch, nor the clock that tells it)
            log.exception("pending watch: a check failed")

    def check(self) -> None:
        """One round: each worker gone now fails what was noted to it, in the round it turned gone
        and in those of the next ``SETTLE_S`` (a submit noted just as the verdict changed)."""
        readiness = self._readiness_of()
        if readiness is None:
            return
        now = self._clock()
        for node in self.workers:
            why = readiness.refusal(node)
            if why is None or why == STOPPING:
                self._gone_since.pop(node, None)
                continue
            since = self._gone_since.setdefault(node, now)
            if now - since <= SETTLE_S:
                self.fail(node, why)

    def heard_gone(self, node: str) -> None:
        """``PresenceBoard.on_gone``: ``node`` asked as it started again, or was announced down. What
        was noted to it before could only reach a process that is gone or not subscribed yet; what is
        noted after is refused until its ``ready``, or goes to its new process."""
        self.fail(node, "restarted or down")

    def fail(self, node: str, why: str) -> None:
        """Fail the submits sent to ``node`` and the questions it was asked (only the reads if it is
        hung: ``why``), logging how many (never which: no account or message id in a log)."""
        submits = self.bridge.fail_sent_to(node, gone_error())
        questions = 0
        if self.transport is not None:
            questions = self.transport.give_up_on(node, reads_only=why in HUNG)
        if submits or questions:
            self.failed["submits"] += submits
            self.failed["questions"] += questions
            log.warning("cluster: worker %s is %s: %d submits sent to it failed as outcome unknown, "
                        "%d questions to it failed", node, why, submits, questions,
                        extra={"node": node, "state": why, "submits": submits,
                               "questions": questions})
