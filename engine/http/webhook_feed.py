"""From the engine's durable webhook outbox to signed POSTs: order per message, batching, acknowledgements.

The POPs write every status change an account wants a webhook for into their outbox, in the same commit as
the change (``storage.webhook_outbox``), and the engine hands each stored batch to :meth:`WebhookFeed.add`
(from an engine thread: it is moved to the HTTP loop at once). At start-up the feed also reads what the
outboxes still hold (after a restart or ``kill -9``), so nothing committed is ever lost; an event seen twice
(both ways) is taken once.

* **Order per message:** a message's events are released one at a time, in outbox order: the next one
  only after the previous one is finished (delivered, or given up).
* **Endpoint:** the message's ``callback_url``, else the account's webhook URL at the time of release. No
  URL (removed, or disabled after ``410 Gone``): the event is finished as ``no_endpoint``.
* **Batching (opt-in per account):** with ``batch_max`` > 1 the released events of one (account, URL) are
  POSTed together as a JSON array of at most ``batch_max`` events, one signature over the raw body, the
  first event waiting at most ``batch_wait_ms`` for others. By default one event per POST (a JSON
  object).
* **Held back while the dispatcher is full:** a released delivery the dispatcher has no room for waits
  here (in release order; counted in :attr:`WebhookFeed.held`) and is offered again as deliveries
  finish; its events are not acknowledged, so they stay in the outbox. (In a cluster the workers' POP
  shards share ``webhook_max_backlog``, but a share is at least one event.) What waits is bounded by
  what the outboxes hold.
* **Acknowledgement:** every finished event is reported to the engine (``webhook_events_done``): the POP
  removes it from the outbox with its next commit.
* **Retry schedule:** a failed delivery's next attempt is reported too (``webhook_events_retrying``: the
  POP records attempt and time beside the events, ``storage.webhook_outbox``); events read back after a
  restart carry it, and their delivery resumes with that attempt count, not before that time.

Threads: the HTTP loop's, except :meth:`add_threadsafe`.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
from collections.abc import Callable
from typing import NamedTuple

import msgspec

from engine.http.schemas import Event, EventData
from engine.http.webhooks import Delivery, WebhookDispatcher
from engine.messages import StatusItem

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


class Endpoint(NamedTuple):
    url: str
    batch_max: int
    batch_wait_s: float


class Stored(NamedTuple):
    """One event of a POP's outbox."""

    pop: str
    seq: int
    item: StatusItem
    attempt: int = 0  # sends already made (a retry schedule read back from the outbox)
    next_at: float = 0.0  # not sent again before (unix s)


def event_id(message_id: str, status: str) -> str:
    """Stable across retries and restarts: derived from (message id, status)."""
    return "evt_" + hashlib.sha256(f"{message_id}:{status}".encode()).hexdigest()[:32]


def event_of(item: StatusItem) -> Event:
    return Event(event_id(item.message_id, item.status), "message.status", item.at, EventData(
        item.message_id, item.status, item.pop, item.carrier, item.country, item.segments,
        item.price_micro_usd, item.error, item.client_ref))


def event_body(item: StatusItem) -> bytes:
    """The JSON body of one event (one event per POST)."""
    return _encoder.encode(event_of(item))


def _backlog_key(item: StatusItem) -> tuple[str, bool]:
    return item.account_id, bool(item.callback_url)


