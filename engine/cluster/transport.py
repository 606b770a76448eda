"""The NATS transport: the same actor messages, between processes and hosts.

Every process of a cluster (the core and each worker, see ``engine.cluster.placement``) holds one NATS
connection, run by :class:`Transport` on an asyncio (uvloop) thread of its own, and subscribes to one
subject, ``<prefix>.<node>``. An actor anywhere in the process sends to an actor of another process with
``RemoteRef.tell(frame)`` - the same msgpack frame it would ``tell`` a local pykka ref. The transport adds
the target's name (``"ledger"``, ``"pop/fra"``, ``"session/acc_..."``) and batches: every frame told for a
node before the transport thread next runs goes out as ONE NATS message, an envelope
``[[target, frame], ...]``.

**Validated on entry.** A frame that arrives is decoded with :func:`engine.messages.decode` - every field
checked - before it is told to a local actor; an envelope that does not decode, a frame that does not, or
a target this process does not know is counted and dropped (``stats()``), never delivered.

**At most once, by design.** Core NATS delivers a message at most once: a publish while the connection is
down is kept in the client's reconnect buffer (bounded, ``pending_bytes``) and sent after it reconnects,
but a server that dies with messages in flight loses them. What must not be lost is therefore never left
to the transport alone: a submit is answered only after its durable commit (no answer: the client
retries), and debits and refunds stay owed in the sending POP's store until the ledger confirms them
(``storage.owed_debits``) - an outbox on the sender's own fsynced disk, which is also why no JetStream
stream is needed on the message path.

**Requests are refused, not buffered, and never acted on late.** ``request`` (the core asking workers:
suspend a carrier, place or release a hold, erase an account, take a routing table, exports; a worker or
an edge asking the core) is how an operator's action reaches the POP shards, and its caller answers the
operator (503 ``cluster_unavailable`` when no answer comes). Such a request must not take effect after
the caller gave up: a suspension, hold or erasure reported as failed would surprise the operator later,
and a retry of a hold would place it twice. So (a) while this process's link is known to be down a
request is refused at once (``TransportError``), not left in the reconnect buffer; and (b) every request
carries a deadline (header ``Smsroute-Deadline``: wall-clock seconds, ``ACT_WITHIN`` of its timeout after
it was sent), and the answering process drops one that reaches it later (counted ``late_queries``,
logged with its kind): it is neither acted on nor answered. The rest of the timeout is left for the work
and the answer. What remains is the ambiguity no transport removes - a request acted on whose answer is
lost or slower than the timeout reports 503 although it happened - so a retry must be safe:
suspending (a state, not a toggle), taking a routing table and erasing are idempotent, a second release
of a hold is refused as not open, reads are harmless; placing a hold is not (a retry may place a second
one: ``GET /v1/holds`` lists them). One question to many workers has one deadline, and a part not yet
sent when another failed is never sent (``ClusterShards._ask_all``); an action some workers took and
another did not answer is reported as such - the 503 names where it was done and where not
(``ClusterShards._act_all``) - and a state action asked again brings every worker to the same state. The core pushes its routing table
again when its link comes back (``actors.supervisor``): a table replaced meanwhile reached no worker.
The deadline assumes the hosts' clocks agree (NTP) to well within half a timeout (15 s for the core's
queries, 2.5 s for a worker's or an edge's).

**Bounded while a server stalls.** A server that stays connected but stops reading is not noticed by the
client until its ping check declares the link stale (minutes); meanwhile nats-py's buffer accepts every
publish. So the transport publishes from one task, in order, and keeps what waits for it (queued here
plus the client's unsent data and its socket's write buffer, :attr:`Transport.backlog_bytes`) under ``pending_bytes``: a batch beyond
that is dropped and counted (``batches_dropped``, ``frames_dropped``; at most once, as above), and
:meth:`RemoteRef.is_alive` is false from half of it on, so a submit is refused (``ClusterUnavailable``,
503) instead of being queued behind a link that does not move.

Threads: ``tell`` may be called from any thread (it appends to a buffer under a lock and, for the first
frame of a batch, wakes the transport thread); delivery to local actors happens on the transport thread
(``deliver`` only ``tell``s, so it never blocks).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec
import uvloop
from nats.errors import NoRespondersError

from engine import messages as m
from engine.cluster.nats_security import NatsSecurity
from engine.config import NatsSettings
from engine.errors import ClusterUnavailable, MalformedMessage, WorkerUnavailable

log = logging.getLogger(__name__)

MAX_PAYLOAD = 512 * 1024  # bytes per NATS message (the server's default limit is 1 MiB)
JOIN_BYTES = 64 * 1024  # submits for one session joined into one frame (_joined) up to this size
DEADLINE_HEADER = "Smsroute-Deadline"  # a request's deadline to be acted on (wall-clock seconds)
USABLE_FOR = 0.002  # s a "usable" verdict of the link is reused (Transport.usable)
ACT_WITHIN = 0.5  # of a request's timeout: later it is dropped; the rest is for the work and the answer
LOG_EVERY = 1000  # dropped batches: the first is logged, then one line per this many
_ENVELOPE = msgspec.msgpack.Decoder(list[tuple[str, bytes]])
_ENCODER = msgspec.msgpack.Encoder()
_NO_FRAMES = _ENCODER.encode([])  # the envelope a probe carries (Transport.probe)


TransportError = ClusterUnavailable  # no NATS server reachable in time, or no answer to a request


class RemoteRef:
    """Stands in for a pykka ``ActorRef`` of an actor in another process: ``tell`` only."""

    __slots__ = ("_transport", "node", "target")
    remote = True  # (engine.submission refuses a submit at once while the link is down)

    def __init__(self, transport: Transport, node: str, target: str) -> None:
        self._transport, self.node, self.target = transport, node, target

    def tell(self, frame: bytes) -> None:
        self._transport.send(self.node, self.target, frame)

    def is_alive(self) -> bool:
        return self._transport.usable

    def refusal(self) -> ClusterUnavailable | None:
        """Why a submit for this actor must be refused now, before anything is sent (None: send it).
        Asked for every remote hand-off: a cached link verdict and one readiness read (no round trip)."""
        transport = self._transport
        if not transport.usable:
            why = "the cluster's NATS link is down or not moving; nothing was sent: retry after the " \
                  "Retry-After seconds"
            return ClusterUnavailable(why, public=why)  # (names no process: a customer may read it)
        readiness = transport.readiness
        why = readiness.refusal(self.node) if readiness is not None else None
        if why is None:
            return None
        return WorkerUnavailable(f"the worker holding this account is not ready ({why}); nothing was "
                                 "sent: retry after the Retry-After seconds")

    def __repr__(self) -> str:
        return f"RemoteRef({self.node}:{self.target})"


class Transport:
    """One process's NATS connection. ``deliver(target, frame, message)`` gets every valid inbound frame
    (and the message it decoded to, for a receiver that is not an actor)."""

    def __init__(self, servers: list[str], node: str,
                 deliver: Callable[[str, bytes, m.Message], bool], *,
                 prefix: str = "smsroute", pending_bytes: int = 64 << 20,
                 answer: Callable[[bytes], bytes] | None = None,
                 on_reconnected: Callable[[], None] | None = None,
                 deliveries: bool = True, security: NatsSecurity | None = None) -> None:
        self.servers, self.node, self.prefix = servers, node, prefix
        self.security = security or NatsSecurity.for_servers(servers, NatsSettings())
        self._deliver = deliver
        self._answer = answer  # answers ShardQuery requests (workers), on a thread of its own
        self._on_back = on_reconnected  # told (on the transport thread: it must not block) after a reconnect
        self._deliveries = deliveries  # False: no frame is taken until open_deliveries() (requests work)
        self.pending_bytes = pending_bytes
        # which workers may be handed a submit (``refusal(node) -> str | None``): the core's supervisor
        # or an ``engine.cluster.presence.PresenceBoard``; None: every one (RemoteRef.refusal)
        self.readiness: Any = None
        self.connected = False
        self._ever_connected = False  # (errors before the first connection are start()'s to report)
        self._last_error = ""  # the last error of the client, named in start()'s failure
        self._out: dict[str, list[tuple[str, bytes]]] = {}
        self._lock = threading.Lock()
        self._wake_pending = False
        self._usable_until = 0.0  # monotonic time until which the link counts as usable unread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque()  # (subject, payload)
        # node -> the futures of requests to it not yet answered, each with whether it is a read
        self._asking: dict[str, dict[Any, bool]] = {}
        self._queued_bytes = 0
        self._sender: asyncio.Task[None] | None = None
        self.counters = {"frames_out": 0, "frames_in": 0, "batches_out": 0, "batches_in": 0,
                         "malformed": 0, "unknown_target": 0, "disconnects": 0, "reconnects": 0,
                         "publish_errors": 0, "requests_refused": 0, "late_queries": 0,
                         "batches_dropped": 0, "frames_dropped": 0}

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> Transport:
        """Connect (retrying until ``timeout``) and subscribe; raise ``TransportError`` if no server
        answers. Afterwards the client reconnects by itself, for ever."""
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"nats-{self.node}")
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._connect(timeout), self._loop)
        try:
            future.result(timeout + 5)
        except Exception as exc:
            future.cancel()  # (a connect still trying must not outlive its loop)
            self.stop()
            why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self._last_error:
                why += f"; last error: {self._last_error}"
            raise TransportError(f"no NATS server reachable at {', '.join(self.servers)} within "
                                 f"{timeout:g} s ({why})") from exc
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is buffered, drain the subscription and close."""
        loop = self._loop
        if loop is None:
            return
        if self._nc is not None:
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout)
            except Exception:
                log.warning("nats %s: did not close cleanly", self.node)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)
        self._loop = None

    def open_deliveries(self, timeout: float = 10.0) -> None:
        """Start taking frames for this process's actors (a transport started with ``deliveries=False``:
        a worker first asks the core what it needs before it accepts traffic)."""
        if self._deliveries or self._loop is None:
            return
        self._deliveries = True
        asyncio.run_coroutine_threadsafe(self._subscribe_deliveries(), self._loop).result(timeout)

    async def _subscribe_deliveries(self) -> None:
        await self._nc.subscribe(self.subject(self.node), cb=self._on_message)
        await self._nc.flush()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The transport thread's event loop (None once stopped): a stuck one delivers no frame
        (``engine.cluster.heartbeat`` asks it)."""
        return self._loop

    def ref(self, node: str, target: str) -> RemoteRef:
        return RemoteRef(self, node, target)

    def subject(self, node: str) -> str:
        return f"{self.prefix}.{node}"

    def stats(self) -> dict[str, Any]:
        return {"node": self.node, "connected": self.connected, "backlog_bytes": self.backlog_bytes,
                **self.counters}

    @property
    def backlog_bytes(self) -> int:
        """Bytes the server has not taken: queued for the sender task, in the client's buffer and in its
        socket's write buffer."""
        nc = self._nc
        if nc is None:
            return self._queued_bytes
        return self._queued_bytes + nc.pending_data_size + _socket_backlog(nc)

    @property
    def usable(self) -> bool:
        """Connected, and the link is moving: less than half of ``pending_bytes`` waits (any thread).

        Asked before every remote submit, so a "usable" verdict is reused for ``USABLE_FOR`` seconds
        (reading the backlog walks into the client and its socket: ~1 µs, a few % of a message's CPU in
        the core). A disconnection counts at once, and "not usable" is never reused: the submits of
        those ms may overshoot half the bound by what arrives in them, which ``_flush``'s hard bound
        still caps."""
        if not self.connected:
            return False
        now = time.monotonic()
        if now < self._usable_until:
            return True
        if self.backlog_bytes < self.pending_bytes // 2:
            self._usable_until = now + USABLE_FOR
            return True
        return False

    # --- sending (any thread) ----------------------------------------------------------------------

    def send(self, node: str, target: str, frame: bytes) -> None:
        with self._lock:
            self._out.setdefault(node, []).append((target, frame))
            if self._wake_pending:
                return
            self._wake_pending = True
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            out, self._out = self._out, {}
            self._wake_pending = False
        nc = self._nc
        if nc is None:
            return
        for node, frames in out.items():
            subject = self.subject(node)
            for chunk in _chunks(_joined(frames)):
                payload = _ENCODER.encode(chunk)
                if self.backlog_bytes + len(payload) > self.pending_bytes:
                    self._dropped(subject, len(chunk))
                    continue
                self.counters["frames_out"] += len(chunk)
                self.counters["batches_out"] += 1
                self._queue.append((subject, payload))
                self._queued_bytes += len(payload)
        if self._queue and (self._sender is None or self._sender.done()):
            self._sender = self._loop.create_task(self._send_queued(nc))

    def _dropped(self, subject: str, frames: int) -> None:
        """A batch over ``pending_bytes`` (the link does not move): counted, logged now and then."""
        if not self.counters["batches_dropped"] % LOG_EVERY:
            log.warning("nats %s: link not moving (%d bytes waiting): dropped a batch for %s "
                        "(%d dropped so far)", self.node, self.backlog_bytes, subject,
                        self.counters["batches_dropped"] + 1)
        self.counters["batches_dropped"] += 1
        self.counters["frames_dropped"] += frames

    async def _send_queued(self, nc: Any) -> None:
        """The one publishing task: in order; a publish waits only when the client's buffer is over
        its limit, which the bound in :meth:`_flush` keeps it under."""
        while self._queue:
            subject, payload = self._queue.popleft()
            try:
                await nc.publish(subject, payload)
            except Exception as exc:  # e.g. the reconnect buffer is full: counted; owed data is resent
                self.counters["publish_errors"] += 1
                log.warning("nats %s: publish to %s failed: %s", self.node, subject,
                            type(exc).__name__)
            finally:
                self._queued_bytes -= len(payload)

    # --- announcements (engine.cluster.presence; a message a second per worker, never per submit) ---

    def announce(self, suffix: str, payload: bytes, wait: float = 0.0) -> None:
        """Publish ``payload`` on ``<prefix>.<suffix>`` from any thread, if the link is up (an
        announcement made while it is down would be stale when it arrives: dropped). ``wait``: seconds
        to wait until the server has it (at most)."""
        loop, nc = self._loop, self._nc
        if loop is None or nc is None or not self.connected:
            return
        subject = f"{self.prefix}.{suffix}"

        async def publish() -> None:
            await nc.publish(subject, payload)
            if wait:
                await nc.flush(timeout=wait)

        future = asyncio.run_coroutine_threadsafe(publish(), loop)
        if wait:
            try:
                future.result(wait + 0.5)
            except Exception as exc:  # the link went down meanwhile: the listeners' deadline applies
                log.warning("nats %s: announcement on %s not confirmed: %s", self.node, subject,
                            type(exc).__name__)

    def listen(self, suffix: str, callback: Callable[[bytes], None], timeout: float = 10.0) -> None:
        """Call ``callback(data)`` (on the transport thread: it must not block) for every message on
        ``<prefix>.<suffix>``; subscribed when this returns."""
        loop, nc = self._loop, self._nc
        if loop is None or nc is None:
            raise TransportError("the transport is not running")

        async def on_message(msg: Any) -> None:
            callback(msg.data)

        async def subscribe() -> None:
            await nc.subscribe(f"{self.prefix}.{suffix}", cb=on_message)
            await nc.flush()

        asyncio.run_coroutine_threadsafe(subscribe(), loop).result(timeout)

    # --- probes (engine.cluster.late_probe; only for a worker whose beat is late) --------------------

    def probe(self, node: str, timeout: float, done: Callable[[bool], None]) -> bool:
        """Ask the NATS server whether any process takes ``node``'s frames: one request to its subject
        carrying an envelope of no frames (a worker that takes it delivers nothing and does not
        answer). ``done(True)`` (on the transport thread) if the server answers "no responders" at
        once - nobody is subscribed: the process is gone -, ``done(False)`` after ``timeout`` or any
        other outcome (subscribed, maybe stopped: not for a probe to judge). False if not sent (the
        link is down)."""
        loop, nc = self._loop, self._nc
        if loop is None or nc is None or not self.connected:
            return False

        async def ask() -> None:
            try:
                await nc.request(self.subject(node), _NO_FRAMES, timeout=timeout)
            except NoRespondersError:
                done(True)
                return
            except Exception:  # (a time-out: someone holds the subscription)
                pass
            done(False)

        asyncio.run_coroutine_threadsafe(ask(), loop)
        return True

    # --- receiving (the transport thread) ----------------------------------------------------------

    async def _on_message(self, msg: Any) -> None:
        self.counters["batches_in"] += 1
        try:
            frames = _ENVELOPE.decode(msg.data)
        except msgspec.DecodeError:
            self.counters["malformed"] += 1
            log.warning("nats %s: dropped a malformed envelope (%d bytes)", self.node, len(msg.data))
            return
        for target, frame in frames:
            try:
                msg = m.decode(frame)  # validated on entry: a local actor never sees a bad frame
            except MalformedMessage as exc:
                self.counters["malformed"] += 1
                # the target's kind only: "session/<account id>" must not outlive an erasure in a log
                log.warning("nats %s: dropped a malformed frame for a %s: %s", self.node,
                            target.partition("/")[0][:20], exc)
                continue
            self.counters["frames_in"] += 1
            if not self._deliver(target, frame, msg):
                self.counters["unknown_target"] += 1

    # --- request / reply (queries between the core and workers; never on the hot path) -----------------

    def request(self, node: str, payload: bytes, timeout: float, act_by: float | None = None, *,
                read: bool = False) -> bytes:
        """Ask ``node`` (from any thread but the transport's own) and wait for its answer; refused at
        once while the link is down, and dropped by ``node`` if it arrives after its deadline (see the
        module docstring): a request this raises for is never acted on later - but for a ``read`` (a
        question that changes nothing where it is answered), which :meth:`give_up_on` may fail while
        ``node`` could still answer it. ``act_by``: the deadline (``time.time()`` seconds) when one
        question goes to many nodes; by default ``ACT_WITHIN`` of ``timeout`` from now."""
        loop = self._loop
        if loop is None or self._nc is None:
            raise TransportError("the transport is not running")
        if not self.connected:  # it would wait in the reconnect buffer and be sent after the caller gave up
            with self._lock:
                self.counters["requests_refused"] += 1
            raise TransportError(f"this process's NATS link is down: {node} was not asked")
        if act_by is None:
            act_by = time.time() + timeout * ACT_WITHIN
        elif time.time() >= act_by:  # (queued behind other questions until its asker had given up)
            raise TransportError(f"{node} was not asked in time")
        headers = {DEADLINE_HEADER: repr(act_by)}
        future = asyncio.run_coroutine_threadsafe(
            self._nc.request(self.subject(node) + ".query", payload, timeout=timeout, headers=headers),
            loop)
        with self._lock:
            self._asking.setdefault(node, {})[future] = read
        try:
            return future.result(timeout + 1).data
        except Exception as exc:
            why = "given up on it (hung or killed)" if future.cancelled() else type(exc).__name__
            raise TransportError(f"{node} did not answer: {why}") from exc
        finally:
            with self._lock:
                self._asking.get(node, {}).pop(future, None)

    def give_up_on(self, node: str, reads_only: bool = False) -> int:
        """Fail at once every request to ``node`` still waiting for its answer (``TransportError``, as a
        time-out would): the process was killed (``engine.cluster.local``, a hung worker), so none will
        come. Without this each waited out its whole time-out (30 s for the core's queries), holding a
        query thread, and the questions queued behind them were refused as not asked in time - also
        those for the restarted worker. ``reads_only``: only the reads (``request(read=True)``) - the
        node was judged hung but may still wake and answer; an action must then still wait for its
        answer or its time-out (never reported failed and done later). Returns how many were failed."""
        with self._lock:
            asking = self._asking.get(node, {})
            pending = [f for f, read in asking.items() if read or not reads_only]
            for future in pending:
                del asking[future]
        for future in pending:
            future.cancel()
        return len(pending)

    async def _on_query(self, msg: Any) -> None:
        if self._too_late(msg):
            return  # its asker reports it failed (or soon will): neither acted on nor answered
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, self._answer, msg.data)  # may read stores, ask actors
        await msg.respond(reply)

    def _too_late(self, msg: Any) -> bool:
        raw = (msg.headers or {}).get(DEADLINE_HEADER)
        if raw is None:
            return False  # (a sender from before deadlines: acted on as before)
        try:
            late = time.time() - float(raw)
        except ValueError:
            late = 0.0  # (a deadline that does not parse is not a reason to drop an operator's action)
        if late <= 0:
            return False
        self.counters["late_queries"] += 1
        try:
            q = m.decode(msg.data)
            kind = q.kind if isinstance(q, m.ShardQuery) else type(q).__name__
        except MalformedMessage:
            kind = "malformed"
        log.warning("nats %s: dropped a %s query that arrived %.1f s after its deadline (its asker "
                    "reports it failed)", self.node, kind, late)
        return True

    # --- connection ----------------------------------------------------------------------------------

    async def _connect(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        secured = self.security.connect_options()  # TLS context and credentials (read from files now)
        while True:
            try:
                # bounded here: with reconnects allowed for ever, nats-py keeps retrying a first
                # connect that cannot succeed (a refused port, a name that does not resolve)
                self._nc = self.security.client()
                await asyncio.wait_for(self._nc.connect(
                    servers=self.servers, name=f"smsroute-{self.node}", connect_timeout=2, **secured,
                    dont_randomize=True,  # the first server is this process's own (placement)
                    allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                    pending_size=self.pending_bytes, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected, error_cb=self._on_error),
                    max(0.1, deadline - loop.time()))
                break
            except Exception:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.2)
        if self._deliveries:
            await self._nc.subscribe(self.subject(self.node), cb=self._on_message)
        if self._answer is not None:
            await self._nc.subscribe(self.subject(self.node) + ".query", cb=self._on_query)
        await self._nc.flush()
        self.connected = self._ever_connected = True

    async def _close(self) -> None:
        self._flush()
        try:
            if self._sender is not None:
                await asyncio.wait_for(asyncio.shield(self._sender), 2)  # what is queued goes out
        except Exception:
            pass
        try:
            await self._nc.flush(timeout=2)
        except Exception:
            pass
        await self._nc.close()
        self.connected = False

    async def _on_disconnected(self) -> None:
        self.connected = False
        self.counters["disconnects"] += 1
        log.warning("nats %s: disconnected", self.node)

    async def _on_reconnected(self) -> None:
        self.connected = True
        self.counters["reconnects"] += 1
        log.info("nats %s: reconnected to %s", self.node, self._nc.connected_url.netloc)
        if self._on_back is not None:
            self._on_back()

    async def _on_error(self, exc: Exception) -> None:
        # before the first connection every retry fails the same way, and start() reports it once
        level = logging.WARNING if self._ever_connected else logging.DEBUG
        self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.log(level, "nats %s: %s", self.node, self._last_error)


