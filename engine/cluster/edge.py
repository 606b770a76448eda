"""An HTTP edge process: ``python -m engine.cluster.edge --index K --workers N --nats URL ...``.

``smsroute run --workers N --edges M`` starts M of these beside the core; they all listen on the customer
API's port (``SO_REUSEPORT``: the kernel spreads connections over them) while the core serves it on a
loopback port of its own. Each edge runs the customer API's application (the same routes, types and
middleware as the core's) with an :class:`~engine.cluster.edge_engine.EdgeEngine` behind it and the door
(``engine.http.shedding``) in front:

* ``POST /v1/messages`` and ``POST /v1/messages/batch`` without an ``Idempotency-Key`` - the hot path -
  are served here: the key is resolved by the core (cached), the rate limit is leased from the core's
  count, and the message goes straight to its account's session on its worker, whose answer comes back
  to this edge. Their request-log entries (policy 2.1) are written here, under ``<data>/edges/e<k>``,
  and swept after 90 days like the core's.
* Every other request - reads, settings, keys, and submits that carry an ``Idempotency-Key`` (whose
  records must be one set for every edge) - is forwarded as it is to the core's customer API, with the
  client's address in ``X-Smsroute-Forwarded-For``, which the core believes only with the edge token it
  gave its edges (``X-Smsroute-Edge-Token``); the answer comes back streamed, with a deadline that
  fits the route (:mod:`engine.cluster.edge_forward`: an export has none but the core's silence). The
  core logs these requests; an answer that breaks off, so that the edge cuts its client, is recorded
  here too, with the status the client saw (as the core records an answer it cuts itself), and so is
  an answer the edge makes itself (503 ``cluster_unavailable``: the core never saw the request).

With ``[http] tls_cert``/``tls_key`` set, an edge speaks TLS on the customer port like the core (TLS 1.2
minimum, HSTS on its own answers too), and it forwards to the core's loopback port over TLS, trusting
exactly that certificate (:func:`core_client_tls`): the core's port speaks TLS as well, so a plaintext
forward was refused, and the edge itself served plaintext on an address the configuration only allows
with TLS.

The edge token is a secret the core makes at start-up and hands to each edge it spawns as the first line
of the edge's stdin (:func:`read_token`), never through the environment or the command line: those are
inherited by every child and readable in ``/proc/<pid>/environ`` and ``ps``. The edge keeps it in memory
only and never logs it.

The edge's metrics (its requests, door, connections, NATS link) are served by no port of its own: the
core asks every edge for them at each scrape of its ``/metrics`` (``engine.cluster.edge_metrics``).

With ``--beat-every`` (``smsroute run`` sets it) the edge writes a heartbeat line to its stdout while its
HTTP loop and NATS loop answer (``engine.cluster.heartbeat``): a hung edge, which would keep its share of
the port's connections, is killed and restarted.

Webhooks are delivered by the core from the workers' durable outboxes, so an edge holds nothing that a
crash could lose: a submit it forwarded and did not answer was either made durable (and is delivered and
billed once) or not; the client cannot tell which and retries with an Idempotency-Key.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import uvloop
from aiohttp import ClientSession, TCPConnector, web
from aiohttp.http_exceptions import ContentEncodingError

from engine import log_format
from engine.cluster import edge_forward
from engine.cluster.edge_engine import EdgeEngine, LeasedLimiter
from engine.cluster.edge_forward import PART_BYTES, OwnAnswer, error_answer
from engine.cluster.handoff import overrides_from
from engine.cluster.heartbeat import Heartbeat, loop_probe
from engine.cluster.lifeline import stop_when_parent_exits
from engine.cluster.placement import Placement
from engine.cluster.protocol import ready_suffix
from engine.cluster.start_failure import report
from engine.config import load_settings
from engine.errors import SmsrouteError
from engine.http.app_customer import build_customer_app
from engine.http.connections import PARSER_LIMITS, ConnectionGate, GuardedServer
from engine.http.context import CTX, HttpContext
from engine.http.egress import DestinationGuard
from engine.http.errors import CutAnswer
from engine.http.idempotency import IdempotencyStore
from engine.http.jsonio import CORRUPT_ENCODING
from engine.http.metrics import HttpMetrics, Snapshot
from engine.http.middleware import finish
from engine.http.requestlog import RequestLog
from engine.http.server import tls_context
from engine.http.shedding import Shedder
from engine.http.store import GroupCommitter, open_http_env
from engine.http.tokens import TokenStore

log = logging.getLogger(__name__)

FORWARDED_FOR = "X-Smsroute-Forwarded-For"
EDGE_TOKEN_HEADER = "X-Smsroute-Edge-Token"
FAST_PATHS = frozenset({"/v1/messages", "/v1/messages/batch"})


def read_token(stream: TextIO) -> str:
    """The edge token: the first line of ``stream`` (the stdin pipe the core wrote it to at spawn, see
    ``engine.cluster.local``), without its newline; empty if the core gave none."""
    return stream.readline().strip()


def core_client_tls(cert_file: str) -> ssl.SSLContext:
    """How an edge reaches the core's customer port when it speaks TLS: the core serves the operator's
    own certificate on ``127.0.0.1``, whose names are the public ones, so the host name is not
    checked; the certificate is, against that very file as the one trust anchor (a chain file's
    leaf and intermediates alike: partial chains are accepted), so nothing else on loopback passes."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert_file)
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _is_fast(request: web.Request) -> bool:
    return (request.method == "POST" and request.path in FAST_PATHS
            and "Idempotency-Key" not in request.headers)


