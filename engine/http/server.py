"""Runs the customer API and the control port on one uvloop event loop in a dedicated thread.

``HttpServers(engine, settings).start()`` binds both sockets (127.0.0.1 by default, port 0 picks a free
port) and returns once they listen; ``customer_port`` / ``control_port`` then hold the bound ports.
``stop()`` closes the listeners, lets in-progress requests finish (bounded), stops webhook delivery and
joins the thread. With ``tls_cert``/``tls_key`` set, both servers speak TLS only (minimum TLS 1.2) and
answers carry HSTS. On first start with no operator token, one with every role is written to
``<data_dir>/operator.token`` (mode 0600) and its path — never the token — is printed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import uvloop
from aiohttp import web

from engine.errors import CannotListen, ConfigError, SmsrouteError
from engine.http import memory
from engine.http.app_control import build_control_app
from engine.http.app_customer import build_customer_app
from engine.http.connections import (
    PARSER_LIMITS,
    ConnectionGate,
    ConnectionLimits,
    GuardedServer,
    ensure_descriptors,
)
from engine.http.context import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, HttpContext
from engine.http.egress import DestinationGuard
from engine.http.idempotency import IdempotencyStore
from engine.http.metrics import HttpMetrics, Snapshot
from engine.http.notify import StatusInbox, StatusNotifier
from engine.http.ratelimit import Gcra, Grant, Lease
from engine.http.requestlog import RequestLog
from engine.http.shedding import Shedder
from engine.http.store import HTTP_MAP_SIZE, GroupCommitter, open_http_env
from engine.http.tokens import TokenStore, ensure_first_token
from engine.http.webhook_feed import Stored, WebhookFeed
from engine.http.webhooks import RetryPolicy, WebhookDispatcher
from engine.retry_log import RetryLog
from storage.account_keys import DATA
from storage.crypto import Sealer
from storage.datadir import startup_error

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 5.0
SWEEP_INTERVAL_S = 3600.0
OUTBOX_RETRY_S = 1.0
OUTBOX_LOG_EVERY_S = 60.0  # while the outboxes cannot be read: a summary line at most this often


def _local_secret(engine: Any, name: str) -> bytes:
    """A persistent secret of the engine's key folder (a per-process one for a stand-in engine)."""
    runtime = getattr(engine, "runtime", None)
    return runtime.local_secret(name) if runtime is not None else os.urandom(32)


def _account_sealers(engine: Any) -> Callable[[str], Sealer] | None:
    """Each account's data key (what the idempotency answers are sealed under, so erasure reaches
    them); None for a stand-in engine without account keys."""
    runtime = getattr(engine, "runtime", None)
    keys = getattr(runtime, "account_keys", None)
    return None if keys is None else (lambda account_id: keys.sealer(account_id, DATA))


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Server TLS: TLS 1.2 minimum (1.3 preferred by OpenSSL when both sides have it). A file that is
    missing, unreadable or not a matching PEM certificate and key is a ``ConfigError`` naming it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError too
        if isinstance(exc, ssl.SSLError):
            problem = "not a PEM certificate and its matching private key" + (
                f" ({exc.reason})" if exc.reason else "")
        else:
            problem = f"{exc.filename or cert}: {exc.strerror}"
        raise ConfigError(f"[http] tls_cert = {cert!r} / tls_key = {key!r}: {problem}") from None
    return context


