"""What the customer API of an HTTP edge process calls instead of the engine (``engine.cluster.edge``).

An edge holds no store and runs no actor. For the hot path it talks to the cluster itself: an API key is
resolved to its account by asking the core (``EdgeQuery`` ``account_for_key``, cached for
``KEY_CACHE_S`` - so a revoked key stops working on every edge within that time), and a submit goes
straight to the account's session on its worker as the same ``SubmitMessage`` the core sends, with
``reply_to`` naming this edge, so the answer comes back to this edge's bridge. Everything else the
customer API does is forwarded to the core's customer API (``engine.cluster.edge_http``).

Rate limits stay per API key across edges: the core keeps the one GCRA state per key, and an edge leases
tokens from it in small blocks (:class:`LeasedLimiter`); at most ``lease`` tokens per edge and key are
spent ahead of the core's count, and an edge holds at most its share (burst / edges) of a key unspent.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from engine import apikeys, submission
from engine import messages as m
from engine.bridge import Bridge, InFlightGate
from engine.cluster.nats_security import NatsSecurity
from engine.cluster.placement import Placement
from engine.cluster.transport import Transport
from engine.errors import (
    AuthError,
    InputError,
    OutcomeUnknown,
    OverloadedError,
    SmsrouteError,
    error_from_code,
)
from engine.http.ratelimit import Decision

log = logging.getLogger(__name__)

KEY_CACHE_S = 2.0
UNANSWERED_AFTER_S = 15.0


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
        self._keys: dict[bytes, tuple[str | None, float]] = {}  # digest -> (account, expires)
        self._stopping = False
        self._expiry = threading.Thread(target=self._expire_unanswered, daemon=True,
                                        name="edge-unanswered")

    def start(self) -> EdgeEngine:
        place = self.placement
        security = NatsSecurity.for_servers(place.nats, self.settings.nats, place.nats_token_file)
        self.transport = Transport(list(place.nats), place.node, self._deliver,
                                   security=security).start()
        self._expiry.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self.transport is not None:
            self.transport.stop()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # --- what the customer API calls ---------------------------------------------------------------

    def account_id_for_key(self, api_key: str) -> str:
        digest = apikeys.digest(api_key) if isinstance(api_key, str) else b""
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

    def submit_future(self, api_key: str, to: str, sender: str, body: str, *,
                      validity_seconds: int | None = None, callback_url: str | None = None,
                      client_ref: str | None = None) -> Future:
        return self.submit_many(api_key, [{"to": to, "sender": sender, "body": body,
                                           "validity_seconds": validity_seconds,
                                           "callback_url": callback_url,
                                           "client_ref": client_ref}])[0]

    def submit_many(self, api_key: str, submissions: list[dict]) -> list[Future]:
        """Like the engine's: a stopping edge refuses (503) rather than hand a worker messages whose
        answers it would no longer hear."""
        if self._stopping:
            raise OverloadedError("the engine is stopping")
        if not isinstance(api_key, str):
            raise InputError("api_key must be a string")
        account = self.account_id_for_key(api_key)
        digest = apikeys.digest(api_key)
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

    def lease(self, limit_key: str, n: int) -> tuple[int, float]:
        """Up to ``n`` tokens of ``limit_key``'s rate limit from the core's one count."""
        granted, retry_after = self._ask_core("lease", limit_key, n)
        return int(granted), float(retry_after)

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


class LeasedLimiter:
    """The GCRA interface (``check(key) -> Decision``) of the customer middleware, with the count kept
    by the core: each key's tokens are leased in blocks, fetched in the background when fewer than half
    a block is left, so a request never waits for a network round trip. A key with no token may go
    ``CREDIT`` requests into debt (repaid from its next lease) while one is fetched - a key this edge has
    not leased for yet, a whole first block (``lease``): the requests that arrive together on a new key
    (32 connections opening at once) would otherwise be refused before the first lease is back. Beyond
    that, or once the core has refused a lease, the request is refused (429, ``Retry-After``). So an edge
    runs at most ``lease`` requests ahead of the core's count on a key it meets, and ``CREDIT`` after.

    A key's block starts at ``lease`` and grows fourfold (up to ``max_lease``) each time it ran dry while
    a full block was on its way: a busy key's requests outran the round trip, and refusing them would be
    a 429 far below the key's limit (seen at ~2,000 requests/s with a limit of a million). It falls back
    to ``lease`` when the core grants less than asked - the key is near its limit. And an edge never
    holds more than its ``share`` of a key's burst (burst / number of edges) unspent: blocks that grew up
    to the whole burst let one edge lease nearly all of it, and the other edge refused a key's 4th
    sequential request with a burst of 100."""

    CREDIT = 1

    def __init__(self, engine: EdgeEngine, executor: Any, lease: int = 20,
                 max_lease: int = 1000, *, edges: int = 1, max_keys: int = 100_000,
                 max_fetches: int = 1024) -> None:
        self.engine = engine
        self.executor = executor
        # Bounded like ``Gcra``: unauthenticated callers are keyed by source address, so a caller with many
        # addresses would otherwise grow these tables (and the executor's queue of leases) for ever.
        self.max_keys = max_keys
        self.max_fetches = max_fetches
        self.forgotten = 0  # keys dropped to stay within max_keys
        self.burst = int(engine.settings.http.rate_limit_burst)
        self.share = max(1, self.burst // max(1, edges))  # the most tokens of a key this edge holds
        self.lease = max(1, min(lease, self.share))
        self.max_lease = max(self.lease, min(max_lease, self.share))
        self._block: dict[str, int] = {}  # each key's block size, when above ``lease``
        self._starved: set[str] = set()  # keys that ran dry while their lease was on its way
        self._tokens: dict[str, int] = {}  # may go CREDIT (a first block before any lease) below zero
        self._leased: set[str] = set()  # keys a lease has come back for
        self._pending: set[str] = set()
        self._retry_after: dict[str, float] = {}  # keys the core refused a lease, and when to retry
        self._lock = threading.Lock()

    def check(self, key: str, now: float | None = None) -> Decision:
        with self._lock:
            tokens = self._tokens.get(key)
            if tokens is None:
                tokens = 0
                if len(self._tokens) >= self.max_keys:
                    self._forget()
            if tokens < self._low(key):
                self._fetch(key)
            credit = self.CREDIT if key in self._leased else self.lease
            if tokens <= 0 and key in self._pending and (key in self._leased or tokens <= -credit):
                # ran dry while its block was on its way (a new key: beyond its first block's credit,
                # not merely before its first lease: that made one request's edge take its whole share)
                self._starved.add(key)
            if tokens > 0 or (tokens > -credit and key not in self._retry_after):
                self._tokens[key] = tokens - 1
                return Decision(True, self.burst, max(0, tokens - 1), 1.0, 0.0)
            retry = self._retry_after.get(key, 0.05)
            return Decision(False, self.burst, 0, retry, retry)

    def _low(self, key: str) -> int:
        return max(1, self._block.get(key, self.lease) // 2)

    def _forget(self) -> None:
        """Drop the oldest keys (not those with a lease on its way) down to three quarters of
        ``max_keys``: amortised O(1) per request. A forgotten key starts afresh: its unspent tokens are
        not used (the core counted them: safe), and it may run one first block ahead of the count again."""
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
            self._retry_after.pop(key, None)
            self.forgotten += 1
        log.warning("edge rate limiter: %d keys remembered (bound %d); forgot the oldest (%d so far)",
                    len(self._tokens), self.max_keys, self.forgotten)

    def _fetch(self, key: str) -> None:
        if key in self._pending or len(self._pending) >= self.max_fetches:
            return  # (over the bound: asked again by the key's next request; its credit still holds)
        self._pending.add(key)
        self.executor.submit(self._lease, key)

    def _lease(self, key: str) -> None:
        """Ask the core for the key's next block, up to this edge's share."""
        with self._lock:
            block = self._block.get(key, self.lease)
            asked = max(1, min(block, self.share - self._tokens.get(key, 0)))
        try:
            granted, retry_after = self.engine.lease(key, asked)
        except SmsrouteError:
            granted, retry_after = 0, 1.0
        with self._lock:
            self._pending.discard(key)
            self._leased.add(key)
            if granted < asked:
                self._block.pop(key, None)
            elif key in self._starved:
                self._block[key] = min(block * 4, self.max_lease)
            self._starved.discard(key)
            tokens = self._tokens.get(key, 0) + granted
            self._tokens[key] = tokens
            if granted == 0:
                self._retry_after[key] = max(retry_after, 0.05)
            else:
                self._retry_after.pop(key, None)