def _socket_backlog(nc: Any) -> int:
    """Bytes in the asyncio write buffer of nats-py's TCP transport (where its flusher moves its buffer
    and then waits for the socket to drain); 0 when the client does not expose it."""
    writer = getattr(getattr(nc, "_transport", None), "_io_writer", None)
    try:
        return int(writer.transport.get_write_buffer_size())
    except Exception:  # not connected yet, or another transport
        return 0


def _joined(frames: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The frames of one flush with the submits for each session joined: a run of ``SubmitMessage``
    frames for one target becomes one ``SubmitMessages`` frame (``engine.messages.join_submits``: the
    same items, spliced without decoding), in the place of the run's first frame. A run ends at any
    other frame for its target, so each target receives its frames in the order they were told (frames
    for different targets go to different actors: their relative order is not kept by the receiver
    either). Why: one frame validated, told and handled per session and flush in the worker, instead of
    one per message."""
    out: list[Any] = []
    runs: list[list[Any]] = []  # [index in out, target, frames, bytes]
    open_runs: dict[str, list[Any]] = {}
    for target, frame in frames:
        if not m.is_submit_frame(frame):
            open_runs.pop(target, None)
            out.append((target, frame))
            continue
        run = open_runs.get(target)
        if run is not None and run[3] + len(frame) <= JOIN_BYTES:
            run[2].append(frame)
            run[3] += len(frame)
            continue
        open_runs[target] = run = [len(out), target, [frame], len(frame)]
        runs.append(run)
        out.append(None)
    for index, target, joined, _ in runs:
        out[index] = (target, joined[0] if len(joined) == 1 else m.join_submits(joined))
    return out


def _chunks(frames: list[tuple[str, bytes]]) -> list[list[tuple[str, bytes]]]:
    """Split a batch so that no NATS message exceeds ``MAX_PAYLOAD``."""
    out, chunk, size = [], [], 0
    for item in frames:
        n = len(item[1]) + len(item[0]) + 8
        if chunk and size + n > MAX_PAYLOAD:
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        out.append(chunk)
    return out
