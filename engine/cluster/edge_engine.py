"""What the customer API of an HTTP edge process calls instead of the engine (``engine.cluster.edge``).

An edge holds no store and runs no actor. For the hot path it talks to the cluster itself: an API key is
resolved to its account by asking the core (``EdgeQuery`` ``account_for_key``, cached for
``KEY_CACHE_S`` - so a revoked key stops working on every edge within that time), and a submit goes
straight to the account's session on its worker as the same ``SubmitMessage`` the core sends, with
``reply_to`` naming this edge, so the answer comes back to this edge's bridge. Everything else the
customer API does is forwarded to the core's customer API (``engine.cluster.edge_forward``).

Rate limits stay per API key across edges: the core keeps the one GCRA state per key, and an edge leases
tokens from it in small blocks (:class:`LeasedLimiter`); at most ``lease`` tokens per edge and key are
spent ahead of the core's count, an edge holds at most its share (burst / edges) of a key unspent, and
what it has not spent a lease lifetime after asking lapses and goes back to the core.
Each lease answer carries the key's count at the core, from which the edge answers ``RateLimit-Remaining``
and ``RateLimit-Reset`` as the one-process engine would (within the bound its docstring states).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from engine import apikeys, submission
from engine import messages as m
from engine.bridge import Bridge, InFlightGate
from engine.cluster import edge_metrics
from engine.cluster import protocol as cluster_protocol
from engine.cluster.nats_security import NatsSecurity
from engine.cluster.pending_watch import PendingWatch
from engine.cluster.placement import Placement
from engine.cluster.presence import PresenceBoard
from engine.cluster.transport import Transport
from engine.errors import (
    AuthError,
    InputError,
    OutcomeUnknown,
    OverloadedError,
    SmsrouteError,
    error_from_code,
)
from engine.http.ratelimit import Decision, Grant, Lease

log = logging.getLogger(__name__)

KEY_CACHE_S = 2.0
PRESENCE_WAIT_S = 2.0  # at start, at most this long for every worker to say where it is
UNANSWERED_AFTER_S = 15.0
OLD_CORE_RETRY_S = 60.0


def _accepted(reply: m.AcceptedItem) -> Any:
    from engine._engine import Accepted

    return Accepted(reply.message_id, reply.segments, reply.price_micro_usd, reply.pop,
                    reply.encoding, country=reply.country)


class EdgeEngine:
    def __init__(self, settings: Any, placement: Placement, data_dir: Any) -> None:
        self.settings = settings
        self.placement = placement
        self.data_dir = data_dir
        self.max_body_chars = settings.engine.max_segments * 160
        self.bridge = Bridge(InFlightGate(1 << 62))  # edges bound work at the door, not by a gate
        self.transport: Transport | None = None
        self.presence: PresenceBoard | None = None
        self._keys: dict[bytes, tuple[str | None, float]] = {}  # digest -> (account, expires)
        self._stopping = False
        self._old_core_until = 0.0  # until then, the core answered like a previous version
        self._watch: PendingWatch | None = None
        self._expiry = threading.Thread(target=self._expire_unanswered, daemon=True,
                                        name="edge-unanswered")
        # this edge's metrics exposition (its HTTP server's registry), asked for by the core at each
        # scrape of its /metrics (engine.cluster.edge_metrics); None until the server runs
        self.metrics_source: Callable[[], bytes] | None = None

    def start(self) -> EdgeEngine:
        place = self.placement
        security = NatsSecurity.for_servers(place.nats, self.settings.nats, place.nats_token_file)
        self.transport = Transport(list(place.nats), place.node, self._deliver,
                                   answer=self._answer, security=security).start()
        # a submit for a worker that is not ready is refused at once (engine.cluster.presence); the
        # workers answer the board's question at once, so a new edge refuses nothing for a beat's time;
        # nor to a worker of another protocol than this edge's (engine.cluster.protocol), and the
        # core's answer to the question says its own (an ALARM line here when it differs)
        self.presence = PresenceBoard(place.workers, self.settings.engine.child_hung_after_seconds,
                                      protocol=cluster_protocol.PROTOCOL, me="edge")
        self.transport.readiness = self.presence.listen(self.transport)
        self.presence.wait_all_heard(PRESENCE_WAIT_S)
        self._expiry.start()
        # a submit sent to a worker then announced down or seen restarting fails at once (outcome
        # unknown), not after the unanswered expiry (engine.cluster.pending_watch)
        self._watch = PendingWatch(place.workers, self.bridge, None, lambda: self.presence).start()
        self.presence.on_gone = self._watch.heard_gone
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.stop()
        if self.transport is not None:
            self.transport.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # --- what the customer API calls ---------------------------------------------------------------

    def account_id_for_key(self, api_key: str | apikeys.PresentedKey) -> str:
        return self._account_for(apikeys.digest_of(api_key) or b"")

    def _account_for(self, digest: bytes) -> str:
        now = time.monotonic()
        cached = self._keys.get(digest)
        if cached is None or cached[1] < now:
            account = self._ask_core("account_for_key", digest)
            if len(self._keys) > 100_000:
                self._keys.clear()
            cached = self._keys[digest] = (account, now + KEY_CACHE_S)
        if cached[0] is None:
            raise AuthError("unknown or revoked API key")
        return cached[0]

    def check_webhook_url(self, url: str, field: str = "url") -> str:
        from engine.http.egress import judge_url, parse_url

        if self.settings.http.webhook_allow_private_networks:
            parse_url(url, field)
        else:
            judge_url(url, field)
        return url

    def submit_future(self, api_key: str | apikeys.PresentedKey, to: str, sender: str, body: str, *,
                      validity_seconds: int | None = None, callback_url: str | None = None,
                      client_ref: str | None = None) -> Future:
        return self.submit_many(api_key, [{"to": to, "sender": sender, "body": body,
                                           "validity_seconds": validity_seconds,
                                           "callback_url": callback_url,
                                           "client_ref": client_ref}])[0]

    def submit_many(self, api_key: str | apikeys.PresentedKey, submissions: list[dict]) -> list[Future]:
        """Like the engine's: a stopping edge refuses (503) rather than hand a worker messages whose
        answers it would no longer hear."""
        if self._stopping:
            raise OverloadedError("the engine is stopping")
        digest = apikeys.digest_of(api_key)  # once (a PresentedKey: hashed by the customer API)
        if digest is None:
            raise InputError("api_key must be a string")
        account = self._account_for(digest)
        futures, items = submission.prepare(self, digest, submissions,
                                            lambda: self.bridge.new_request(_accepted),
                                            reply_to=self.placement.node)
        if items:
            node = self.placement.worker_of(account)
            submission.hand_off(self.bridge, self.transport.ref(node, f"session/{account}"), items)
        return futures

    # --- the core ----------------------------------------------------------------------------------

    def _ask_core(self, kind: str, *args: Any) -> Any:
        raw = self.transport.request("core", m.encode(m.ShardQuery(kind, list(args))), 5.0)
        reply = m.decode(raw)
        if not isinstance(reply, m.ShardReply) or not reply.ok:
            code = reply.error if isinstance(reply, m.ShardReply) else "internal_error"
            raise error_from_code(code, f"the core answered {code}")
        return reply.result

    def lease(self, limit_key: str, n: int) -> Lease:
        """Up to ``n`` tokens of ``limit_key``'s rate limit from the core's one count, and that count
        after them (``n == 0``: only the count)."""
        granted, retry_after, reset = self._ask_core("lease", limit_key, n)
        return Lease(int(granted), float(retry_after), float(reset))

    def lease_block(self, limit_key: str, n: int, give_back: list, split: int,
                    held: int) -> Grant | Lease:
        """:meth:`lease` giving back unspent tokens of earlier blocks, with the core's fair split
        among ``split`` edges near the key's limit (``Gcra.lease_block``). A core of the previous
        version does not know this query (it answers ``internal_error``, "ValueError"): then the
        plain lease, for ``OLD_CORE_RETRY_S`` - its answer has no stamp, so nothing is given back
        (the tokens lapse at the edge all the same, and come back at that core as its bucket refills)."""
        if time.monotonic() >= self._old_core_until:
            raw = self.transport.request("core", m.encode(m.ShardQuery(
                "lease_block", [limit_key, n, split, held, [list(g) for g in give_back]])), 5.0)
            reply = m.decode(raw)
            if isinstance(reply, m.ShardReply) and reply.ok:
                granted, retry_after, reset, end, shift = reply.result
                return Grant(int(granted), float(retry_after), float(reset), float(end),
                             float(shift))
            if not (isinstance(reply, m.ShardReply) and reply.error == "internal_error"
                    and reply.result == "ValueError"):
                code = reply.error if isinstance(reply, m.ShardReply) else "internal_error"
                raise error_from_code(code, f"the core answered {code}")
            self._old_core_until = time.monotonic() + OLD_CORE_RETRY_S
            log.warning("edge rate limiter: the core does not give back leased tokens (a previous "
                        "version?); plain leases for %.0f s", OLD_CORE_RETRY_S)
        return self.lease(limit_key, n)

    def _answer(self, raw: bytes) -> bytes:
        """The core's questions to this edge (over NATS, on a thread of the transport's): its metrics."""
        try:
            q = m.decode(raw)
            if not isinstance(q, m.ShardQuery) or q.kind != edge_metrics.QUERY:
                raise ValueError("not a question an edge answers")
            return m.encode(m.ShardReply(True, edge_metrics.answer(self.metrics_source), ""))
        except Exception as exc:
            log.exception("edge: answering the core failed")
            return m.encode(m.ShardReply(False, type(exc).__name__, "internal_error"))

    # --- answers -------------------------------------------------------------------------------------

    def _deliver(self, target: str, frame: bytes, msg: m.Message) -> bool:
        if target != "bridge":
            return False
        self.bridge.receive(msg)
        return True

    def _expire_unanswered(self) -> None:
        """A submit whose worker died unanswered fails after 15-30 s (``OutcomeUnknown``)."""
        seen: set[int] = set()
        while not self._stopping:
            time.sleep(UNANSWERED_AFTER_S)
            pending = set(self.bridge.pending_ids())
            stale, seen = seen & pending, pending
            if stale:
                self.bridge.expire(sorted(stale), OutcomeUnknown(
                    "no answer from the worker holding this account; the message may or may not "
                    "have been accepted: check your messages before sending it again (a retry with "
                    "the same Idempotency-Key answers 409 idempotency_outcome_unknown)"))


def lease_lifetime(burst: int, rate: float) -> float:
    """How long an edge may spend a block's tokens: an eighth of the time the key's bucket takes to
    fill (0.25 s with the defaults, burst 2,000 at 1,000/s), within 50 ms and 1 s. Tokens spent later
    than the core counted them could come on top of a bucket it has filled again since: this bounds
    that excess to ``ceil(lifetime * rate)`` requests (about burst / 8)."""
    return min(LEASE_LIFETIME_MAX_S, max(LEASE_LIFETIME_MIN_S, burst / rate / 8))


LEASE_LIFETIME_MIN_S = 0.05
LEASE_LIFETIME_MAX_S = 1.0


class LeasedLimiter:
    """The GCRA interface (``check(key) -> Decision``) of the customer middleware, with the count kept
    by the core: each key's tokens are leased in blocks, fetched in the background when fewer than half
    a block is left, so a request never waits for a network round trip. A key with no token may go
    ``CREDIT`` requests into debt (repaid from its next lease) while one is fetched - a key this edge has
    not leased for yet, a whole first block (``lease``): the requests that arrive together on a new key
    (32 connections opening at once) would otherwise be refused before the first lease is back. Beyond
    that the request waits for the lease on its way (:meth:`recheck_after_lease`, at most
    ``LEASE_WAIT_S``), and is refused (429, ``Retry-After``) if it brings nothing or is late, or at once
    once the core has refused a lease - then the key is not asked for again before the retry time the
    core gave (at most one lease per key is on its way in any case). So an edge
    runs at most ``lease`` requests ahead of the core's count on a key it meets, and ``CREDIT`` after.

    A key's block starts at ``lease`` and grows fourfold (up to ``max_lease``) each time it ran dry while
    a full block was on its way: a busy key's requests outran the round trip, and refusing them would be
    a 429 far below the key's limit (seen at ~2,000 requests/s with a limit of a million). It halves
    (not below ``lease``) when tokens lapse unspent, and drops to what the core granted when that was
    less than asked - the key is near its limit, where an edge should hold little. And an edge never
    holds more than its ``share`` of a key's burst (burst / number of edges) unspent: blocks that grew up
    to the whole burst let one edge lease nearly all of it, and the other edge refused a key's 4th
    sequential request with a burst of 100.

    **Lifetime.** A block's tokens may be spent for ``lifetime`` seconds from when the lease was asked
    (:func:`lease_lifetime`); then what is left lapses, and is given back to the core with the key's next
    lease - or at once (a lease of nothing) when it is at least ``give_back_at_once``, burst / (8 *
    edges) - which credits it within the bound of :meth:`engine.http.ratelimit.Gcra.lease_block`. Before, tokens were kept until spent: an edge's
    unspent tokens made the key's requests on another edge 429 below the limit until the core's count
    refilled, and tokens spent long after their lease came on top of a bucket the core had filled again.
    Near the key's limit the core grants each edge at most its part (``split``) of what is left, and a
    refused edge asks again within ``lifetime``, when the others' unspent tokens are back.
    :meth:`sweep` lapses the tokens of keys nobody uses any more (the edge calls it periodically).

    **Bound.** With E edges, the requests of a key admitted in any window of w seconds are at most
    ``burst + floor(w * rate) + min(burst, ceil(lifetime * rate)) + E`` - one process: ``burst +
    floor(w * rate)`` - plus those an edge lets through on its first block's credit when it meets the
    key. (A token is spent at most ``lifetime`` after the core counted it: the ones the edges hold at the
    window's start are at most burst in all, and the core's count has drained at most ``lifetime *
    rate`` of them; ``CREDIT`` requests per edge run ahead of the count; give-backs are credited only
    as far as the count still holds them.) ``tests/engine/cluster/test_lease_lifetime.py`` checks it.

    **Headers.** Every lease answer carries the key's count at the core (``Lease.reset_s``: tokens
    leased to any edge count as used from their lease on), kept as the key's *view*, dated when the
    lease was asked (so never later than the core's count). A decision is what a one-process
    :class:`~engine.http.ratelimit.Gcra` would answer on the view less the tokens this edge holds
    unspent, plus the requests it let through on credit (not counted by the core yet): ``remaining``,
    requests still allowed now (at most burst - 1 after a request), and ``reset_s``, seconds until the
    bucket is full again. Before a key's first answer there is no view: only this edge's requests count.
    The bound (``tests/engine/cluster/test_leased_limiter.py`` checks it): against the same computation
    on the core's count *now*, ``reset_s`` is shorter by at most ``1/rate`` per token the core granted
    on the key after the view's lease (to other edges, or for requests the core served itself) and
    longer by at most ``1/rate`` per token given back to it since (by other edges: their unspent tokens
    lapse); ``remaining`` likewise, one per such token. A key whose view
    is older than ``VIEW_MAX_AGE_S`` has it read again (a lease of 0 tokens) in the background at its
    next request (unless many leases are on their way), so while a key is in use on an edge those
    grants are mostly the ones of the last second or so."""

    CREDIT = 1
    VIEW_MAX_AGE_S = 1.0
    LEASE_WAIT_S = 0.05  # the longest a refused request waits for its edge's lease on its way

    def __init__(self, engine: EdgeEngine, executor: Any, lease: int = 20,
                 max_lease: int = 1000, *, edges: int = 1, max_keys: int = 100_000,
                 max_fetches: int = 1024, clock: Callable[[], float] = time.monotonic,
                 lifetime: float | None = None) -> None:
        self.engine = engine
        self.executor = executor
        self.clock = clock
        # Bounded like ``Gcra``: unauthenticated callers are keyed by source address, so a caller with many
        # addresses would otherwise grow these tables (and the executor's queue of leases) for ever.
        self.max_keys = max_keys
        self.max_fetches = max_fetches
        self.forgotten = 0  # keys dropped to stay within max_keys
        self.lapsed = 0  # tokens that lapsed unspent (given back to a core that takes them)
        http = engine.settings.http
        self.burst = int(http.rate_limit_burst)
        rate = float(http.rate_limit_per_second)
        self._t = 1.0 / rate
        self.edges = max(1, edges)
        self.lifetime = lease_lifetime(self.burst, rate) if lifetime is None else lifetime
        self.share = max(1, self.burst // self.edges)  # the most tokens of a key this edge holds
        # lapsed tokens worth a give-back of their own (fewer wait for the key's next lease): a key used
        # once a second would otherwise cost two round trips to the core per request instead of one
        self.give_back_at_once = max(1, self.burst // (8 * self.edges))
        self.lease = max(1, min(lease, self.share))
        self.max_lease = max(self.lease, min(max_lease, self.share))
        self._block: dict[str, int] = {}  # each key's block size, when not ``lease``
        self._starved: set[str] = set()  # keys that ran dry while their lease was on its way
        self._tokens: dict[str, int] = {}  # may go CREDIT (a first block before any lease) below zero
        # the unspent tokens of each lease of a key, oldest first: [tokens, deadline, end, shift]
        # (``end``/``shift``: the core's stamp, None from a core that takes nothing back); together
        # max(0, the key's tokens)
        self._lots: dict[str, deque[list]] = {}
        self._give_back: dict[str, list[tuple[int, float, float]]] = {}  # lapsed, not yet given back
        self._due: list[tuple[float, str]] = []  # (deadline, key) of every lot, a heap
        self._next_sweep = 0.0
        self._leased: set[str] = set()  # keys a lease has come back for
        self._want: set[str] = set()  # keys whose requests found them low: their next lease brings tokens
        self._pending: set[str] = set()
        self._retry_at: dict[str, float] = {}  # keys the core refused a lease, and when to retry
        self._view: dict[str, tuple[float, float]] = {}  # the core's TAT of a key, when it was asked
        self._waiters: dict[str, list[asyncio.Future]] = {}  # requests waiting for the key's lease
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> Decision:
        with self._lock:
            now = self.clock() if now is None else now
            if now >= self._next_sweep:
                self._sweep(now)
            self._lapse(key, now)
            tokens = self._tokens.get(key)
            if tokens is None:
                tokens = 0
                if len(self._tokens) >= self.max_keys:
                    self._forget()
            on_its_way = key in self._pending
            if tokens <= self._low(key):  # (low, or fewer left after this one)
                self._want.add(key)
                if not self._refused_until(key, now):  # (else asked by a request after that time)
                    self._fetch(key)
            elif self._stale(key, now):
                self._fetch(key)
            credit = self.CREDIT if key in self._leased else self.lease
            if tokens <= 0 and on_its_way and (key in self._leased or tokens <= -credit):
                # ran dry while its block was on its way (a new key: beyond its first block's credit,
                # not merely before its first lease: that made one request's edge take its whole share;
                # nor a key whose tokens lapsed, whose lease this very request asks for)
                self._starved.add(key)
            if tokens > 0 or (tokens > -credit and key not in self._retry_at):
                self._tokens[key] = tokens - 1
                if tokens > 0:
                    self._spend_lot(key)
                return self._decision(key, tokens - 1, now, None)
            return self._decision(key, tokens, now, max(self._retry_at.get(key, now) - now, 0.05))

    async def recheck_after_lease(self, key: str, refused: Decision) -> Decision:
        """A request :meth:`check` refused while the key's lease is on its way waits for that lease
        (at most ``LEASE_WAIT_S`` in all) and is checked again: before, a lease slower than the key's
        next request on this edge refused that request (429) far below the key's limit - up to 12 of a
        burst of 40 with random lease delays. Waiting requests hold their slot at the door, which bounds
        them; a key the core refused (until its retry time) has no lease worth waiting for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.LEASE_WAIT_S
        decision = refused
        while not decision.allowed:
            left = deadline - loop.time()
            arrived = None
            with self._lock:
                if self._tokens.get(key, 0) <= 0:  # (else its lease came back since the check)
                    if left <= 0 or not self._worth_waiting(key, self.clock()):
                        return decision
                    arrived = loop.create_future()
                    self._waiters.setdefault(key, []).append(arrived)
            if arrived is not None:
                try:
                    await asyncio.wait_for(arrived, left)
                except TimeoutError:
                    return decision
            decision = self.check(key)
        return decision

    def lease_on_its_way(self, key: str) -> bool:
        """Whether a request refused now would be checked again once the key's lease is back
        (:meth:`recheck_after_lease`)."""
        with self._lock:
            return self._worth_waiting(key, self.clock())

    def _worth_waiting(self, key: str, now: float) -> bool:
        return key in self._pending and not self._refused_until(key, now)

    def _refused_until(self, key: str, now: float) -> bool:
        """The core granted the key none and said when to ask again, which is not yet: refused
        requests ask nothing meanwhile (before, each refused request asked the core again as soon as
        the previous lease was back, so a refused flood became a lease flood)."""
        retry_at = self._retry_at.get(key)
        return retry_at is not None and now < retry_at

    def sweep(self, now: float | None = None) -> None:
        """Lapse the tokens of every key whose lease is over, and give them back (in the background):
        for keys with no request any more, which :meth:`check` does not see."""
        with self._lock:
            self._sweep(self.clock() if now is None else now)

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.lifetime / 4
        due = self._due
        while due and due[0][0] <= now:
            self._lapse(heapq.heappop(due)[1], now)

    def _lapse(self, key: str, now: float) -> None:
        lots = self._lots.get(key)
        if not lots or lots[0][1] > now:
            return
        lapsed = 0
        while lots and lots[0][1] <= now:
            tokens, _, end, shift = lots.popleft()
            lapsed += tokens
            if end is not None:
                self._give_back.setdefault(key, []).append((tokens, end, shift))
        if not lots:
            del self._lots[key]
        self._tokens[key] -= lapsed
        self.lapsed += lapsed
        block = self._block.get(key, self.lease)
        if block > self.lease:  # it leased more than it spent in a lifetime
            self._block[key] = max(self.lease, block // 2)
        back = self._give_back.get(key)
        if back and sum(b[0] for b in back) >= self.give_back_at_once:
            self._fetch(key)  # (fewer go back with the key's next lease: no round trip of their own)

    def _spend_lot(self, key: str) -> None:
        lots = self._lots[key]
        lots[0][0] -= 1
        if not lots[0][0]:
            lots.popleft()
            if not lots:
                del self._lots[key]

    def _decision(self, key: str, tokens: int, now: float, retry: float | None) -> Decision:
        """A one-process GCRA's answer for the key's view less the tokens this edge holds."""
        view = self._view.get(key)
        ahead = max(view[0] - now, 0.0) if view is not None else 0.0  # the core's count, seconds
        reset = max(0.0, ahead - tokens * self._t)
        if retry is not None:
            return Decision(False, self.burst, 0, reset, retry)
        used = math.ceil(reset / self._t - 1e-9)  # tokens not yet back (float noise aside)
        # (after a request at most burst - 1, as one process)
        return Decision(True, self.burst, min(self.burst - 1, max(0, self.burst - used)), reset, 0.0)

    def _low(self, key: str) -> int:
        return max(1, self._block.get(key, self.lease) // 2)

    def _stale(self, key: str, now: float) -> bool:
        """The key's view is old enough to read again - unless the edge is busy leasing: a refresh only
        serves headers, and must not hold up (in the executor's queue) a lease that brings tokens."""
        view = self._view.get(key)
        return (view is not None and now - view[1] > self.VIEW_MAX_AGE_S
                and len(self._pending) < self.max_fetches // 8)

    def _forget(self) -> None:
        """Drop the oldest keys (not those with a lease on its way) down to three quarters of
        ``max_keys``: amortised O(1) per request. A forgotten key starts afresh: its unspent tokens are
        not used nor given back (the core counted them: safe), and it may run one first block ahead of
        the count again."""
        target = self.max_keys * 3 // 4
        for key in list(self._tokens):
            if len(self._tokens) <= target:
                break
            if key in self._pending:
                continue
            del self._tokens[key]
            self._block.pop(key, None)
            self._starved.discard(key)
            self._leased.discard(key)
            self._want.discard(key)
            self._retry_at.pop(key, None)
            self._view.pop(key, None)
            self._lots.pop(key, None)
            self._give_back.pop(key, None)
            self.forgotten += 1
        log.warning("edge rate limiter: %d keys remembered (bound %d); forgot the oldest (%d so far)",
                    len(self._tokens), self.max_keys, self.forgotten)

    def _fetch(self, key: str) -> None:
        if key in self._pending or len(self._pending) >= self.max_fetches:
            return  # (over the bound: asked again by the key's next request; its credit still holds)
        self._pending.add(key)
        self.executor.submit(self._lease, key)

    def _lease(self, key: str) -> None:
        try:
            self._exchange(key)
        finally:  # the key's requests waiting for this lease are checked again (recheck_after_lease)
            with self._lock:
                waiters = self._waiters.pop(key, ())
            for arrived in waiters:
                try:
                    arrived.get_loop().call_soon_threadsafe(_wake, arrived)
                except RuntimeError:  # its loop is closed: the edge is stopping
                    pass

    def _exchange(self, key: str) -> None:
        """Ask the core for the key's next block (up to this edge's share) when its requests found it
        low, or else for nothing: only its count (a stale view), or to give back lapsed tokens (a key
        nobody uses any more is given no new block)."""
        with self._lock:
            tokens = self._tokens.get(key, 0)
            block = self._block.get(key, self.lease)
            wanted = key in self._want and tokens <= self._low(key)
            if wanted and self._refused_until(key, self.clock()):
                wanted = False  # (kept wanted: a request after the retry time asks)
            else:
                self._want.discard(key)
            asked = max(0, min(block, self.share - tokens)) if wanted else 0
            give_back = self._give_back.pop(key, [])
        asked_at = self.clock()
        try:
            lease = self.engine.lease_block(key, asked, give_back, self.edges, max(0, tokens))
        except SmsrouteError:
            lease = None
        except Exception as exc:  # whatever failed, the key must not stay "on its way" for ever
            log.warning("edge rate limiter: a lease failed (%s)", type(exc).__name__)
            lease = None
        # (tokens given back with a lease that failed are not given again: the core may have taken
        # them; if not, it still counts them, which is safe, until its bucket refills)
        with self._lock:
            self._pending.discard(key)
            self._leased.add(key)
            if lease is None:
                if asked:
                    self._retry_at[key] = asked_at + 1.0
                return
            end = getattr(lease, "end", None)  # None: a core that takes nothing back
            seen = self._view.get(key)
            tat = asked_at + lease.reset_s
            if end is not None and give_back:
                self._view[key] = (tat, asked_at)  # tokens came back: the count may be lower
            else:
                self._view[key] = (max(tat, seen[0]) if seen is not None else tat, asked_at)
            if asked:
                if lease.granted < asked:
                    self._block[key] = max(1, min(self.lease, lease.granted))
                elif key in self._starved:
                    self._block[key] = min(block * 4, self.max_lease)
                self._starved.discard(key)
                held = self._tokens.get(key, 0) + lease.granted
                self._tokens[key] = held
                unspent = min(lease.granted, max(0, held))  # (the rest repaid requests on credit)
                if unspent and key in self._tokens:
                    deadline = asked_at + self.lifetime
                    self._lots.setdefault(key, deque()).append(
                        [unspent, deadline, end, getattr(lease, "shift", 0.0)])
                    heapq.heappush(self._due, (deadline, key))
                if lease.granted == 0:
                    if lease.retry_after_s > 0:  # none left (not merely its part held already)
                        # the other edges' unspent tokens are back within a lifetime
                        retry = (min(lease.retry_after_s, self.lifetime) if end is not None
                                 else lease.retry_after_s)
                        self._retry_at[key] = asked_at + max(retry, 0.05)
                    return
                self._retry_at.pop(key, None)
            if asked and self._tokens.get(key, 0) <= self._low(key):
                self._want.add(key)  # drained meanwhile
            if ((key in self._want and not self._refused_until(key, self.clock()))
                    or key in self._give_back):  # (or more lapsed meanwhile)
                self._fetch(key)


def _wake(arrived: asyncio.Future) -> None:
    if not arrived.done():  # (one that timed out was cancelled)
        arrived.set_result(None)