class Edge:
    """The edge's HTTP server (on its own loop thread) and its :class:`EdgeEngine`."""

    def __init__(self, engine: EdgeEngine, host: str, port: int, core_url: str, token: str, *,
                 edges: int = 1) -> None:
        self.engine, self.host, self.port = engine, host, port
        self.edges = edges  # how many edges share the port: each leases at most its share of a key
        self.core_url, self.token = core_url, token
        self._loop = uvloop.new_event_loop()
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="edge-http")
        self.bound_port = 0
        self.error: BaseException | None = None
        self.ctx: HttpContext | None = None  # the customer app's, once serving (its metrics: tests)
        self._gate: ConnectionGate | None = None  # (the numbers of its metrics, once serving)
        self._shedder: Shedder | None = None
        self._committer: GroupCommitter | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The HTTP server's loop: a stuck one answers no customer (``engine.cluster.heartbeat``)."""
        return self._loop

    def start(self) -> Edge:
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        settings = self.engine.settings
        http = settings.http
        tls = bool(http.tls_cert and http.tls_key)
        env = open_http_env(self.engine.data_dir, settings.engine.http_map_size_mb << 20)
        committer = GroupCommitter(env)
        ctx = HttpContext(engine=self.engine, http=settings.http, committer=committer,
                          requestlog=RequestLog(env, committer),
                          idempotency=IdempotencyStore(env, committer), tokens=TokenStore(env),
                          limiter=None, metrics=HttpMetrics(lambda: self._snapshot()), tls=tls,
                          destinations=DestinationGuard(
                              bool(settings.http.webhook_allow_private_networks)))
        ctx.limiter = LeasedLimiter(self.engine, ctx.executor, edges=self.edges)
        self.ctx = ctx
        self._committer = committer
        customer = build_customer_app(ctx)
        session = ClientSession(  # (each request's deadline: edge_forward)
            read_bufsize=PART_BYTES,
            connector=TCPConnector(**({"ssl": core_client_tls(http.tls_cert)} if tls else {})))

        async def forward(request: web.Request) -> web.StreamResponse:
            return await self._forward(session, request)

        customer.middlewares.insert(0, self._route_middleware(forward))  # before it: fast or forward
        runner = web.AppRunner(customer, access_log=None, shutdown_timeout=5, **PARSER_LIMITS)
        await runner.setup()
        runner.server.__class__ = GuardedServer
        runner.server.gate = ConnectionGate(_limits(settings.http))
        runner.server.app_name = "customer"
        shedder = Shedder(int(getattr(settings.http, "max_pending_requests", 64)),
                          float(getattr(settings.http, "queue_delay_target_ms", 25.0)) / 1000)
        runner.server.request_handler = shedder.wrap(runner.server.request_handler)
        shedder.start(asyncio.get_running_loop())
        self._gate, self._shedder = runner.server.gate, shedder
        self.engine.metrics_source = ctx.metrics.exposition  # the core shows them (edge_metrics)
        site = web.TCPSite(runner, self.host, self.port, backlog=1024, reuse_port=True,
                           ssl_context=tls_context(http.tls_cert, http.tls_key) if tls else None)
        try:
            await site.start()
            self.bound_port = site._server.sockets[0].getsockname()[1]
            self._ready.set()
            sweeper = asyncio.create_task(self._sweep(ctx))
            lapser = asyncio.create_task(self._lapse(ctx.limiter))
            await self._stop.wait()
            sweeper.cancel()
            lapser.cancel()
        finally:
            shedder.stop()
            await runner.cleanup()
            await session.close()
            ctx.requestlog.flush()
            await committer.flush()
            committer.close()
            ctx.executor.shutdown(wait=True)
            env.close()

    def _route_middleware(self, forward):
        @web.middleware
        async def route(request: web.Request, handler) -> web.StreamResponse:
            if _is_fast(request):
                return await handler(request)
            started = time.perf_counter()
            resp = await forward(request)
            if isinstance(resp, CutAnswer | OwnAnswer):
                # the core's answer broke off and this edge cut its client: the core may never have
                # recorded it (it stopped) or saw its edge leave (499), so the edge records what the
                # client saw, as the core records an answer it cut itself (edge_forward's docstring);
                # or the edge answered itself (the core unreachable): the core never saw the request
                finish(request.app[CTX], request, resp, started, None)
            return resp

        return route

    def _snapshot(self) -> Snapshot:
        """The numbers behind this edge's metrics besides its requests' (which the core's ``/metrics``
        shows as ``smsroute_edge_*{edge}``, ``engine.cluster.edge_metrics``): its door, its
        connections, its request log's dropped entries and its NATS link."""
        snap = Snapshot()
        gate, shedder, committer = self._gate, self._shedder, self._committer
        if gate is not None:
            snap.connections = {"customer": {"open": gate.open, **gate.counts}}
        if shedder is not None:
            snap.shedding = {"pending": shedder.pending, **shedder.counts}
        if committer is not None:
            snap.request_log_dropped = committer.later_dropped
        if self.engine.transport is not None:
            snap.engine = {"transport": self.engine.transport.stats()}
        return snap

    async def _forward(self, session: ClientSession, request: web.Request) -> web.StreamResponse:
        """The request as it came, to the core's customer API; its answer as it comes back."""
        headers = edge_forward.forwarded_headers(request.headers)
        # the edge's own headers replace a client's of any letter case
        headers[FORWARDED_FOR] = request.remote or ""
        headers[EDGE_TOKEN_HEADER] = self.token
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:  # over the app's client_max_size: the core's answer
            http = self.engine.settings.http
            limit = (int(getattr(http, "max_batch_body_bytes", http.max_body_bytes))
                     if request.path == "/v1/messages/batch" else http.max_body_bytes)
            return error_answer(413, "body_too_large", f"request body over {limit} bytes")
        except web.RequestPayloadError as exc:  # as the core answers it (engine.http.jsonio)
            if isinstance(exc.__cause__, ContentEncodingError):
                return error_answer(400, "invalid_content_encoding", CORRUPT_ENCODING)
            raise
        return await edge_forward.forward(session, request, self.core_url + request.path_qs, headers,
                                          body)

    async def _lapse(self, limiter: LeasedLimiter) -> None:
        """Leased tokens of keys no request comes for any more lapse and go back to the core (a key
        in use has them lapsed by its own requests)."""
        while True:
            await asyncio.sleep(limiter.lifetime / 2)
            try:
                limiter.sweep()
            except Exception:
                log.exception("edge: lapsing leased tokens failed")

    async def _sweep(self, ctx: HttpContext) -> None:
        """The edge's request log follows the policy's 90 days like the core's."""
        import time

        while True:
            await asyncio.sleep(3600)
            try:
                await ctx.call(ctx.requestlog.sweep, time.time())
            except Exception:
                log.exception("edge: request log sweep failed")


