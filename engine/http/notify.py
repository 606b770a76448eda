"""Engine status changes to metrics, and what the webhook feed asks about accounts, without slowing the engine.

The engine calls :meth:`StatusInbox.on_status` from one of its threads for every status change. The inbox
only appends to a deque and, if no drain is scheduled, schedules one on the HTTP loop with
``call_soon_threadsafe`` — the engine thread never waits for the loop. The deque is bounded: when the loop
falls that far behind, the oldest changes are dropped (metrics only: webhooks come from the engine's
durable outbox through :mod:`engine.http.webhook_feed`, never from here).

:class:`StatusNotifier` counts each change in the metrics and answers the webhook feed's questions: where
an event goes (:meth:`StatusNotifier.endpoint_for`: the message's ``callback_url`` wins over the account's
``webhook_url``; a URL that answered ``410 Gone`` is disabled — the account's URL is cleared in the engine,
a per-message URL remembered, for that account only, in a bounded set), and which secrets sign it.
Account records are cached for a second (webhook settings change rarely; a change through the API
forgets the entry at once).

Event body (JSON, :class:`engine.http.schemas.Event`)::

    {"id": "evt_…", "type": "message.status", "created_at": 1700000000.25,
     "data": {"id": "msg_…", "status": "delivered", "pop": "fra", "carrier": "…", "country": "DE",
              "segments": 1, "price_micro_usd": 75000, "error": "", "client_ref": "order-7"}}

The event id is derived from (message id, status), so it is stable across retries and restarts.

Low balance (``engine.billing``): when an account's balance goes below its threshold, one event goes to the
account's webhook URL (never a message's ``callback_url``; ``receipt_statuses`` does not filter it), through
the same dispatcher (signed, retried) but not through the outbox (:meth:`StatusNotifier.low_balance`)::

    {"id": "evt_…", "type": "account.low_balance", "created_at": 1700000000.25,
     "data": {"balance_micro_usd": 900000, "threshold_micro_usd": 1000000}}
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from engine.http.schemas import LowBalanceData, LowBalanceEvent, encoder
from engine.http.webhook_feed import Endpoint, event_body, event_id  # noqa: F401 (re-exported)
from engine.http.webhooks import Delivery

log = logging.getLogger(__name__)

INBOX_LIMIT = 200_000
ACCOUNT_CACHE_SECONDS = 1.0
MAX_DISABLED = 10_000


def low_balance_body(event: Any) -> tuple[str, bytes]:
    """The event id and body of a low-balance notice (one per crossing: the ledger entry and time)."""
    eid = "evt_" + hashlib.sha256(
        f"{event.account_id}:low_balance:{event.seq}:{event.at!r}".encode()).hexdigest()[:32]
    body = LowBalanceEvent(eid, "account.low_balance", event.at,
                           LowBalanceData(event.balance_micro_usd, event.threshold_micro_usd))
    return eid, encoder.encode(body)  # (the type the OpenAPI document publishes under webhooks)


class StatusInbox:
    """Thread-safe hand-off of status items from engine threads to the HTTP loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sink: Callable[[list[Any]], None],
                 limit: int = INBOX_LIMIT) -> None:
        self._loop = loop
        self._sink = sink
        self._items: collections.deque[Any] = collections.deque(maxlen=limit)
        self._scheduled = False
        self.closed = False
        self.received = 0

    def on_status(self, item: Any) -> None:
        """Engine thread: never blocks (deque append is atomic; full deque drops the oldest)."""
        if self.closed:
            return
        self._items.append(item)
        self.received += 1
        if not self._scheduled:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # loop closed during shutdown
                self.closed = True

    def _drain(self) -> None:
        self._scheduled = False
        batch = []
        while self._items:
            batch.append(self._items.popleft())
        if batch:
            self._sink(batch)