class HttpServers:
    """Both HTTP servers and everything they share, on their own thread and loop."""

    def __init__(self, engine: Any, settings: Any = None, edge_token: str = "") -> None:
        """``edge_token``: the secret this core's HTTP edges prove themselves with when they forward a
        client's address (``engine.cluster.edge``); empty, no forwarded address is believed. It is
        passed in code, never read from the environment that every child process would inherit."""
        self.engine = engine
        self._edge_token = edge_token
        settings = settings if settings is not None else engine.settings
        self.http = getattr(settings, "http", settings)
        limits = getattr(settings, "engine", None)  # [engine] http_map_size_mb; HTTP settings alone: default
        self.map_size = limits.http_map_size_mb << 20 if limits is not None else HTTP_MAP_SIZE
        self.customer_port: int | None = None
        self.control_port: int | None = None
        self.ctx: HttpContext | None = None
        self.apps: dict[str, web.Application] = {}
        self.sweep_totals: dict[str, int] = {}
        self.gates: dict[str, ConnectionGate] = {}
        self.shedder: Shedder | None = None
        self.token_path = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self) -> HttpServers:
        """Bind and serve; returns once both servers listen (raises what went wrong otherwise)."""
        self._thread = threading.Thread(target=self._main, name="smsroute-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("HTTP servers did not start in time")
        if self._error is not None:
            self._thread.join(SHUTDOWN_TIMEOUT_S)
            error = self._error
            typed = startup_error(error, self.engine.data_dir) if isinstance(error, Exception) \
                else None
            if typed is None or typed is error:
                raise error
            raise typed from error
        return self

    def lease(self, key: str, n: int, timeout: float = 2.0) -> Lease:
        """Up to ``n`` tokens of the customer API's rate limit of ``key``, and the key's count after
        them (for an HTTP edge process; the limiter belongs to this loop, so the lease runs on it)."""
        return _on_loop_within(self._loop, lambda: self.ctx.limiter.lease(key, n), timeout)

    def lease_block(self, key: str, n: int, give_back: list, split: int, held: int,
                    timeout: float = 2.0) -> Grant:
        """An HTTP edge's exchange of ``key``'s tokens: ``give_back`` credited, up to ``n`` leased (see
        :meth:`engine.http.ratelimit.Gcra.lease_block`), on this loop like :meth:`lease`."""
        return _on_loop_within(self._loop, lambda: self.ctx.limiter.lease_block(
            key, n, give_back=give_back, split=split, held=held), timeout)

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT_S * 3)

    def _main(self) -> None:
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() or logged
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("HTTP servers stopped with an error")
        finally:
            self._ready.set()
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        env = open_http_env(self.engine.data_dir, self.map_size)
        ctx, inbox, dispatcher = self._build(env)
        feed: WebhookFeed = ctx.feed
        runners: list[web.AppRunner] = []
        notices: StatusInbox | None = None
        try:
            await dispatcher.start()
            self.engine.on_status(inbox.on_status)
            await self._start_feed(ctx, feed)
            notices = self._low_balance_inbox(ctx)
            ssl_ctx = tls_context(self.http.tls_cert, self.http.tls_key) if ctx.tls else None
            self.apps = {"customer": build_customer_app(ctx), "control": build_control_app(ctx)}
            ensure_descriptors(*(connection_limits(self.http, name) for name in self.apps))
            self.customer_port = await self._site(runners, "customer", self.http.customer_host,
                                                  self.http.customer_port, ssl_ctx,
                                                  "customer API", "--customer-port")
            self.control_port = await self._site(runners, "control", self.http.control_host,
                                                 self.http.control_port, ssl_ctx,
                                                 "control port", "--control-port")
            self._announce_token(ctx)
            sweeper = asyncio.create_task(self._sweep_forever(ctx))
            self._ready.set()
            await self._stop.wait()
            sweeper.cancel()
        finally:
            inbox.closed = True
            feed.stop()
            loader = getattr(self, "_feed_loader", None)
            if loader is not None:
                loader.cancel()
            if self.shedder is not None:
                self.shedder.stop()
            if notices is not None:
                notices.closed = True
            for runner in reversed(runners):
                await runner.cleanup()
            await dispatcher.stop()
            ctx.requestlog.flush()
            await ctx.committer.flush()
            ctx.committer.close()
            ctx.executor.shutdown(wait=True)
            env.close()

    def _low_balance_inbox(self, ctx: HttpContext) -> StatusInbox | None:
        """Low-balance notices from the engine's thread to webhooks (the dispatcher, as the outbox's
        events; ``engine.http.notify``)."""
        billing = getattr(self.engine, "billing", None)
        if billing is None:  # a stand-in engine (bench.http_load) has no ledger
            return None

        def deliver(events: list) -> None:
            for delivery in ctx.notifier.low_balance(events):
                ctx.dispatcher.submit(delivery)

        inbox = StatusInbox(asyncio.get_running_loop(), deliver)
        billing.on_low_balance(inbox.on_status)
        return inbox

    def _build(self, env: Any) -> tuple[HttpContext, StatusInbox, WebhookDispatcher]:
        committer = GroupCommitter(env)
        http = self.http
        rate = getattr(http, "rate_limit_per_second", None) or DEFAULT_RATE_PER_SECOND
        burst = getattr(http, "rate_limit_burst", None) or DEFAULT_BURST
        metrics = HttpMetrics(snapshot=self._snapshot)
        secret = _local_secret(self.engine, "idempotency")
        ctx = HttpContext(engine=self.engine, http=http, committer=committer,
                          requestlog=RequestLog(env, committer),
                          idempotency=IdempotencyStore(env, committer, secret,
                                                       sealer_for=_account_sealers(self.engine)),
                          tokens=TokenStore(env),
                          limiter=Gcra(rate, int(burst)), metrics=metrics,
                          audit=_audit_log(env, self.engine), tls=bool(http.tls_cert and http.tls_key),
                          destinations=DestinationGuard(bool(http.webhook_allow_private_networks)),
                          auth_failures=_auth_failure_limiter(http),
                          idempotency_secret=secret,
                          edge_token=self._edge_token)
        notifier = StatusNotifier(self.engine, metrics.observe_status, ctx.call)
        feed_box: list[WebhookFeed] = []
        dispatcher = WebhookDispatcher(
            notifier.secrets_for, notifier.on_gone,
            concurrency=int(getattr(http, "webhook_concurrency", None) or 32),
            max_backlog=int(getattr(http, "webhook_max_backlog", None) or 100_000),
            allow_private_networks=bool(getattr(http, "webhook_allow_private_networks", False)),
            policy=RetryPolicy(window_s=float(getattr(http, "webhook_retry_window_seconds", None)
                                              or 86400.0)),
            on_finished=lambda delivery, outcome: feed_box[0].finished(delivery, outcome),
            on_retry=lambda delivery: feed_box[0].retrying(delivery))
        feed = WebhookFeed(dispatcher, notifier.endpoint_for,
                           partial(self._engine_call, "webhook_events_done"),
                           partial(self._engine_call, "webhook_events_retrying"))
        feed_box.append(feed)
        inbox = StatusInbox(asyncio.get_running_loop(), notifier.on_statuses)
        ctx.dispatcher = dispatcher
        ctx.notifier = notifier
        ctx.feed = feed
        self.ctx = ctx
        return ctx, inbox, dispatcher

    async def _start_feed(self, ctx: HttpContext, feed: WebhookFeed) -> None:
        """Webhooks come from the engine's durable outbox: subscribe first, then read what it still
        holds (after a restart), so no event is missed; one seen both ways is taken once."""
        feed.bind(asyncio.get_running_loop())
        subscribe = getattr(self.engine, "on_webhook_events", None)
        if subscribe is None:  # a stand-in engine without an outbox (bench stub)
            return
        feed.hold()  # a live event of a message must not overtake its older events in the outbox
        subscribe(feed.add_threadsafe)
        self._feed_loader = asyncio.create_task(self._load_outboxes(ctx, feed))

    async def _load_outboxes(self, ctx: HttpContext, feed: WebhookFeed) -> None:
        """What the outboxes hold, read once; retried while they cannot be read yet (the workers of a
        cluster may start after the core, or one is hung). Live events wait meanwhile (held by the
        feed). Logged once when it starts, a summary at most every ``OUTBOX_LOG_EVERY_S``, and once
        when the outboxes are read (before: a warning per attempt, one a second)."""
        retries = RetryLog(log, "webhooks: outboxes not readable yet", "webhooks: outboxes readable",
                           every=OUTBOX_LOG_EVERY_S)
        while True:
            try:
                pending = await ctx.call(self.engine.pending_webhook_events)
                break
            except SmsrouteError as exc:
                retries.failed(exc.code)
                await asyncio.sleep(OUTBOX_RETRY_S)
        retries.succeeded()
        if pending:
            log.info("webhooks: %d events from the outbox to deliver", len(pending))
        feed.recovered([Stored(*row) for row in pending])

    def _engine_call(self, method: str, *args: Any) -> None:
        """Call the engine's ``method`` if it has one (a stand-in engine, the bench's stub, may not)."""
        call = getattr(self.engine, method, None)
        if call is not None:
            call(*args)

    def parts_alive(self) -> dict[str, bool]:
        """The HTTP layer's long-lived parts (``Engine.parts_alive``): ``webhooks``, the dispatcher's
        workers running and the outbox read at start not ended on an error (live events wait, held by
        the feed, until it is read: failed, they would wait for ever). Flag reads, from any thread."""
        ctx = self.ctx
        dispatcher = getattr(ctx, "dispatcher", None) if ctx is not None else None
        if dispatcher is None:
            return {}
        loader = getattr(self, "_feed_loader", None)
        loader_failed = (loader is not None and loader.done() and not loader.cancelled()
                         and loader.exception() is not None)
        return {"webhooks": dispatcher.is_alive() and not loader_failed}

    @property
    def sweepables(self) -> dict[str, Any]:
        """The HTTP layer's stores with a ``sweep(now) -> int`` (for the engine's retention sweeper)."""
        ctx = self.ctx
        if ctx is None:
            return {}
        stores = {"request_log": ctx.requestlog, "idempotency": ctx.idempotency,
                  "operator_tokens": ctx.tokens}
        if ctx.audit is not None:
            stores["audit:control"] = ctx.audit
        return stores

    async def _sweep_forever(self, ctx: HttpContext) -> None:
        """Sweep the request log (90 days) and idempotency records (24 h) now and every hour, so
        they are bounded even when no engine sweeper calls :attr:`sweepables`."""
        while True:
            for name, store in self.sweepables.items():
                try:
                    removed = await ctx.call(store.sweep, time.time())
                    self.sweep_totals[name] = self.sweep_totals.get(name, 0) + removed
                except Exception:
                    log.exception("sweep of %s failed", name)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    def _snapshot(self) -> Snapshot:
        """The numbers behind ``/metrics``; a scrape must not fail because one of them is missing."""
        snap = Snapshot(removed_by_store=dict(self.sweep_totals))
        try:  # one question to the workers for both, bounded (a hung worker is named, not waited for)
            snap.engine = self.engine.stats(with_carriers=True)
            snap.carriers = snap.engine.pop("carriers", [])
        except Exception:
            log.exception("engine.stats() failed during a scrape")
        dispatcher = getattr(self.ctx, "dispatcher", None)
        feed = getattr(self.ctx, "feed", None)
        if dispatcher is not None:
            snap.webhook_backlog = feed.backlog if feed is not None else dispatcher.backlog
            snap.webhook_held = feed.held if feed is not None else None
            snap.webhook_outcomes = dict(dispatcher.counts)
        snap.connections = {app: {"open": gate.open, **gate.counts} for app, gate in self.gates.items()}
        if self.shedder is not None:
            snap.shedding = {"pending": self.shedder.pending, **self.shedder.counts}
        committer = getattr(self.ctx, "committer", None)
        if committer is not None:
            snap.request_log_dropped = committer.later_dropped
        edge_queries = getattr(getattr(self.engine, "runtime", None), "edge_queries", None)
        if edge_queries is not None:
            snap.edge_query_timeouts = dict(edge_queries.timeouts)
        return snap

    async def _site(self, runners: list[web.AppRunner], name: str, host: str, port: int,
                    ssl_ctx: ssl.SSLContext | None, what: str, flag: str) -> int:
        limits = connection_limits(self.http, name)
        runner = web.AppRunner(self.apps[name], access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                               keepalive_timeout=limits.keepalive_timeout_s, **PARSER_LIMITS)
        await runner.setup()
        # bounded connections, head timeout, JSON answers and brief logs for what cannot be parsed
        runner.server.__class__ = GuardedServer
        runner.server.gate = self.gates[name] = ConnectionGate(limits)
        runner.server.app_name = name
        if name == "customer":  # overload is refused at the door (the control port always answers)
            self.shedder = Shedder(int(getattr(self.http, "max_pending_requests", 64)),
                                   float(getattr(self.http, "queue_delay_target_ms", 25.0)) / 1000,
                                   after_burst=memory.trim)
            runner.server.request_handler = self.shedder.wrap(runner.server.request_handler)
            self.shedder.start(asyncio.get_running_loop())
        runners.append(runner)
        site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise CannotListen(_listen_failure(what, host, port, flag, exc)) from None
        return site._server.sockets[0].getsockname()[1]  # the bound port (port 0 picks one)

    def _announce_token(self, ctx: HttpContext) -> None:
        path = ensure_first_token(ctx.tokens, self.engine.data_dir)
        if path is not None:
            self.token_path = path
            print(f"smsroute: operator token (all roles) written to {path}", file=sys.stderr)