class WebhookFeed:
    """Feeds outbox events to the dispatcher (see the module docstring)."""

    def __init__(self, dispatcher: WebhookDispatcher, endpoint_for: Callable[[StatusItem],
                 Endpoint | None], done: Callable[[str, list[int]], None],
                 retrying: Callable[[str, list[int], int, float], None] | None = None) -> None:
        self._dispatcher = dispatcher
        self._endpoint_for = endpoint_for
        self._done = done
        self._retrying = retrying
        self._known: set[tuple[str, int]] = set()
        self._chains: dict[str, collections.deque[Stored]] = {}  # message id -> events after the head
        self._buffers: dict[tuple[str, str], list[Stored]] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # events not finished per (account, whether they go to their message's callback_url)
        self._per_account: collections.Counter[tuple[str, bool]] = collections.Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: list[Stored] | None = None  # while the outboxes are read at start: live events wait
        self._waiting: collections.deque[Delivery] = collections.deque()  # no room in the dispatcher
        self._offer_scheduled = False
        self.closed = False

    @property
    def held(self) -> int:
        """Deliveries released but held back because the dispatcher was full."""
        return len(self._waiting)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def backlog(self) -> int:
        """Events not finished yet (queued, batched, in flight or waiting for a retry)."""
        return len(self._known)

    def backlog_of(self, account_id: str) -> tuple[int, int]:
        """The account's events not finished yet: ``(for its webhook URL, for its messages'
        callback_urls)`` — an event goes to its message's ``callback_url`` when it has one."""
        return (self._per_account.get((account_id, False), 0),
                self._per_account.get((account_id, True), 0))

    def add_threadsafe(self, pop: str, seqs: list[int], items: list[StatusItem]) -> None:
        """Engine thread: hand a stored batch to the loop (never waits)."""
        if self.closed or self._loop is None:
            return
        batch = [Stored(pop, seq, item) for seq, item in zip(seqs, items, strict=True)]
        try:
            self._loop.call_soon_threadsafe(self.add, batch)
        except RuntimeError:  # the loop is closed (shutdown): the events stay in the outbox
            self.closed = True

    def hold(self) -> None:
        """Keep live events back (start-up: until :meth:`recovered` has the outboxes' older ones)."""
        self._held = []

    def recovered(self, events: list[Stored]) -> None:
        """The outboxes' contents read at start-up: taken first, then the live events held meanwhile
        (newer in each POP, or the same ones: those are taken once), so each message stays in order."""
        held, self._held = self._held or [], None
        self.add(events)
        self.add(held)

    def add(self, events: list[Stored]) -> None:
        """Take events (in each POP's order); each message's events are released one at a time."""
        if self._held is not None:
            self._held.extend(events)
            return
        for ev in events:
            key = (ev.pop, ev.seq)
            if key in self._known:
                continue
            self._known.add(key)
            self._per_account[_backlog_key(ev.item)] += 1
            chain = self._chains.get(ev.item.message_id)
            if chain is not None:
                chain.append(ev)
                continue
            self._chains[ev.item.message_id] = collections.deque()
            self._release(ev)

    def _release(self, ev: Stored) -> None:
        endpoint = self._endpoint_for(ev.item)
        if endpoint is None:
            self._dispatcher.counts["no_endpoint"] = self._dispatcher.counts.get("no_endpoint", 0) + 1
            self._finish([ev])
            return
        if endpoint.batch_max <= 1:
            self._send(endpoint.url, [ev], batched=False)
            return
        key = (ev.item.account_id, endpoint.url)
        buffer = self._buffers.setdefault(key, [])
        buffer.append(ev)
        if len(buffer) >= endpoint.batch_max:
            self._flush(key)
        elif len(buffer) == 1 and self._loop is not None:
            self._timers[key] = self._loop.call_later(endpoint.batch_wait_s, self._flush, key)

    def _flush(self, key: tuple[str, str]) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        events = self._buffers.pop(key, [])
        if events:
            self._send(key[1], events, batched=True)

    def _send(self, url: str, events: list[Stored], *, batched: bool) -> None:
        items = [ev.item for ev in events]
        ids = [event_id(i.message_id, i.status) for i in items]
        if batched:  # a JSON array; receivers deduplicate on each event's own id
            body = _encoder.encode([event_of(i) for i in items])
            ident = "evb_" + hashlib.sha256(",".join(ids).encode()).hexdigest()[:32]
        else:
            body, ident = event_body(items[0]), ids[0]
        delivery = Delivery(url, items[0].account_id, ident, body, first_at=min(i.at for i in items),
                            attempt=max(ev.attempt for ev in events),
                            next_at=max(ev.next_at for ev in events), events=events)
        if self._waiting or not self._dispatcher.has_room:
            self._waiting.append(delivery)  # durable events are never dropped: offered again later
            return
        self._dispatcher.submit(delivery)

    def _offer(self) -> None:
        """Hand held-back deliveries to the dispatcher while it has room (oldest first)."""
        self._offer_scheduled = False
        while self._waiting and self._dispatcher.has_room and not self.closed:
            self._dispatcher.submit(self._waiting.popleft())

    def _offer_soon(self) -> None:
        """After the dispatcher's current step: a finishing delivery still counts in its backlog."""
        if self._waiting and not self._offer_scheduled and self._loop is not None:
            self._offer_scheduled = True
            self._loop.call_soon(self._offer)

    def retrying(self, delivery: Delivery) -> None:
        """The dispatcher's ``on_retry``: have the POPs record the delivery's schedule with its events."""
        if self._retrying is None or not delivery.events:
            return
        by_pop: dict[str, list[int]] = {}
        for ev in delivery.events:
            if (ev.pop, ev.seq) in self._known:
                by_pop.setdefault(ev.pop, []).append(ev.seq)
        for pop, seqs in by_pop.items():
            try:
                self._retrying(pop, seqs, delivery.attempt, delivery.next_at)
            except Exception:  # not recorded: after a restart it is only sent sooner
                log.exception("could not report a webhook retry schedule")

    def finished(self, delivery: Delivery, outcome: str) -> None:
        """The dispatcher's ``on_finished``: its events are done, whatever the outcome, except
        ``dropped`` (no room: it waits here, its events stay in the outbox)."""
        if outcome == "dropped" and delivery.events:
            self._waiting.appendleft(delivery)
        elif delivery.events:
            self._finish(delivery.events)
        self._offer_soon()

    def _finish(self, events: list[Stored]) -> None:
        by_pop: dict[str, list[int]] = {}
        for ev in events:
            if (ev.pop, ev.seq) not in self._known:
                continue
            self._known.discard((ev.pop, ev.seq))
            counted = _backlog_key(ev.item)
            left = self._per_account[counted] - 1
            if left > 0:
                self._per_account[counted] = left
            else:
                self._per_account.pop(counted, None)
            by_pop.setdefault(ev.pop, []).append(ev.seq)
        for pop, seqs in by_pop.items():
            try:
                self._done(pop, seqs)
            except Exception:  # they stay in the outbox and are sent again after a restart
                log.exception("could not report webhook events done")
        for ev in events:
            chain = self._chains.get(ev.item.message_id)
            if chain is None:
                continue
            if chain:
                self._release(chain.popleft())
            else:
                del self._chains[ev.item.message_id]

    def stop(self) -> None:
        self.closed = True
        self._waiting.clear()  # (their events stay in the outboxes)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