def _limits(http: Any):
    from engine.http.server import connection_limits

    return connection_limits(http, "customer")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.cluster.edge",
                                description="One smsroute HTTP edge process (smsroute run --edges). "
                                            "Reads the edge token as the first line of stdin.")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--edges", type=int, default=1,
                   help="how many edges serve the port (each leases at most its share of a key's burst)")
    p.add_argument("--nats", required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--core-url", required=True, help="the core's customer API (loopback)")
    p.add_argument("--config")
    p.add_argument("--nats-token-file", default="", help="the token of a local cluster's own NATS server")
    p.add_argument("--overrides-json")
    p.add_argument("--overrides-stdin", action="store_true",
                   help="read the settings overrides as one JSON line on stdin, after the token")
    p.add_argument("--parent-pid", type=int, default=0,
                   help="stop once this process (smsroute run, which starts it) is gone "
                        "(engine.cluster.lifeline)")
    p.add_argument("--beat-every", type=float, default=0.0,
                   help="write a heartbeat line to stdout this often, seconds, while the HTTP loop "
                        "and the NATS loop answer (engine.cluster.heartbeat; 0: none)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = read_token(sys.stdin)  # first: the core wrote it before anything else could happen
    if not token:
        print("smsroute edge: no edge token on stdin (edges are started by smsroute run --edges)",
              file=sys.stderr)
        return 2
    log_format.configure(logging.WARNING)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    node = f"e{args.index}"
    if args.parent_pid:  # not left holding a share of the customer port if the core is killed
        stop_when_parent_exits(args.parent_pid, node)
    placement = Placement(node=node, runs_core=False, runs_pops=False,
                          workers=tuple(f"w{i}" for i in range(args.workers)),
                          nats=tuple(args.nats.split(",")), nats_token_file=args.nats_token_file)
    try:
        settings = load_settings(args.config, overrides_from(args, sys.stdin))
        Path(args.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = EdgeEngine(settings, placement, Path(args.data_dir)).start()
        edge = Edge(engine, args.host, args.port, args.core_url, token,
                    edges=max(1, args.edges)).start()
    except SmsrouteError as exc:  # to smsroute run, which names it in its own answer (start_failure)
        report("edge", node, exc.code, exc.message, supervised=bool(args.parent_pid))
        return 2
    except OSError as exc:
        report("edge", node, "os_error", str(exc), supervised=bool(args.parent_pid))
        return 2
    # its protocol (engine.cluster.protocol): the core names an edge of another one in /readyz
    print(f"smsroute edge {node} ready on {args.host}:{edge.bound_port}"
          f"{ready_suffix(engine.presence.protocol)}", flush=True)
    if args.beat_every > 0:  # to the smsroute run that supervises us (engine.cluster.liveness)
        Heartbeat(node, args.beat_every, [loop_probe(lambda: edge.loop),
                                          loop_probe(lambda: engine.transport and engine.transport.loop)
                                          ]).start()
    signal.sigwait(stop_signals)
    engine._stopping = True
    edge.stop()
    engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