def _on_loop_within(loop: asyncio.AbstractEventLoop, work: Callable[[], Any], timeout: float) -> Any:
    """``work()`` run on the HTTP loop, or ``TimeoutError`` after ``timeout`` s - and then the work is
    skipped if the loop gets to it later: a lease nobody waits for any more must not take tokens (the
    loop held up, the leases of the timed-out questions all ran once it was free; cancelling the
    future does not stop a task already scheduled)."""
    deadline = time.monotonic() + timeout

    async def run() -> Any:
        if time.monotonic() >= deadline:
            raise TimeoutError("nobody waits for this any more")
        return work()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)


def _auth_failure_limiter(http: Any) -> Gcra:
    """Failed control-port authentications: ``per_minute`` at once, refilled over a minute."""
    per_minute = int(getattr(http, "control_auth_failures_per_minute", None) or 10)
    return Gcra(per_minute / 60.0, per_minute)


def _listen_failure(what: str, host: str, port: int, flag: str, exc: OSError) -> str:
    """One sentence for a socket that cannot be bound, with what to do about it."""
    where = f"{what} cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where}: the port is already in use (another smsroute, or another program); "
                f"choose another one with {flag} PORT (0 picks a free one)")
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges); use {flag} PORT"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.ENOENT) or isinstance(exc, socket.gaierror):
        return f"{where}: {host} is not an address of this machine (--host)"
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}"


def connection_limits(http: Any, app: str) -> ConnectionLimits:
    """The connection bounds and timeouts of one port (``control_*`` keys for the control port)."""
    prefix = "control_" if app == "control" else ""
    defaults = ConnectionLimits()
    return ConnectionLimits(
        max_total=int(getattr(http, f"{prefix}max_connections", defaults.max_total)),
        max_per_address=int(getattr(http, f"{prefix}max_connections_per_address",
                                    defaults.max_per_address)),
        header_timeout_s=float(getattr(http, "header_timeout_seconds", defaults.header_timeout_s)),
        keepalive_timeout_s=float(getattr(http, "keepalive_timeout_seconds",
                                          defaults.keepalive_timeout_s)))


def _audit_log(env: Any, engine: Any) -> Any:
    """The control port's audit log: accounts named by pseudonym, their ids sealed under their data
    keys (``storage.audit``); a stand-in engine without account keys keeps ids as given."""
    from storage.audit import AuditLog

    runtime = getattr(engine, "runtime", None)
    return AuditLog(env, accounts=getattr(runtime, "account_keys", None))
