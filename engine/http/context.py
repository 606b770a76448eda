"""What both HTTP apps share: the engine, the HTTP settings, the HTTP stores, limiter, metrics, audit.

One :class:`HttpContext` is built by :class:`engine.http.server.HttpServers` on the HTTP loop and stored in
each app as ``app[CTX]``. :meth:`HttpContext.call` runs a blocking engine call (writes that commit, actor
asks) on a small thread pool so the event loop never waits on the disk or on an actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from engine.http.egress import DestinationGuard
from engine.http.idempotency import IdempotencyStore
from engine.http.metrics import HttpMetrics
from engine.http.ratelimit import Gcra
from engine.http.requestlog import RequestLog
from engine.http.store import GroupCommitter
from engine.http.tokens import TokenStore

T = TypeVar("T")

DEFAULT_RATE_PER_SECOND = 1000.0
DEFAULT_BURST = 2000


@dataclass
class HttpContext:
    engine: Any
    http: Any  # engine.config.HttpSettings (or anything with the same attributes)
    committer: GroupCommitter
    requestlog: RequestLog
    idempotency: IdempotencyStore
    tokens: TokenStore
    limiter: Gcra
    metrics: HttpMetrics
    audit: Any = None  # storage.audit.AuditLog for control requests
    dispatcher: Any = None  # engine.http.webhooks.WebhookDispatcher
    notifier: Any = None  # engine.http.notify.StatusNotifier
    feed: Any = None  # engine.http.webhook_feed.WebhookFeed
    tls: bool = False
    destinations: DestinationGuard = field(default_factory=DestinationGuard)  # webhook SSRF guard
    auth_failures: Gcra | None = None  # failed control-port authentications per source address
    idempotency_secret: bytes = b""  # keys the request hashes of idempotency records
    edge_token: str = ""  # an HTTP edge that forwards a request proves itself with it (engine.cluster.edge)
    executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(4, thread_name_prefix="http-engine"))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def setting(self, name: str, default: Any) -> Any:
        """An HTTP setting that older configs may not have."""
        value = getattr(self.http, name, None)
        return default if value is None else value


# Typed keys for what the apps and requests carry (aiohttp's AppKey / RequestKey).
CTX = web.AppKey("ctx", HttpContext)
APP_NAME = web.AppKey("name", str)
MAX_BODY = web.AppKey("max_body_bytes", int)
BODY_TIMEOUT = web.AppKey("body_timeout_seconds", float)
API_KEY = web.RequestKey("api_key", object)  # engine.apikeys.PresentedKey | None: hashed once
ACCOUNT_ID = web.RequestKey("account_id", object)  # str | None
OPERATOR = web.RequestKey("operator", str)
