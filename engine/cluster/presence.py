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
  says ``stopping`` and ``down`` for a worker it supervises that exited: :func:`announce_down`). It is
  ready from its first ``ready`` until it says ``stopping``, asks (it started again: ``starting``;
  a worker asks before it subscribes to its frames and waits, at most 2 s, for the core's ``here``:
  the core never hands a submit to a process it has not heard start, ``actors.cluster_link``),
  is announced ``down`` or is silent for ``silent_after`` seconds
  (``[engine] child_hung_after_seconds``, 10 s: the deadline after which a supervised worker is hung, so
  a busy machine that delays a few beats refuses nothing). A process that starts listening asks every
  worker to announce itself at once (``ask``), so it does not refuse submits for a beat's time.

**Protocol** (``engine.cluster.protocol``): every announcement carries its sender's cluster protocol. A
worker of another protocol than the listener's is refused (``protocol 3, core 4``) whatever it says,
with one ALARM line when it is first heard so; a worker that starts and an edge that starts ``ask``, and
the core answers every ``ask`` with ``here`` (its own protocol), so each worker and edge learns the
core's and logs an ALARM line of its own when it differs (:class:`CoreProtocolWatch`). Only a worker's
own ``ready`` sets its protocol (the core's ``stopping`` on behalf of an exited worker carries the
core's).

Not on the hot path: NATS's "no responders" answer (a *request* to a subject nobody subscribes to fails
at once, ``NoRespondersError``). Submits are publishes, many in one NATS message; a request per batch
would add a round trip and an answer to every batch, and it would still say nothing about a worker that
is subscribed but stopped or stuck, to whose socket the server keeps delivering. It is asked only of a
worker whose beat is late (``engine.cluster.late_probe``, the core of ``--role core``): one killed and
not started again is then ``down`` within about 3 s instead of silent after 10.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine import messages as m
from engine.cluster.placement import CORE
from engine.cluster.protocol import PROTOCOL, mismatch
from engine.errors import MalformedMessage

log = logging.getLogger(__name__)

SUBJECT = "presence"  # <prefix>.presence (Transport.announce / listen)
READY, STOPPING, ASK, HERE = "ready", "stopping", "ask", "here"
# a worker's state as a listener keeps it but no worker announces: its ``ask`` (a worker asks once, as
# it starts: any earlier process of it is gone) makes it STARTING until its next ``ready``; DOWN is
# what the core announces for a supervised worker that exited (after a STOPPING, for listeners that do
# not know DOWN). Either means what was sent to it before will not be answered
# (``engine.cluster.pending_watch``); a STOPPING worker still answers what it took.
STARTING, DOWN = "starting", "down"
_KEPT = (READY, STOPPING, STARTING, DOWN)
NOT_SEEN, SILENT = "not seen", "silent"  # verdicts of a worker never heard of, or not heard of lately


