"""Which workers a submit may be handed to now, and the announcements that say so over NATS.

A submit goes to its account's worker as a NATS *publish* (``engine.cluster.transport``, batched with the
other frames for that worker). NATS tells a publisher nothing when nobody receives it: a worker that is not
subscribed yet (starting, or started again after a crash or a kill) or that does not run (stopped,
stuck) took it into the void, and the core learned of it only when it failed the request as unanswered
10-20 s later (``actors.cluster_link._ExpireUnanswered``) - the client waited that long for a 503, and
the message was lost (or, for a stopped worker that went on, accepted after the client was told it may
not have been). So the process that hands a submit to a worker (the core; an HTTP edge) first asks
whether that worker is ready - attribute and dict reads, no round trip - and otherwise refuses the submit
at once (``engine.errors.WorkerUnavailable``: 503 ``cluster_unavailable`` with ``Retry-After``, nothing
sent, nothing reserved or billed).

The verdict comes from one of two sources (each an object with ``refusal(node) -> str | None``, set as
``Transport.readiness``):

* A worker this process supervises (``smsroute run --workers N``): the supervisor's own view of the
  spawn (``engine.cluster.local.LocalCluster.refusal``: down, starting, hung).
* Any other worker (``smsroute run --role core`` with workers on other hosts; every HTTP edge): what the
  workers announce on ``<prefix>.presence`` (:class:`PresenceBoard`). A worker announces ``ready`` after
  every heartbeat round in which its actors and NATS loop answered (``engine.cluster.heartbeat``, at
  most a second apart; only once it is subscribed), and ``stopping`` when it is told to stop (the core
  says ``stopping`` for a worker it supervises that exited: :func:`announce_down`). It is
  ready from its first ``ready`` until it says ``stopping`` or is silent for ``silent_after`` seconds
  (``[engine] child_hung_after_seconds``, 10 s: the deadline after which a supervised worker is hung, so
  a busy machine that delays a few beats refuses nothing). A process that starts listening asks every
  worker to announce itself at once (``ask``), so it does not refuse submits for a beat's time.

Not chosen: NATS's "no responders" answer (a *request* to a subject nobody subscribes to fails at once,
``NoRespondersError``). Submits are publishes, many in one NATS message; a request per batch would add a
round trip and an answer to the hot path, and it would still say nothing about a worker that is
subscribed but stopped or stuck, to whose socket the server keeps delivering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine import messages as m
from engine.errors import MalformedMessage

log = logging.getLogger(__name__)

SUBJECT = "presence"  # <prefix>.presence (Transport.announce / listen)
READY, STOPPING, ASK = "ready", "stopping", "ask"
NOT_SEEN, SILENT = "not seen", "silent"  # verdicts of a worker never heard of, or not heard of lately


class PresenceBoard:
    """What the workers last announced, as one listener (the core, an HTTP edge) heard it.

    ``heard`` is called on the transport thread, ``refusal`` on any thread (every remote submit):
    each verdict is one dict entry replaced whole, so a reader never sees half of one."""

    def __init__(self, workers: Iterable[str], silent_after: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = tuple(workers)
        self.silent_after = silent_after
        self._clock = clock
        self._last: dict[str, tuple[str, float]] = {}  # node -> (state announced, when heard)
        self._ready_until: dict[str, float] = {}  # node -> until when it counts as ready (hot path)
        self._all_heard = threading.Event()

    def heard(self, node: str, state: str, now: float | None = None) -> bool:
        """A worker's announcement; False (ignored) for a node that is no worker of the cluster or a
        state that is not one."""
        if node not in self.workers or state not in (READY, STOPPING):
            return False
        now = self._clock() if now is None else now
        self._last[node] = (state, now)
        self._ready_until[node] = now + self.silent_after if state == READY else 0.0
        if len(self._last) == len(self.workers):
            self._all_heard.set()
        return True

    def refusal(self, node: str) -> str | None:
        """Why ``node`` cannot take a submit now (``not seen``, ``stopping``, ``silent``), or None."""
        if self._clock() < self._ready_until.get(node, 0.0):
            return None
        return self.state_of(node) if node in self.workers else None  # (no worker: not ours to judge)

    def state_of(self, node: str, now: float | None = None) -> str:
        """``ready``, ``stopping``, ``silent`` (ready, then not heard of for ``silent_after``) or ``not
        seen``."""
        last = self._last.get(node)
        if last is None:
            return NOT_SEEN
        state, at = last
        now = self._clock() if now is None else now
        if state == READY and now - at >= self.silent_after:
            return SILENT
        return state

    def status(self) -> list[dict[str, Any]]:
        """Every worker as ``/v1/stats`` shows a supervised one (``pid``, ``restarts`` unknown here):
        ``alive`` and ``ready`` while it announces itself ready, ``hung`` once it went silent, and
        ``state`` and ``silent_seconds`` (since its last announcement; None if never heard)."""
        now = self._clock()
        out = []
        for node in self.workers:
            state = self.state_of(node, now)
            last = self._last.get(node)
            out.append({"node": node, "remote": True, "state": state, "pid": None,
                        "alive": state == READY, "ready": state == READY, "hung": state == SILENT,
                        "silent_seconds": None if last is None else round(now - last[1], 1),
                        "restarts": None, "hung_kills": None})
        return out

    def wait_all_heard(self, timeout: float) -> bool:
        """Wait until every worker was heard of at least once (at most ``timeout`` s)."""
        return self._all_heard.wait(timeout)

    def listen(self, transport: Any) -> PresenceBoard:
        """Take the announcements ``transport`` receives, and ask every worker to announce itself now."""
        transport.listen(SUBJECT, self._on_announcement)
        transport.announce(SUBJECT, m.encode(m.WorkerPresence(transport.node, ASK)))
        return self

    def _on_announcement(self, raw: bytes) -> None:
        try:
            msg = m.decode(raw)
        except MalformedMessage:
            log.warning("presence: dropped a malformed announcement (%d bytes)", len(raw))
            return
        if isinstance(msg, m.WorkerPresence) and msg.state != ASK:
            self.heard(msg.node, msg.state)


def announce_down(transport: Any, node: str) -> None:
    """Say for worker ``node`` what it could not say itself: the supervisor saw it exit (a crash, a
    kill). The HTTP edges then refuse its submits at once instead of after ``silent_after`` of
    silence; its next spawn announces itself ready once it is."""
    transport.announce(SUBJECT, m.encode(m.WorkerPresence(node, STOPPING)))


class PresenceAnnouncer:
    """A worker's announcements: ``ready`` after each heartbeat round that beat (:meth:`ready`, the
    heartbeat's ``on_beat``), ``stopping`` once (:meth:`stopping`), and its last ``ready`` again when a
    listener asks - only if that was less than ``fresh_for`` seconds ago (a worker whose actors stopped
    answering must not be called ready by its NATS loop, which still runs)."""

    def __init__(self, transport: Any, node: str, fresh_for: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transport, self.node, self.fresh_for = transport, node, fresh_for
        self._clock = clock
        self._ready_at: float | None = None
        self._stopping = False
        self._ready = m.encode(m.WorkerPresence(node, READY))

    def start(self) -> PresenceAnnouncer:
        self.transport.listen(SUBJECT, self._on_ask)
        return self

    def ready(self) -> None:
        if self._stopping:
            return
        self._ready_at = self._clock()
        self.transport.announce(SUBJECT, self._ready)

    def stopping(self, timeout: float = 1.0) -> None:
        """Say so before the worker stops taking frames (waits at most ``timeout`` for the server to
        have it): its submits are refused from then on instead of being sent into the void."""
        self._stopping = True
        self.transport.announce(SUBJECT, m.encode(m.WorkerPresence(self.node, STOPPING)),
                                wait=timeout)

    def _on_ask(self, raw: bytes) -> None:
        if m.peek_tag(raw) != m.WorkerPresence.TAG or self._stopping or self._ready_at is None:
            return
        try:
            msg = m.decode(raw)
        except MalformedMessage:
            return
        if msg.state == ASK and self._clock() - self._ready_at < self.fresh_for:
            self.transport.announce(SUBJECT, self._ready)
