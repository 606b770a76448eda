"""Engine: the embedding API. Start it, create accounts, submit messages, watch statuses, stop it.

>>> from engine import Engine                                          # doctest: +SKIP
>>> with Engine.start(data_dir="./data") as engine:                    # doctest: +SKIP
...     account = engine.create_account(email="dev@example.com")
...     engine.register_sender(account.id, "ACME")
...     engine.deposit(account.id, usd="25.00", chain="tron", tx_hash="0xabc", from_address="TXYZ")
...     accepted = engine.submit(account.api_key, to="+4915112345678", sender="ACME", body="Hi")

One engine per data directory (an OS lock; a second ``Engine.start`` on it raises ``DataDirInUse``).
Leaving the ``with`` block, or calling ``engine.stop()``, drains and stops it; a host that exits without
either still exits, and an exit hook stops the engine cleanly first (see :func:`_install_exit_hook`).

Threads: every public method may be called from any host thread. ``submit`` blocks until the message is
durable; ``submit_future`` returns at once; ``submit_async`` is the asyncio form (it never blocks the loop).
Status callbacks run on an engine thread and must return quickly.

Errors detectable before a message enters the actors (unknown key, overload, wrong argument types) are
raised by ``submit_future`` itself; the rest arrive through the future.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, NamedTuple

import pykka

from actors.supervisor import Runtime
from engine import apikeys, listing, submission
from engine import messages as m
from engine.accounts import AccountManager
from engine.billing.service import Billing
from engine.bridge import Bridge, InFlightGate
from engine.cluster.placement import Placement
from engine.cluster.presence import announce_down
from engine.config import Settings, load_settings
from engine.errors import AuthError, InputError, OverloadedError, UnknownAccount
from engine.gc_tuning import freeze_start_up_objects, tune_gc
from engine.holds import HoldManager
from engine.ids import IdGenerator, is_message_id
from engine.mail import announcements
from engine.mail.delivery import delivery
from engine.mail.notices import Notices
from engine.mail.service import MailService
from engine.privacy import PrivacyServices
from storage.account_keys import AccountKeys
from storage.accounts import AccountStore
from storage.records import MessageRecord

log = logging.getLogger(__name__)

EXIT_DRAIN_SECONDS = 5.0  # at interpreter exit without stop(): how long in-flight work may finish

StatusRecord = MessageRecord


class Accepted(NamedTuple):
    """The answer to a submit: the message is durable and will be routed. (A named tuple: one is made
    per message, and it is the cheapest immutable record.)"""

    message_id: str
    segments: int
    price_micro_usd: int
    pop: str
    encoding: str
    status: str = "accepted"
    country: str = ""  # ISO 3166 of the destination; (pop, country) is the message's corridor


def _accepted(reply: m.AcceptedItem) -> Accepted:
    return Accepted(reply.message_id, reply.segments, reply.price_micro_usd, reply.pop,
                    reply.encoding, country=reply.country)


class Engine(AccountManager, HoldManager):
    """A running smsroute engine (use :meth:`start`)."""

    def __init__(self, data_dir: Path, settings: Settings, placement: Placement | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.gate = InFlightGate(settings.engine.max_in_flight)
        self.bridge = Bridge(self.gate)
        self.ids = IdGenerator()
        self.runtime = Runtime(data_dir, settings, self.bridge, self.ids, placement)
        self.http = None
        self._cluster = None  # engine.cluster.local.LocalCluster, when this process supervises workers
        self.mail: MailService | None = None
        self.privacy: PrivacyServices | None = None
        self.billing: Billing | None = None
        self._stopping = False
        self._sessions_lock = threading.Lock()
        self.max_body_chars = settings.engine.max_segments * 160

    @classmethod
    def start(cls, data_dir: str | Path = "./data", config: str | Path | None = None, *,
              http: bool = False, settings: Settings | None = None,
              overrides: dict[str, Any] | None = None, on_status=None,
              placement: Placement | None = None, edge_token: str = "", cluster: Any = None) -> Engine:
        """Start every store and actor (resuming unfinished messages); with ``http=True`` also the
        customer API and the control port. ``on_status`` is registered before recovery, so it also sees
        the status changes of messages resumed from an earlier run. ``placement`` makes this the core of
        a cluster whose workers run the POPs (``engine.cluster``; default: everything in this process).
        ``edge_token`` is the secret the HTTP edges in front of this core prove themselves with
        (``smsroute run --edges``); without one the customer API believes no forwarded address.
        ``cluster``: the ``LocalCluster`` whose workers this core supervises, known before the HTTP
        servers start, so ``/readyz`` names its workers as down until each is ready (set after the
        start, ``/readyz`` answered 200 in between, and submits sent then reached no worker and
        failed 10-20 s later as unanswered)."""
        settings = settings or load_settings(config, overrides)
        if http and settings.http.tls_cert:
            from engine.http.server import tls_context

            tls_context(settings.http.tls_cert, settings.http.tls_key)  # a bad file fails here, first
        engine = cls(Path(data_dir), settings, placement)
        if settings.engine.gc_tuning:
            tune_gc()
        if on_status is not None:
            engine.on_status(on_status)
        engine.runtime.start()  # locks the data directory: a second engine on it is refused
        _RUNNING.add(engine)
        if cluster is not None:
            engine.cluster = cluster  # (needs the transport: after runtime.start; before any port opens)
        _install_exit_hook()
        try:
            engine._start_mail_and_privacy()
            AccountManager.__init__(engine, engine.runtime)
            engine.billing = Billing(engine.runtime).start()  # reconciles in the background
            if http:
                engine._start_http(edge_token)
            if engine.runtime.placement.clustered and engine.runtime.placement.runs_core:
                from engine.cluster.edge_queries import EdgeQueries

                engine.runtime.edge_queries = EdgeQueries(engine)  # the HTTP edges' questions
        except BaseException:  # e.g. a port in use: do not leave the actors running
            engine.stop(drain_seconds=0)
            raise
        engine.mail.warn_if_not_delivering()  # once started: a failed start stays one line
        if settings.engine.gc_tuning:
            freeze_start_up_objects()
        return engine

    def _start_mail_and_privacy(self) -> None:
        """The mail sender runs on its own thread (not the HTTP loop), so mail goes out when the
        engine is embedded without HTTP; the privacy stores' sweeps join the retention sweeper, and
        only then the closed accounts' sweep (``Runtime.account_sweep``): it shreds the data keys the
        privacy stores' older records are upgraded under when they open (a data-subject request gets
        its account id sealed under the ledger key too, so it is still answered once the account's
        record is swept)."""
        runtime = self.runtime
        mail_keys = AccountKeys(runtime.keys_dir() / "mail", runtime.key_provider, runtime.pseudonyms)
        self.mail = MailService(self.data_dir, self.settings.email, runtime.keys,
                                runtime.account_keys, mail_keys,
                                map_size=self.settings.engine.mail_map_size_mb << 20,
                                address_of=_address_of(runtime.accounts)).start()
        self.notices = Notices(self.mail.outbox, self.mail.worker.wake, runtime.accounts,
                               withdraw=self.mail.withdraw, delivers=self.mail.delivers)
        self.privacy = PrivacyServices(self.data_dir, self.settings, runtime, self.notices, self)
        runtime.sweeper.proxy().add_sweepables(
            {"mail_outbox": self.mail.outbox, **self.privacy.sweepables,
             **runtime.account_sweep()}).get(timeout=10)

    def _start_http(self, edge_token: str = "") -> None:
        from engine.http.server import HttpServers

        self.http = HttpServers(self, self.settings, edge_token=edge_token).start()
        # the request log, idempotency records and control audit follow the same retention sweeps
        self.runtime.sweeper.proxy().add_sweepables(self.http.sweepables).get(timeout=10)

    @property
    def cluster(self) -> Any:
        """The ``LocalCluster`` whose workers and edges this process supervises (None: none)."""
        return self._cluster

    @cluster.setter
    def cluster(self, cluster: Any) -> None:
        """Supervise ``cluster``: a child it kills for hanging answers no request of ours any more, so
        those still waiting fail at once (``Transport.give_up_on``) instead of after their time-out;
        one it judges hung may still wake, so only the reads waiting for it fail then; a worker it knows
        hung, down or restarting is not asked at all (``ClusterShards.not_answering``), and a submit for
        it is refused at once (``engine.cluster.presence``: the supervisor's view, rather than the
        workers' announcements; one that exited is announced down to the HTTP edges, which know only
        the announcements)."""
        self._cluster = cluster
        transport = self.runtime.transport
        if cluster is not None and transport is not None:
            cluster.on_killed = transport.give_up_on
            cluster.on_hung = functools.partial(transport.give_up_on, reads_only=True)
            if hasattr(self.runtime.shards, "not_answering"):  # (the core's ClusterShards)
                self.runtime.shards.not_answering = cluster.not_answering
            cluster.on_down = functools.partial(announce_down, transport)
            transport.readiness = cluster
            if self.runtime.presence is not None:  # (its ready lines' protocols: the cluster's ALARM)
                self.runtime.presence.alarms = False
                # nor the workers' questions as they start: the supervisor sees each exit itself
                # (within 0.2 s) and its verdicts say when one is gone (engine.cluster.pending_watch).
                # A worker asks before it takes frames and before its ready line, but the ask comes
                # over NATS and the ready line over a pipe: heard after that line (the core was slow,
                # or the worker's wait for its answer ran out), it would fail submits the new
                # process took
                self.runtime.presence.on_gone = None

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called: no new submits are taken."""
        return self._stopping

    def stop(self, drain_seconds: float = 10.0) -> None:
        """Refuse new submits, wait up to ``drain_seconds`` for in-flight messages to finish, then stop
        every actor in order (and the workers this process supervises, before its own ledger, so their
        last debits reach it). Messages still open are durable and resume on the next start."""
        if self._stopping:
            return
        self._stopping = True
        deadline = time.monotonic() + drain_seconds
        while self.gate.in_flight and time.monotonic() < deadline and self.runtime.alive:
            time.sleep(0.02)
        if self.http is not None:
            self.http.stop()
        if self.billing is not None:
            self.billing.stop()  # a reconciliation still running is abandoned
        if self.cluster is not None:
            self.cluster.stop_workers()
        self.runtime.stop()
        if self.cluster is not None:
            self.cluster.stop()  # the NATS server it started, last
        if self.mail is not None:
            self.mail.stop()  # what is still queued is durable and is sent after the next start
        if self.privacy is not None:
            self.privacy.close()
        self.runtime.release()  # last: every store of the data directory is closed
        _RUNNING.discard(self)

    def __enter__(self) -> Engine:
        """``with Engine.start(...) as engine:`` stops the engine when the block ends, also on error."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- messages ----------------------------------------------------------------------------------

    def submit_future(self, api_key: str | apikeys.PresentedKey, to: str, sender: str, body: str, *,
                      validity_seconds: int | None = None, callback_url: str | None = None,
                      client_ref: str | None = None) -> Future:
        """Hand one message to the engine; the future resolves to :class:`Accepted` once it is durable."""
        if self._stopping:
            raise OverloadedError("the engine is stopping")
        digest, session = self._session_for_key(api_key)
        item = submission.item(self, digest, to, sender, body, validity_seconds, callback_url,
                               client_ref)
        if not self.gate.try_acquire():
            raise OverloadedError(f"{self.gate.limit} messages in flight; retry shortly")
        request_id, fut = self.bridge.new_request(_accepted, holds_slot=True)
        raw = submission.encode_or_fail(self.bridge, [request_id],
                                        m.SubmitMessage(request_id, *item[1:]))
        submission.tell_or_fail(self.bridge, session, raw, [request_id])
        return fut

    def submit_many(self, api_key: str | apikeys.PresentedKey, submissions: list[dict]) -> list[Future]:
        """Hand many messages of one account to the engine in ONE hand-off; one future per message, in
        order, each resolving to :class:`Accepted` or failing with its own typed error (a message that
        is refused never affects the others). Each submission is a dict of :meth:`submit_future`'s
        arguments: ``to``, ``sender``, ``body`` and optionally ``validity_seconds``, ``callback_url``,
        ``client_ref``. An unknown key or a stopping engine raises at once, for the whole call."""
        if self._stopping:
            raise OverloadedError("the engine is stopping")
        digest, session = self._session_for_key(api_key)

        def admit() -> None:
            if not self.gate.try_acquire():
                raise OverloadedError(f"{self.gate.limit} messages in flight; retry shortly")

        futures, items = submission.prepare(
            self, digest, submissions, lambda: self.bridge.new_request(_accepted, holds_slot=True),
            admit)
        if items:
            submission.hand_off(self.bridge, session, items)
        return futures

    def _session_for_key(self, api_key: str | apikeys.PresentedKey) -> tuple[bytes, Any]:
        """The key's digest and its account's session. The key is a ``str``, or a
        :class:`~engine.apikeys.PresentedKey` the customer API hashed once for the whole request."""
        digest = apikeys.digest_of(api_key)
        if digest is None:
            raise InputError("api_key must be a string")
        account_id = self.account_for_digest(digest)
        if account_id is None:
            raise AuthError("unknown API key")
        return digest, self.runtime.session_for(account_id)

    def submit(self, api_key: str, to: str, sender: str, body: str, *,
               validity_seconds: int | None = None, callback_url: str | None = None,
               client_ref: str | None = None, timeout: float = 30.0) -> Accepted:
        """Submit and wait until the message is durably accepted (raises a typed error otherwise)."""
        return self.submit_future(api_key, to, sender, body, validity_seconds=validity_seconds,
                                  callback_url=callback_url, client_ref=client_ref).result(timeout)

    async def submit_async(self, api_key: str, to: str, sender: str, body: str, *,
                           validity_seconds: int | None = None,
                           callback_url: str | None = None,
                           client_ref: str | None = None) -> Accepted:
        """The asyncio form of :meth:`submit`: awaits without blocking the event loop."""
        fut = self.submit_future(api_key, to, sender, body, validity_seconds=validity_seconds,
                                 callback_url=callback_url, client_ref=client_ref)
        return await asyncio.wrap_future(fut)

    def status(self, message_id: str, *, account_id: str | None = None) -> StatusRecord | None:
        """Current status and metadata of a message (never its body), or None if unknown.
        ``account_id``: whose message it should be (the customer API's read): a cluster then asks only
        the workers that may hold that account's messages, so one that is hung fails no other
        account's read (a record of another account may then be missed: the caller checks the
        record's ``account_id`` anyway)."""
        if not isinstance(message_id, str) or not is_message_id(message_id):
            return None
        return self.runtime.shards.find_record(message_id, account_id)

    def messages(self, account_id: str, *, limit: int = 50, cursor: str | None = None,
                 statuses: frozenset[str] | None = None, since: float | None = None,
                 until: float | None = None) -> tuple[list[StatusRecord], str | None]:
        """One page of the account's messages, newest first, and the cursor of the next page (None on
        the last); see :func:`engine.listing.page`."""
        return listing.page(self.runtime.shards.account_pages, account_id, limit=limit,
                            cursor=cursor, statuses=statuses, since=since, until=until)

    def on_status(self, callback) -> None:
        """Call ``callback(item: engine.messages.StatusItem)`` for every status change (engine thread)."""
        self.bridge.on_status(callback)

    # --- the webhook outbox (what the webhook dispatcher, in the HTTP layer, uses) -------------------

    def on_webhook_events(self, sink) -> None:
        """``sink(pop, seqs, items)`` (engine thread) for every batch of status changes a POP stored in
        its durable webhook outbox; report each one done with :meth:`webhook_events_done`."""
        self.bridge.on_webhook_events(sink)

    def pending_webhook_events(self) -> list[tuple[str, int, m.StatusItem, int, float]]:
        """Every event in the webhook outboxes, as ``(pop, seq, item, attempt, next_at)`` in each POP's
        order (after a restart: what is still to be delivered; ``attempt`` and ``next_at`` are its retry
        schedule, ``0, 0.0`` if it has none)."""
        return self.runtime.shards.webhook_events()

    def webhook_events_done(self, pop: str, seqs: list[int]) -> None:
        """These events of ``pop``'s outbox (a POP shard's address) are delivered or given up: the POP
        removes them."""
        if seqs:
            self._tell_pop_shard(pop, m.WebhookEventsDone(list(seqs)))

    def webhook_events_retrying(self, pop: str, seqs: list[int], attempt: int, next_at: float) -> None:
        """These events of ``pop``'s outbox were sent ``attempt`` times and wait until ``next_at`` (unix
        s): the POP records it, so a restart resumes the backoff instead of sending them at once."""
        if seqs:
            self._tell_pop_shard(pop, m.WebhookEventsRetrying(list(seqs), int(attempt), float(next_at)))

    def _tell_pop_shard(self, pop: str, msg: m.Message) -> None:
        """Tell the POP shard at address ``pop`` about its webhook outbox. Dropped when there is none or it
        is stopping: nothing is lost that matters (its events stay and are delivered again with the same
        ids; a schedule not recorded only makes the retry after a restart sooner)."""
        ref = self.runtime.directory.pop_ref(pop)
        if ref is not None:
            try:
                ref.tell(m.encode(msg))
            except pykka.ActorDeadError:
                pass

    def on_carrier_ack(self, callback) -> None:
        """Call ``callback(message_id, unix_time)`` when a carrier has acknowledged every part."""
        self.bridge.on_carrier_ack(callback)

    # --- operators ---------------------------------------------------------------------------------

    def carriers(self) -> list[dict]:
        """Every carrier's row. In a cluster the workers are asked with the short stats deadline: a
        worker that does not answer within it is ``ClusterUnavailable`` naming it, at once instead of
        after 30 s (:meth:`carrier_view` keeps the others' rows)."""
        return self.runtime.carrier_stats()

    def carrier_view(self) -> dict[str, Any]:
        """``GET /v1/carriers``: ``carriers`` and, in a cluster, ``carriers_missing`` (the workers that
        did not answer within ``STATS_TIMEOUT_S``, whose rows are not in it)."""
        return self.runtime.shards.carrier_view()

    def carrier_names(self) -> frozenset[str]:
        """The configured carriers (what may be suspended): asks no actor and no worker."""
        return frozenset(self.runtime.settings.carriers)

    def suspend_carrier(self, name: str, suspended: bool) -> None:
        self.runtime.suspend_carrier(name, suspended)

    def routing_table(self) -> dict:
        return self.runtime.directory.routing.to_document()

    def replace_routing(self, table: dict) -> int:
        """Validate a new routing table and rate card, then swap it in atomically (ConfigError if bad).
        Every account not closed is mailed the prices that change (queued first: a full outbox refuses
        the change); how many price-change notices were queued."""
        changes = announcements.rate_changes(self.runtime.directory.routing,
                                             self.runtime.validate_routing(table))
        queued = 0
        if changes:
            queued = self.notices.to_accounts("price_change", None, changes=changes,
                                              effective_at=time.time())
        self.runtime.replace_routing(table)
        return queued

    def announce_policy_change(self, effective_at: float, summary: str, *,
                               actor: str = "embedding-api") -> dict:
        """Mail every account a privacy-policy change (policy 13): ``effective_at`` at least 30 days
        from now, else ``NoticeTooShort`` and nothing is sent. The answer says how many notices were
        queued and what became of them (``mail``: ``engine.mail.delivery``; None when none was)."""
        queued = announcements.policy_change(self.notices, effective_at, summary, time.time())
        self._audit(actor, "policy_change_announced", f"effective:{int(effective_at)}")
        return {"effective_at": effective_at, "notices_queued": queued,
                "mail": delivery(self.notices.delivers) if queued else None}

    def analytics(self) -> dict:
        """De-identified corridor and carrier aggregates (no account, number or body; groups with few
        messages or few accounts, or dominated by one account, suppressed; objecting and restricted
        accounts excluded)."""
        from engine.analytics import corridor_analytics

        excluded = {a.id for a in self.accounts.all()
                    if "analytics" in a.objections or a.state == "restricted"}
        records = self.runtime.shards.records_since(0.0)
        return corridor_analytics(records, excluded, self.settings.engine.analytics_max_account_share)

    def swept_stores(self) -> list[str]:
        """The names of every store the retention sweeper covers (an operator's check)."""
        return self.runtime.sweeper.proxy().add_sweepables({}).get(timeout=10)

    def parts_alive(self) -> dict[str, bool]:
        """Whether each long-lived part of this process runs: the runtime's (``Runtime.actors_alive``:
        clock, ledger, committer, sweeper, POPs, carriers), the mail sender's thread (``mail``) and the
        HTTP layer's webhook delivery (``webhooks``) - ``/readyz``, ``smsroute_actor_alive``."""
        alive = self.runtime.actors_alive()
        if self.mail is not None:
            alive["mail"] = self.mail.worker.is_alive()
        if self.http is not None:
            alive.update(self.http.parts_alive())
        return alive

    def dead_actors(self) -> list[str]:
        """The long-lived actors (and, in a cluster, worker and edge processes) that are not running, or
        not working: a process a restart is starting is ``worker:<node> (starting)``, one whose heartbeat
        is late ``worker:<node> (hung)``; a worker on another host (``--role core``) that has not
        announced itself yet ``worker:<node> (not seen)``, one that said it stops ``(stopping)``, one
        silent for ``child_hung_after_seconds`` ``(silent)``; a worker or edge of another cluster
        protocol ``worker:<node> (protocol 3, core 4)`` (``engine.cluster.protocol``) (empty when
        healthy); ``/readyz`` answers 503 while there is one. A part of this process that runs but
        stopped working is ``sweeper (hung)`` or ``carrier:<name> (hung)`` (an SMPP carrier's event loop;
        ``Runtime.hung_parts``)."""
        dead = [name for name, alive in self.parts_alive().items() if not alive]
        dead.extend(f"{name} (hung)" for name in self.runtime.hung_parts())
        if self.runtime.dead_sessions():
            dead.append("sessions")
        if self.cluster is not None:
            for w in self.cluster.status():
                if not w["alive"]:
                    dead.append(f"worker:{w['node']}")
                elif w["protocol_mismatch"]:
                    dead.append(f"worker:{w['node']} ({w['protocol_mismatch']})")
                elif not w["ready"]:
                    dead.append(f"worker:{w['node']} (starting)")
                elif w["hung"]:
                    dead.append(f"worker:{w['node']} (hung)")
        elif self.runtime.presence is not None:  # workers on other hosts: as they announce themselves
            dead.extend(f"worker:{w['node']} ({w['state']})" for w in self.runtime.presence.status()
                        if not w["ready"])
        if self.runtime.transport is not None and not self.runtime.transport.connected:
            dead.append("nats")
        return dead

    def full_stores(self) -> list[str]:
        """The stores refusing new messages for lack of space right now (``message:fra``: a POP's message
        store whose disk or LMDB map is full; ``storage.space_watch``), this process's and, in a cluster,
        those its workers' heartbeats name (``worker:w0 (message:fra)``: the worker, never a path);
        ``/readyz`` answers 503 ``store_full`` while there is one."""
        full = self.runtime.directory.full_stores.names()
        if self.cluster is not None:
            full += [f"worker:{w['node']} ({name})" for w in self.cluster.status()
                     for name in w.get("full_stores", ())]
        return full

    def stats(self, with_carriers: bool = False) -> dict:
        """The numbers of ``/v1/stats``; ``with_carriers``: ``carriers`` too (``/metrics``, so one scrape
        asks the workers everything at once, within ``STATS_TIMEOUT_S``)."""
        extra: dict[str, Any] = {}
        edges = None  # /metrics of a core with HTTP edges: theirs too, asked beside the workers'
        if with_carriers and self.cluster is not None and self.runtime.transport is not None:
            from engine.cluster import edge_metrics
            from engine.cluster.cluster_shards import STATS_TIMEOUT_S

            edges = edge_metrics.ask(self.runtime.transport,
                                     [e.node for e in getattr(self.cluster, "edges", [])],
                                     STATS_TIMEOUT_S)
        if self.mail is not None and self.privacy is not None:
            extra = {"mail": self.mail.stats(), "privacy": self.privacy.stats()}
        if self.cluster is not None:
            extra["workers"] = self.cluster.status()
        elif self.runtime.presence is not None:
            extra["workers"] = self.runtime.presence.status()
        if self.runtime.transport is not None:
            extra["transport"] = self.runtime.transport.stats()
        if self.billing is not None:
            extra["ledger"] = self.billing.stats()
        stats = self.runtime.stats(with_carriers)
        actors = stats.get("actors", {})
        for name, alive in self.parts_alive().items():  # (the mail sender and webhooks too)
            actors.setdefault(name, {"alive": int(alive), "hung": 0})
        stats["dead_actors"] = sum(1 for view in actors.values() if not view["alive"])
        stats = {"in_flight": self.gate.in_flight, "max_in_flight": self.gate.limit,
                 "pending_requests": self.bridge.pending_requests(), **stats, **extra}
        if edges is not None:
            stats["edge_metrics"] = edges.result()  # (ready within STATS_TIMEOUT_S of the asking)
        return stats


# --- a host that exits without stop() -------------------------------------------------------------

_RUNNING: set[Engine] = set()  # started and not yet stopped
_exit_hook_installed = False
_exit_hook_lock = threading.Lock()


def _address_of(accounts: AccountStore) -> Callable[[str], str | None]:
    """The mail sender's look-up: an account's address of record now (None: no such account)."""
    def address_of(account_id: str) -> str | None:
        try:
            return accounts.get(account_id).email
        except UnknownAccount:
            return None
    return address_of


def _stop_running_engines() -> None:
    """Stop every engine the host left running: drain briefly, last commits, graceful unbinds."""
    for engine in list(_RUNNING):
        try:
            engine.stop(drain_seconds=EXIT_DRAIN_SECONDS)
        except Exception:  # the process is exiting: log and let it
            log.exception("stopping the engine at exit failed")


def _install_exit_hook() -> None:
    """Run :func:`_stop_running_engines` when the interpreter exits (normally or on an uncaught
    exception). ``threading._register_atexit`` runs it before Python joins non-daemon threads and before
    ``concurrent.futures`` shuts its pools down, which the HTTP layer still needs while it stops; the
    actors' threads are daemons, so even a stop that fails cannot keep the process alive."""
    global _exit_hook_installed
    with _exit_hook_lock:
        if _exit_hook_installed:
            return
        register = getattr(threading, "_register_atexit", None)
        try:
            if register is None:
                raise RuntimeError("no threading._register_atexit")
            register(_stop_running_engines)
        except RuntimeError:  # interpreter already shutting down, or another Python
            import atexit

            atexit.register(_stop_running_engines)
        _exit_hook_installed = True