class PresenceBoard:
    """What the workers last announced, as one listener (the core, an HTTP edge) heard it.

    ``heard`` is called on the transport thread, ``refusal`` on any thread (every remote submit):
    each verdict is one dict entry replaced whole, so a reader never sees half of one. ``protocol``:
    the listener's own (``engine.cluster.protocol``), ``me`` its role as the refusal names it (``core``,
    ``edge``); ``alarms``: log the ALARM line of a worker of another protocol (off where the supervisor's
    view reports it: ``Engine.cluster``)."""

    def __init__(self, workers: Iterable[str], silent_after: float,
                 clock: Callable[[], float] = time.monotonic, *, protocol: int = PROTOCOL,
                 me: str = "core") -> None:
        self.workers = tuple(workers)
        self.silent_after = silent_after
        self.protocol, self.me = protocol, me
        self.alarms = True
        self.core = CoreProtocolWatch(me, protocol) if me != "core" else None
        self._clock = clock
        self._transport: Any = None
        self._last: dict[str, tuple[str, float]] = {}  # node -> (state announced, when heard)
        self._ready_until: dict[str, float] = {}  # node -> until when it counts as ready (hot path)
        self._protocol: dict[str, int] = {}  # node -> the protocol its last "ready" carried
        # told (on the transport thread: it must not block) the node of a worker heard gone - STARTING
        # or DOWN - at once: it may be back a few ms later (engine.cluster.pending_watch)
        self.on_gone: Callable[[str], None] | None = None
        self._all_heard = threading.Event()

    def heard(self, node: str, state: str, now: float | None = None, *,
              protocol: int | None = None) -> bool:
        """A worker's announcement (``protocol``: the one it carried; None: the listener's own), or
        :data:`STARTING` for its ``ask``; False (ignored) for a node that is no worker of the cluster
        or a state that is not one."""
        if node not in self.workers or state not in _KEPT:
            return False
        now = self._clock() if now is None else now
        other = None
        if state == READY:  # (a "stopping" may come from the core on the worker's behalf)
            other = self._protocol_heard(node, self.protocol if protocol is None else protocol)
        self._last[node] = (state, now)
        self._ready_until[node] = now + self.silent_after if state == READY and not other else 0.0
        if len(self._last) == len(self.workers):
            self._all_heard.set()
        if state in (STARTING, DOWN) and self.on_gone is not None:
            self.on_gone(node)
        return True

    def _protocol_heard(self, node: str, protocol: int) -> str | None:
        """Keep ``node``'s protocol; log when it turns to another than ours (ALARM) or back."""
        before = self._protocol.get(node)
        self._protocol[node] = protocol
        other = mismatch(protocol, self.protocol, self.me)
        if protocol != before and self.alarms:
            if other:
                log.error("presence: ALARM worker %s speaks cluster protocol %d, this %s %d: it is "
                          "handed no work (submits for its accounts refused, no query sent) until a "
                          "worker of protocol %d takes its place (README: upgrading a cluster)", node,
                          protocol, self.me, self.protocol, self.protocol,
                          extra={"node": node, "protocol": protocol, "own_protocol": self.protocol})
            elif before is not None:
                log.warning("presence: worker %s speaks cluster protocol %d again, as this %s", node,
                            protocol, self.me, extra={"node": node, "protocol": protocol})
        return other

    def refusal(self, node: str) -> str | None:
        """Why ``node`` cannot take a submit now (``not seen``, ``stopping``, ``silent``, ``protocol 3,
        core 4``), or None."""
        if self._clock() < self._ready_until.get(node, 0.0):
            return None
        return self.state_of(node) if node in self.workers else None  # (no worker: not ours to judge)

    def ready_since(self, node: str) -> float | None:
        """When ``node``'s last announcement, a ``ready``, was heard (the board's clock); None if its
        last was anything else or none (``engine.cluster.late_probe``)."""
        last = self._last.get(node)
        return last[1] if last is not None and last[0] == READY else None

    def mismatched(self, node: str) -> str | None:
        """``protocol 3, core 4`` if ``node`` last announced itself ready with another protocol than
        ours, else None: the core asks such a worker nothing (``ClusterShards.not_answering``)."""
        protocol = self._protocol.get(node)
        return None if protocol is None else mismatch(protocol, self.protocol, self.me)

    def state_of(self, node: str, now: float | None = None) -> str:
        """``ready``, ``stopping``, ``starting`` (it asked: started again), ``down`` (the core saw it
        exit), ``silent`` (ready, then not heard of for ``silent_after``), ``not seen`` or, for one
        ready with another protocol than ours, ``protocol 3, core 4``."""
        last = self._last.get(node)
        if last is None:
            return NOT_SEEN
        state, at = last
        now = self._clock() if now is None else now
        if state == READY and now - at >= self.silent_after:
            return SILENT
        if state == READY:
            return self.mismatched(node) or READY
        return state

    def status(self) -> list[dict[str, Any]]:
        """Every worker as ``/v1/stats`` shows a supervised one (``pid``, ``restarts`` unknown here):
        ``alive`` and ``ready`` while it announces itself ready (with our protocol), ``hung`` once it
        went silent, ``state``, ``silent_seconds`` (since its last announcement; None if never heard),
        ``protocol`` (its last ``ready``'s; None if none yet) and ``protocol_mismatch``."""
        now = self._clock()
        out = []
        for node in self.workers:
            state = self.state_of(node, now)
            last = self._last.get(node)
            out.append({"node": node, "remote": True, "state": state, "pid": None,
                        "alive": state == READY, "ready": state == READY, "hung": state == SILENT,
                        "silent_seconds": None if last is None else round(now - last[1], 1),
                        "restarts": None, "hung_kills": None,
                        "protocol": self._protocol.get(node),
                        "protocol_mismatch": self.mismatched(node)})
        return out

    def wait_all_heard(self, timeout: float) -> bool:
        """Wait until every worker was heard of at least once (at most ``timeout`` s)."""
        return self._all_heard.wait(timeout)

    def listen(self, transport: Any) -> PresenceBoard:
        """Take the announcements ``transport`` receives, and ask every worker to announce itself now."""
        self._transport = transport
        transport.listen(SUBJECT, self._on_announcement)
        transport.announce(SUBJECT, m.encode(m.WorkerPresence(transport.node, ASK, self.protocol)))
        return self

    def _on_announcement(self, raw: bytes) -> None:
        try:
            msg = m.decode(raw)
        except MalformedMessage:
            log.warning("presence: dropped a malformed announcement (%d bytes)", len(raw))
            return
        if not isinstance(msg, m.WorkerPresence):
            return
        if msg.node == CORE:  # the core's ask or here (an edge: the core says its protocol)
            if self.core is not None and msg.state in (ASK, HERE):
                self.core.saw(msg.protocol)
            return
        if msg.state == ASK:
            if msg.node == self._transport.node:  # (our own question)
                return
            if self.core is None:  # the core: say ours
                self._transport.announce(SUBJECT, m.encode(m.WorkerPresence(CORE, HERE, self.protocol)))
            self.heard(msg.node, STARTING)  # a worker (re)started: not subscribed until its "ready"
            return
        self.heard(msg.node, msg.state, protocol=msg.protocol)