class StatusNotifier:
    """Loop side: metrics for every change, webhook deliveries for the wanted ones."""

    def __init__(self, engine: Any, observe: Callable[[Any], None],
                 call: Callable[..., Any]) -> None:
        self._engine = engine
        self._observe = observe
        self._call = call  # runs a blocking engine call off the loop (returns an awaitable)
        self._accounts: dict[str, tuple[float, Any]] = {}
        # (account id, per-message callback_url) that answered 410: per account, because another
        # account naming the same URL (as a callback or its webhook, shown active) never got that 410
        self._disabled: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    def on_statuses(self, items: list[Any]) -> None:
        for item in items:
            try:
                self._observe(item)
            except Exception:  # one bad item must not stop the others
                log.exception("status metrics failed")

    def account(self, account_id: str) -> Any:
        """The account record, cached for a second (webhook settings change rarely)."""
        now = time.monotonic()
        cached = self._accounts.get(account_id)
        if cached is not None and now - cached[0] < ACCOUNT_CACHE_SECONDS:
            return cached[1]
        try:
            record = self._engine.account(account_id)
        except Exception:  # closed/erased account: no webhook
            record = None
        if len(self._accounts) > 10_000:
            self._accounts.clear()
        self._accounts[account_id] = (now, record)
        return record

    def forget(self, account_id: str, url: str | None = None) -> None:
        """Drop the cached record (its webhook settings just changed); the account naming ``url`` as its
        webhook enables that URL again for it, should it have answered 410 as a callback URL."""
        self._accounts.pop(account_id, None)
        if url:
            self._disabled.pop((account_id, url), None)

    def secrets_for(self, account_id: str) -> list[str]:
        """The secrets that sign now: a rotated-out one only during the rotation overlap."""
        record = self.account(account_id)
        if record is None:
            return []
        signing = getattr(self._engine, "webhook_signing_secrets", None)
        return list(signing(record) if signing is not None else record.webhook_secrets)

    def endpoint_for(self, item: Any) -> Endpoint | None:
        """Where an event goes now (None: nowhere: no URL, a disabled one, or the account is gone);
        batching is the account's setting."""
        record = self.account(item.account_id)
        if record is None:
            return None
        wanted = record.receipt_statuses
        if wanted is not None and item.status not in wanted:  # (a cluster's workers keep them all)
            return None
        url = item.callback_url or record.webhook_url
        if not url or (item.account_id, url) in self._disabled:
            return None
        return Endpoint(url, int(getattr(record, "webhook_batch_max", 1) or 1),
                        int(getattr(record, "webhook_batch_wait_ms", 1000)) / 1000.0)

    def low_balance(self, events: list[Any]) -> list[Delivery]:
        """The deliveries of low-balance notices: to each account's webhook URL, if it has one."""
        out = []
        for event in events:
            record = self.account(event.account_id)
            url = record.webhook_url if record is not None else None
            if url and (event.account_id, url) not in self._disabled:
                eid, body = low_balance_body(event)
                out.append(Delivery(url, event.account_id, eid, body))
        return out

    def on_gone(self, delivery: Delivery) -> None:
        """A receiver answered 410: stop sending there."""
        record = self.account(delivery.account_id)
        if record is not None and record.webhook_url == delivery.url:
            self._accounts.pop(delivery.account_id, None)
            asyncio.ensure_future(self._clear_account_webhook(record, delivery.url))
            log.info("account webhook disabled after 410 Gone")
            return
        self._disabled[(delivery.account_id, delivery.url)] = None  # a per-message callback_url
        if len(self._disabled) > MAX_DISABLED:
            self._disabled.popitem(last=False)

    async def _clear_account_webhook(self, record: Any, url: str) -> None:
        try:
            disable = getattr(self._engine, "disable_webhook", None)  # clears it and alerts the holder
            if disable is not None:
                await self._call(disable, record.id, url)
            else:
                await self._call(self._engine.set_webhook, record.id, None, record.receipt_statuses)
        except Exception:
            log.exception("could not disable the account webhook")
