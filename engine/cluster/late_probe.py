"""A remote worker whose beat is late: is anybody still subscribed to its frames?

A ``--role core`` knows the workers on other hosts only by their announcements
(``engine.cluster.presence``). One killed (kill -9) and not started again says nothing more: it was
judged gone only once silent for ``child_hung_after_seconds`` (10 s), and what the core had sent it
waited that long. But the NATS server drops a client's subscriptions as soon as its socket closes, and
answers a request to a subject nobody subscribes to with "no responders" at once.

So :class:`LateProbe`, told by the core's clock, sends one such request (``Transport.probe``) to a
worker whose last announcement is a ``ready`` older than :data:`LATE_S` - then at most one every
:data:`EVERY_S` while it stays late, never one per beat or per submit. "No responders" marks it
``down`` at once (``PresenceBoard.heard``: what was sent to it fails, ``engine.cluster.pending_watch``)
and the core announces it down for the HTTP edges; its next ``ready`` makes it ready again. A worker
subscribed but not answering (stopped, stuck, its host unreachable without a closed socket) lets the
probe time out: it still falls to the silence verdict. A probe is an empty envelope - a worker that
takes it delivers nothing - and only a late worker's is sent.

Only where the board decides readiness (the core of ``--role core``): the core of ``--workers N``
sees its children exit itself (``engine.cluster.local``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine.cluster.presence import DOWN, PresenceBoard, announce_down

log = logging.getLogger(__name__)

LATE_S = 2.0  # a worker beats at most a second apart: two missed beats make a probe worth its request
EVERY_S = 1.0  # while it stays late: at most one probe this often (one at a time)
TIMEOUT_S = 1.0  # "no responders" comes at once; a subscriber that does not answer takes this long
TICK_S = 0.25  # how often the core's clock tells the probe to look


class LateProbe:
    """Probes the workers of ``workers`` that ``board`` heard ready more than :data:`LATE_S` ago
    (and not yet silent) through ``transport``, while ``readiness_of()`` is ``board``."""

    def __init__(self, workers: Iterable[str], board: PresenceBoard, transport: Any,
                 readiness_of: Callable[[], Any], clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = tuple(workers)
        self.board, self.transport = board, transport
        self._readiness_of = readiness_of
        self._clock = clock
        self._probing: set[str] = set()  # nodes whose probe has not come back (transport thread)
        self._last_sent: dict[str, float] = {}
        self.counts = {"sent": 0, "nobody": 0, "taken": 0}

    def tell(self, _message: Any) -> None:  # (actors.clock.Clock.every)
        try:
            self.check()
        except Exception:  # (one bad round must not end the probing, nor the clock that tells it)
            log.exception("late probe: a check failed")

    def check(self) -> None:
        if self._readiness_of() is not self.board:
            return
        now = self._clock()
        for node in self.workers:
            since = self.board.ready_since(node)
            if since is None or not LATE_S <= now - since < self.board.silent_after:
                continue
            if node in self._probing or now - self._last_sent.get(node, -EVERY_S) < EVERY_S:
                continue
            self._probing.add(node)
            self._last_sent[node] = now
            if self.transport.probe(node, TIMEOUT_S, lambda nobody, n=node, s=since:
                                    self._came_back(n, s, nobody)):
                self.counts["sent"] += 1
            else:  # (the link is down: tried again next tick)
                self._probing.discard(node)
                del self._last_sent[node]

    def _came_back(self, node: str, since: float, nobody: bool) -> None:
        """On the transport thread, as ``PresenceBoard.heard``: nothing heard of ``node`` since the
        probe was sent (its ``since`` is still its last ready) and nobody subscribed - it is down."""
        try:
            self._probing.discard(node)
            self.counts["nobody" if nobody else "taken"] += 1
            if not nobody or self.board.ready_since(node) != since:
                return
            log.warning("presence: worker %s is late and nobody takes its frames (no responders): "
                        "down", node, extra={"node": node, "late_seconds":
                                             round(self._clock() - since, 1)})
            self.board.heard(node, DOWN)
            announce_down(self.transport, node)  # (the edges: they hear no probe of their own)
        except Exception:
            log.exception("late probe: a probe's answer was not taken")