class CoreProtocolWatch:
    """A worker's or edge's view of the core's protocol (its ``ask`` and ``here`` announcements): an
    ALARM line when the core speaks another protocol than this process, a line when it agrees again.
    The process goes on (the core refuses to hand it work); the line is for its operator, in this
    process's own output."""

    def __init__(self, me: str, protocol: int) -> None:
        self.me, self.protocol = me, protocol
        self.core_protocol: int | None = None

    def saw(self, protocol: int) -> str | None:
        """The core announced ``protocol``: the mismatch text (``protocol 1, worker 2``), or None."""
        before, self.core_protocol = self.core_protocol, protocol
        other = mismatch(protocol, self.protocol, self.me)
        if protocol != before:
            if other:
                log.error("presence: ALARM the core speaks cluster protocol %d, this %s %d: the core "
                          "hands it no work; run the same smsroute version on every process of the "
                          "cluster (README: upgrading a cluster)", protocol, self.me, self.protocol,
                          extra={"core_protocol": protocol, "own_protocol": self.protocol})
            elif before is not None:
                log.warning("presence: the core speaks cluster protocol %d again, as this %s",
                            protocol, self.me, extra={"core_protocol": protocol})
        return other


def announce_down(transport: Any, node: str) -> None:
    """Say for worker ``node`` what it could not say itself: the supervisor saw it exit (a crash, a
    kill). The HTTP edges then refuse its submits at once instead of after ``silent_after`` of
    silence, and fail what they sent to it (``DOWN``; ``STOPPING`` first, for an edge of a version
    that knows only that); its next spawn announces itself ready once it is."""
    transport.announce(SUBJECT, m.encode(m.WorkerPresence(node, STOPPING, PROTOCOL)))
    transport.announce(SUBJECT, m.encode(m.WorkerPresence(node, DOWN, PROTOCOL)))


class PresenceAnnouncer:
    """A worker's announcements: ``ready`` after each heartbeat round that beat (:meth:`ready`, the
    heartbeat's ``on_beat``), ``stopping`` once (:meth:`stopping`), and its last ``ready`` again when a
    listener asks - only if that was less than ``fresh_for`` seconds ago (a worker whose actors stopped
    answering must not be called ready by its NATS loop, which still runs). Each carries ``protocol``
    (the worker's: ``engine.cluster.protocol.PROTOCOL``); it asks once at its start, so the core says
    its own (``here``), and logs an ALARM line when that differs (:class:`CoreProtocolWatch`)."""

    def __init__(self, transport: Any, node: str, fresh_for: float,
                 clock: Callable[[], float] = time.monotonic, *, protocol: int = PROTOCOL) -> None:
        self.transport, self.node, self.fresh_for = transport, node, fresh_for
        self.protocol = protocol
        self.core = CoreProtocolWatch("worker", protocol)
        self._clock = clock
        self._ready_at: float | None = None
        self._stopping = False
        self._ready = m.encode(m.WorkerPresence(node, READY, protocol))
        self._core_heard = threading.Event()  # the core said ask or here after our start

    def start(self) -> PresenceAnnouncer:
        """Listen, and ask (the listeners hold this worker ``starting``: any earlier process of it is
        gone). Called before the worker subscribes to its frames (``actors.cluster_link``)."""
        self.transport.listen(SUBJECT, self._on_ask)
        self.transport.announce(SUBJECT, m.encode(m.WorkerPresence(self.node, ASK, self.protocol)))
        return self

    def wait_core(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until the core answered an ask with ``here`` (or asked itself):
        it answers after it marked the asker ``starting`` and failed what it had sent to the earlier
        process, so a worker that subscribes to its frames only then takes none the core meant for
        that process. False if the core said nothing in time (not running: nothing is sent either)."""
        return self._core_heard.wait(timeout)

    def ready(self) -> None:
        if self._stopping:
            return
        self._ready_at = self._clock()
        self.transport.announce(SUBJECT, self._ready)

    def stopping(self, timeout: float = 1.0) -> None:
        """Say so before the worker stops taking frames (waits at most ``timeout`` for the server to
        have it): its submits are refused from then on instead of being sent into the void."""
        self._stopping = True
        self.transport.announce(SUBJECT, m.encode(m.WorkerPresence(self.node, STOPPING, self.protocol)),
                                wait=timeout)

    def _on_ask(self, raw: bytes) -> None:
        if m.peek_tag(raw) != m.WorkerPresence.TAG:
            return
        try:
            msg = m.decode(raw)
        except MalformedMessage:
            return
        if msg.node == CORE and msg.state in (ASK, HERE):
            self.core.saw(msg.protocol)
            self._core_heard.set()
        if self._stopping or self._ready_at is None or msg.node == self.node:
            return
        if msg.state == ASK and self._clock() - self._ready_at < self.fresh_for:
            self.transport.announce(SUBJECT, self._ready)
