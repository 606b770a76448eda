"""Signed webhook delivery: the signature scheme and a bounded, concurrent dispatcher with retries.

Signing (the scheme receivers verify): header ``Smsroute-Signature: t=<unix s>,v1=<hex>[,v1=<hex>]`` where
each ``v1`` is ``HMAC-SHA256(secret, "<t>.<raw body>")``. During a secret rotation both the new and the old
secret sign, so a receiver holding either accepts. Receivers compare in constant time and refuse a ``t`` more
than 300 s from their clock (:func:`verify`).

Delivery (:class:`WebhookDispatcher`, runs on one asyncio loop):

* ``submit`` never blocks and never waits for a receiver: the delivery goes into a bounded backlog; when the
  backlog is full the delivery is dropped and counted, so a slow or dead receiver cannot slow routing.
* ``concurrency`` worker tasks send; each attempt has a timeout. One receiver host gets at most
  ``max_per_host`` of them (default a quarter), so a slow receiver cannot delay everyone else's events. 2xx is success. ``410 Gone`` disables the
  endpoint (``on_gone`` callback) and stops. Anything else is retried after
  ``uniform(0, min(cap, base * 2**attempt))`` (exponential backoff, full jitter), until the retry window
  since the first attempt closes. A receiver's ``Retry-After`` (delay-seconds or HTTP-date; anything
  else is ignored) makes the retry no sooner than asked, but at most ``cap`` and never past the window's
  end: only the engine's own schedule gives a delivery up, never a receiver's header.
* Each delivery carries a stable event id (``Smsroute-Event-Id``), the same on every attempt, for
  deduplication by the receiver; the signature timestamp is fresh on every attempt.

* Destinations must be public addresses unless ``allow_private_networks`` (see ``engine.http.egress``):
  the URL is judged again before each send and the connector refuses a non-public peer at connect time;
  a refused destination is not retried and is counted as ``blocked``. Redirects are never followed.

Every terminal outcome of a delivery (delivered, gone, expired, blocked, unsigned_dropped, dropped) is
reported to ``on_finished(delivery, outcome)``: the webhook feed (:mod:`engine.http.webhook_feed`) then
removes its events from the engine's durable outbox. A retry is reported to ``on_retry(delivery)`` once it
is scheduled (``attempt`` and ``next_at`` set): the feed has the engine record the schedule beside the events
in the outbox, so after a restart (or ``kill -9``) the delivery is sent again — with the same event ids — not
before ``next_at`` and with its attempt count, as if there had been no restart (``submit`` honours a
delivery's ``next_at``).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import email.utils
import hashlib
import hmac
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver

from engine.errors import InvalidUrl
from engine.http.egress import EgressRefused, judge_url, parse_url
from engine.http.webhook_client import WebhookClient

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Smsroute-Signature"
EVENT_ID_HEADER = "Smsroute-Event-Id"
TOLERANCE_S = 300
BLOCKED = -1  # a _send outcome: the destination is not allowed (never retried)
UNSIGNED = -2  # a _send outcome: no signing secret (the account is gone); dropped, never sent


def signature(secret: str, t: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<t>.<body>"`` under ``secret``."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secrets: Sequence[str], body: bytes, t: int) -> str:
    """The ``Smsroute-Signature`` header value: one ``v1`` per secret (newest first)."""
    if not secrets:
        raise ValueError("at least one secret is needed to sign")
    return ",".join([f"t={t}", *(f"v1={signature(s, t, body)}" for s in secrets)])


def verify(header: str, secrets: Sequence[str], body: bytes, now: float,
           tolerance_s: int = TOLERANCE_S) -> bool:
    """Receiver side: true when ``t`` is fresh and some ``v1`` matches some secret (constant time)."""
    t: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            t = int(value)
        elif key == "v1":
            candidates.append(value)
    if t is None or abs(now - t) > tolerance_s:
        return False
    ok = False
    for secret in secrets:
        expected = signature(secret, t, body)
        for candidate in candidates:
            ok |= hmac.compare_digest(expected, candidate)
    return ok


@dataclass
class Delivery:
    """One event to one URL; ``attempt`` counts sends already made."""

    url: str
    account_id: str
    event_id: str
    body: bytes
    first_at: float = 0.0
    attempt: int = 0
    next_at: float = 0.0  # not sent before (unix s): a retry's schedule, or one read back after a restart
    extra: dict[str, str] = field(default_factory=dict)
    events: Any = None  # what the sender of the delivery needs back in on_finished


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 1.0
    cap_s: float = 3600.0
    window_s: float = 86400.0
    timeout_s: float = 10.0


class WebhookDispatcher:
    """Bounded concurrent webhook sender (see the module docstring)."""

    def __init__(self, secrets_for: Callable[[str], Sequence[str]],
                 on_gone: Callable[[Delivery], None], *, concurrency: int = 16,
                 max_backlog: int = 10_000, policy: RetryPolicy | None = None,
                 max_per_host: int | None = None, allow_private_networks: bool = False,
                 resolver: AbstractResolver | None = None,
                 rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time,
                 on_finished: Callable[[Delivery, str], None] | None = None,
                 on_retry: Callable[[Delivery], None] | None = None) -> None:
        self._on_finished = on_finished
        self._on_retry = on_retry
        self._secrets_for = secrets_for
        self._on_gone = on_gone
        self._concurrency = concurrency
        self._max_backlog = max_backlog
        self._allow_private = allow_private_networks
        self._resolver = resolver  # None: the system resolver (tests inject their DNS answers)
        self.policy = policy or RetryPolicy()
        self._rand = rand
        self._clock = clock
        self._queue: asyncio.Queue[Delivery] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._client: WebhookClient | None = None
        self._busy = 0
        self._max_per_host = max_per_host or max(1, concurrency // 4)
        self._per_host: dict[str, int] = {}
        self._parked: dict[str, collections.deque[Delivery]] = {}
        self.counts = {"delivered": 0, "retried": 0, "gone": 0, "expired": 0, "dropped": 0,
                       "blocked": 0, "unsigned_dropped": 0}

    @property
    def backlog(self) -> int:
        """Deliveries queued, waiting for a retry, or being sent."""
        queued = self._queue.qsize() if self._queue is not None else 0
        parked = sum(len(d) for d in self._parked.values())
        return queued + parked + len(self._timers) + self._busy

    @property
    def has_room(self) -> bool:
        """True when :meth:`submit` would queue a delivery rather than drop it (the webhook feed holds
        its events back meanwhile: they are durable and must not be dropped)."""
        return self._queue is not None and self.backlog < self._max_backlog

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._client = WebhookClient(timeout_s=self.policy.timeout_s,
                                     allow_private_networks=self._allow_private,
                                     resolver=self._resolver, max_idle_per_origin=self._max_per_host)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._concurrency)]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._client is not None:
            await self._client.close()

    def is_alive(self) -> bool:
        """True once started while every worker task runs. A task that ended (an error out of its
        loop: ``_attempt``'s are caught, the bookkeeping around it is not) sends nothing more; with all
        of them gone the webhooks wait for ever, so the engine lists this among its long-lived parts."""
        workers = self._workers
        return bool(workers) and not any(task.done() for task in workers)

    def submit(self, delivery: Delivery) -> bool:
        """Queue a delivery (loop thread only), to be sent at once or, if its ``next_at`` is still
        ahead, then; False (and counted) when the backlog is full."""
        if self._queue is None or self.backlog >= self._max_backlog:
            self._finished(delivery, "dropped")
            return False
        now = self._clock()
        if not delivery.first_at:
            delivery.first_at = now
        if delivery.next_at > now:
            self._schedule(delivery, delivery.next_at - now)
        else:
            self._queue.put_nowait(delivery)
        return True

    def backoff_s(self, attempt: int) -> float:
        """Full jitter: ``uniform(0, min(cap, base * 2**attempt))``."""
        ceiling = min(self.policy.cap_s, self.policy.base_s * (2 ** min(attempt, 62)))
        return self._rand() * ceiling

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            delivery = await self._queue.get()
            host = _host(delivery.url)
            if self._per_host.get(host, 0) >= self._max_per_host:
                self._parked.setdefault(host, collections.deque()).append(delivery)
                continue  # that receiver already has its share of workers
            self._per_host[host] = self._per_host.get(host, 0) + 1
            self._busy += 1
            try:
                await self._attempt(delivery)
            except Exception:  # a bug must not kill the worker
                log.exception("webhook worker error")
            finally:
                self._busy -= 1
                self._release_host(host)

    def _release_host(self, host: str) -> None:
        self._per_host[host] -= 1
        if not self._per_host[host]:
            del self._per_host[host]
        parked = self._parked.get(host)
        if parked:
            self._queue.put_nowait(parked.popleft())
            if not parked:
                del self._parked[host]

    async def _attempt(self, delivery: Delivery) -> None:
        status, retry_after = await self._send(delivery)
        delivery.attempt += 1
        if status == UNSIGNED:
            self._finished(delivery, "unsigned_dropped")
            return
        if status == BLOCKED:
            log.warning("webhook event %s refused: destination is not a public address",
                        delivery.event_id)
            self._finished(delivery, "blocked")
            return
        if status is not None and 200 <= status < 300:
            self._finished(delivery, "delivered")
            return
        if status == 410:
            self._on_gone(delivery)
            self._finished(delivery, "gone")
            return
        now = self._clock()
        deadline = delivery.first_at + self.policy.window_s
        delay = self.backoff_s(delivery.attempt)
        if now + delay > deadline:  # only the engine's own schedule ends a delivery
            log.info("webhook event %s given up after %d attempts", delivery.event_id,
                     delivery.attempt)
            self._finished(delivery, "expired")
            return
        if retry_after is not None:  # never sooner than asked, never later than the policy allows
            delay = max(delay, min(retry_after, self.policy.cap_s, deadline - now))
        self.counts["retried"] += 1
        delivery.next_at = now + delay
        self._schedule(delivery, delay)
        if self._on_retry is not None:
            try:
                self._on_retry(delivery)
            except Exception:  # the schedule is only not durable then: a restart sends it sooner
                log.exception("webhook on_retry failed")

    def _finished(self, delivery: Delivery, outcome: str) -> None:
        self.counts[outcome] += 1
        if self._on_finished is not None:
            try:
                self._on_finished(delivery, outcome)
            except Exception:  # a bug there must not kill the worker
                log.exception("webhook on_finished failed")

    def _schedule(self, delivery: Delivery, delay: float) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            if self._queue is not None:
                self._queue.put_nowait(delivery)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _send(self, delivery: Delivery) -> tuple[int | None, float | None]:
        assert self._client is not None
        headers = {"Content-Type": "application/json", EVENT_ID_HEADER: delivery.event_id,
                   **delivery.extra}
        try:
            (parse_url if self._allow_private else judge_url)(delivery.url)
        except InvalidUrl:
            return BLOCKED, None
        secrets = list(self._secrets_for(delivery.account_id))[:2]
        if not secrets:  # never send an unsigned webhook (e.g. the account was erased meanwhile)
            return UNSIGNED, None
        headers[SIGNATURE_HEADER] = sign(secrets, delivery.body, int(self._clock()))
        try:
            status, retry_after = await self._client.post(delivery.url, delivery.body, headers)
            return status, retry_after_s(retry_after, self._clock())
        except EgressRefused:
            return BLOCKED, None
        except (TimeoutError, OSError, ValueError, UnicodeError):
            return None, None


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


_DELTA_SECONDS = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")


def retry_after_s(value: str | None, now: float) -> float | None:
    """A receiver's ``Retry-After`` as seconds from ``now``: RFC 9110 delay-seconds (a decimal
    fraction is accepted too) or an HTTP-date; None for anything else (``inf``, ``nan``, ``-5``,
    ``1e400``, garbage), so the normal backoff applies. Always finite and >= 0: the receiver's value
    is a hint, which the dispatcher then clamps to its own retry policy."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)
    try:  # HTTP-date form (IMF-fixdate; the obsolete forms email.utils reads too)
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" or no zone: HTTP-dates are always UTC
        when = when.replace(tzinfo=datetime.UTC)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None
