"""A process's side of the cluster: its NATS connection, and where the frames it receives go.

A clustered process (``engine.cluster.placement``: the core, or a worker) joins the cluster through one
:class:`~engine.cluster.transport.Transport`. :class:`ClusterLink` starts it and answers for this process:

* **Inbound frames** (:meth:`ClusterLink.deliver`, already validated by the transport) go to the local actor
  they name: ``pop/<name>``, ``session/<account id>`` (a worker starts the session on an account's first
  submit or operator debit; a name that is no account id starts nothing and is counted; a session that
  cannot start because the account's data key cannot be stored - a full disk - refuses that frame's
  requests ``store_full`` at once), ``ledger`` and
  ``bridge`` in the core (the bridge is the host side, not an actor: it gets the decoded message).
* **Questions** to the core (:meth:`ClusterLink.answer_core`): a worker's ``routing`` query (the table it
  routes by) and an HTTP edge's questions (``edge_queries``, set by the engine once it runs). A worker's
  questions are answered by ``engine.cluster.shard_answers.QueryHandler``.
* **Refs to what runs elsewhere**: a worker's ledger and bridge are the core's; the core asks the POP
  shards of its workers through ``ClusterShards``, fails what it sent to a worker judged gone at once
  (``engine.cluster.pending_watch``; a late one nobody is subscribed for is gone:
  ``engine.cluster.late_probe``) and a submit that no worker answered in time
  (:class:`_ExpireUnanswered`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pykka

from engine import messages as m
from engine.cluster import protocol as cluster_protocol
from engine.cluster.cluster_shards import ClusterShards
from engine.cluster.late_probe import TICK_S as LATE_TICK_S
from engine.cluster.late_probe import LateProbe
from engine.cluster.liveness import Deadlines
from engine.cluster.nats_security import NatsSecurity
from engine.cluster.pending_watch import EVERY_S as PENDING_EVERY_S
from engine.cluster.pending_watch import PendingWatch
from engine.cluster.placement import CORE
from engine.cluster.presence import PresenceAnnouncer, PresenceBoard
from engine.cluster.shard_answers import QueryHandler
from engine.cluster.shards import LocalShards
from engine.cluster.transport import Transport
from engine.errors import MalformedMessage, OutcomeUnknown, StoreFull
from engine.ids import is_account_id
from storage.full_alarm import FullAlarm
from storage.keys import KEY_STORE

log = logging.getLogger(__name__)

# a starting worker waits at most this long for the core to answer its ask before it takes frames (the
# core answers in ms; not running, it sends nothing either)
CORE_HEARD_WITHIN_S = 2.0
UNANSWERED_AFTER_S = 10.0  # in a cluster's core, a submit unanswered for 10-20 s fails (OutcomeUnknown)
LOG_REFUSED_EVERY = 1000  # frames for an invented session name: the first is logged, then one in this many
FULL_SUMMARY_SECONDS = 60.0  # while sessions cannot start for lack of space: one summary line this often
_STARTS_A_SESSION = (m.SubmitMessage.TAG, m.SubmitMessages.TAG, m.AdjustBalance.TAG)


class ClusterLink:
    """The cluster side of one process's :class:`~actors.supervisor.Runtime`."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.refused_session_names = 0  # frames for session/<not an account id>: no session started
        # sessions that could not start: the account's data key could not be stored (the transport thread)
        self.keys_full = FullAlarm(f"{runtime.placement.node} sessions", KEY_STORE, FULL_SUMMARY_SECONDS)

    def start(self) -> Transport:
        """Join the cluster: this process's NATS connection, and refs to what runs elsewhere."""
        rt = self.runtime
        place = rt.placement
        answer = QueryHandler(LocalShards(rt)).answer if place.runs_pops else self.answer_core
        worker = not place.runs_core
        security = NatsSecurity.for_servers(place.nats, rt.settings.nats, place.nats_token_file)
        rt.transport = transport = Transport(
            list(place.nats), place.node, self.deliver, answer=answer,
            on_reconnected=rt.routing.ask_again if worker else rt.routing.push_current,
            deliveries=not worker, security=security).start()
        rt.directory.transport = transport
        if not place.runs_pops:  # the core: what the POP shards hold is asked of the workers
            rt.shards = ClusterShards(transport, place.workers, rt.topology)
            # which workers take submits: what they announce (the engine puts its supervisor's view
            # in its place for the workers it supervises: Engine.cluster)
            rt.presence = PresenceBoard(place.workers, rt.settings.engine.child_hung_after_seconds)
            transport.readiness = rt.presence.listen(transport)
            rt.shards.not_answering = rt.presence.mismatched  # no question to another protocol's
            rt.routing.push = rt.shards.use_routing
            rt.clock.every(UNANSWERED_AFTER_S, _ExpireUnanswered(rt.bridge), lambda: None)
            # what was sent to a worker then judged gone fails at once, not after that expiry
            rt.pending_watch = PendingWatch(place.workers, rt.bridge, transport,
                                            lambda: transport.readiness)
            rt.presence.on_gone = rt.pending_watch.heard_gone
            rt.clock.every(PENDING_EVERY_S, rt.pending_watch, lambda: None)
            # a worker whose beat is late and whose subject nobody holds (killed, not restarted) is
            # down at once, not after its silence (engine.cluster.late_probe; idle under --workers N)
            rt.late_probe = LateProbe(place.workers, rt.presence, transport,
                                      lambda: transport.readiness)
            rt.clock.every(LATE_TICK_S, rt.late_probe, lambda: None)
        if worker:
            rt.directory.ledger = transport.ref(CORE, "ledger")
            rt.directory.bridge = rt.bridge = transport.ref(CORE, "bridge")
            # asked before any frame is taken: the core (and the edges) then hold this worker
            # starting - what they sent to an earlier process of it fails at once, and nothing more
            # is sent until its first ready (engine.cluster.presence)
            asked_at = time.monotonic()
            rt.announcer = PresenceAnnouncer(transport, place.node,
                                             fresh_for=2 * Deadlines.of(rt.settings).beat_every,
                                             protocol=cluster_protocol.PROTOCOL).start()
            rt.routing.start_following(transport)  # the core's table, before any traffic is taken
            if not rt.announcer.wait_core(max(0.0, asked_at + CORE_HEARD_WITHIN_S - time.monotonic())):
                log.warning("presence: %s heard no answer from the core within %.0f s of asking; "
                            "taking frames anyway", place.node, CORE_HEARD_WITHIN_S,
                            extra={"node": place.node})
            transport.open_deliveries()
        return transport

    def answer_core(self, raw: bytes) -> bytes:
        """The core's answers to its workers (``routing``: the table they route by) and to its HTTP
        edges (``edge_queries``: set by the engine once it runs)."""
        if m.peek_tag(raw) == m.ShardQuery.TAG:
            try:
                q = m.decode(raw)
            except MalformedMessage:
                q = None  # (the handler answers that)
            if isinstance(q, m.ShardQuery) and q.kind == "routing":
                return self.runtime.routing.answer()
        handler = getattr(self.runtime, "edge_queries", None)
        if handler is None:
            return m.encode(m.ShardReply(False, "the core is starting", "cluster_unavailable"))
        return handler.answer(raw)

    def deliver(self, target: str, frame: bytes, msg: m.Message) -> bool:
        """A frame from another process (already validated by the transport) to the local actor it is
        for; False if this process has no such actor (counted by the transport)."""
        rt = self.runtime
        kind, _, name = target.partition("/")
        if kind == "pop":
            ref = rt.directory.pops.get(name)
        elif kind == "session" and rt.placement.runs_pops:
            ref = rt.directory.sessions.get(name)
            if ref is None and m.peek_tag(frame) in _STARTS_A_SESSION:
                if not is_account_id(name):  # an invented name must not start an actor (and a key)
                    self._refuse_session_name()
                    return False
                try:  # a submit or an operator's debit starts a session; a change can wait
                    ref = rt.start_session(name)
                except StoreFull as exc:  # its data key could not be stored: no space left
                    self._refuse_for_lack_of_space(msg, exc)
                    return True
                self.keys_full.wrote()
        elif kind == "ledger" and rt.placement.runs_core:
            ref = rt.directory.ledger
        elif kind == "bridge" and rt.placement.runs_core:
            rt.bridge.receive(msg)  # the host side, not an actor: the decoded message as it is
            return True
        else:
            ref = None
        if ref is None:
            return False
        try:
            ref.tell(frame)
        except pykka.ActorDeadError:  # stopping
            return False
        return True

    def _refuse_for_lack_of_space(self, msg: m.Message, exc: StoreFull) -> None:
        """A worker could not start an account's session (its data key, made on the first message, could
        not be stored: ``storage.keys.atomic_write``): every request of the frame is refused ``store_full``
        now, as a POP refuses a message it cannot store. Before, the ``OSError`` ended the frame in the
        transport and the customer got ``cluster_unavailable`` ~20 s later (``_ExpireUnanswered``)."""
        directory = self.runtime.directory
        items = msg.items if isinstance(msg, m.SubmitMessages) else [msg]
        for item in items:
            # a submit is answered where it came from (the core's bridge or an edge's); a debit by the core
            target = directory.reply_ref(item.reply_to) if hasattr(item, "reply_to") else directory.bridge
            target.tell(m.encode(m.SubmitRejected(item.request_id, exc.code, exc.message)))
        self.keys_full.refused(f"{len(items)} requests of an account not yet served here refused")

    def _refuse_session_name(self) -> None:
        """Count a frame for a session whose name is no account id (only a process holding the cluster's
        token can send one: a bug or an abuse); logged without the name, the first and every
        ``LOG_REFUSED_EVERY``-th, so a flood of them does not flood the log."""
        self.refused_session_names += 1  # (the transport thread only)
        if self.refused_session_names % LOG_REFUSED_EVERY == 1:
            log.warning("refused a frame for a session whose name is not an account id (%d so far): "
                        "no session started", self.refused_session_names)


class _ExpireUnanswered:
    """In a cluster's core: a submit whose worker died (or whose answer a NATS server lost) would wait
    for ever. Told by the clock every ``UNANSWERED_AFTER_S``, it fails the requests that were already
    pending the time before with ``OutcomeUnknown``: the message may have been accepted, so an
    Idempotency-Key retry answers 409 outcome unknown (``engine.http.customer_messages``) instead of
    sending it again, and the client checks its messages."""

    def __init__(self, bridge: Any) -> None:
        self.bridge = bridge
        self._seen: set[int] = set()

    def tell(self, _message: Any) -> None:
        pending = set(self.bridge.pending_ids())
        stale, self._seen = self._seen & pending, pending
        if stale:
            n = self.bridge.expire(sorted(stale), OutcomeUnknown(
                "no answer from the worker holding this account (it may have restarted); the "
                "message may or may not have been accepted: check your messages before sending it "
                "again (a retry with the same Idempotency-Key answers 409 idempotency_outcome_unknown)"))
            log.warning("cluster: %d submits got no answer in time", n)
