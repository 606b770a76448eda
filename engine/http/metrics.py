"""Prometheus metrics for the control port's ``/metrics``, in a registry of their own.

Conventions (checked by a test that lints a live scrape the way ``promtool check metrics`` does):
counters end in ``_total``; names say what is measured in base units (``_seconds``) and never hold a
POP, carrier or store name — those are label values (``pop``, ``carrier``, ``store``); no colons;
snake_case; every family has help text. Corridors are ``pop`` + ``country``. In a cluster's core the
per-POP families carry ``worker`` too (one series per POP shard).

Counters: ``smsroute_messages_total{status,pop,carrier}`` (every status change the engine reports),
``smsroute_pop_{retries,failovers,resp_timeouts,store_failures}_total{pop}``,
``smsroute_carrier_submitted_total{carrier,pop}``, SMPP carriers also
``smsroute_carrier_{receipts,reconnects,throttle_pauses}_total{carrier,pop}`` and
``smsroute_carrier_errors_total{carrier,pop,error}``,
``smsroute_carrier_bind_refusals_total{carrier,pop,status}``, ``smsroute_webhook_deliveries_total{outcome}``,
``smsroute_retention_sweeps_total``, ``smsroute_retention_sweep_failures_total``,
``smsroute_retention_removed_total{store}``, ``smsroute_webhook_outbox_dropped_total{pop}``,
``smsroute_http_shed_requests_total{reason}`` (503 at the customer API's door: ``pending``, ``delay``),
``smsroute_http_answers_cut_total{app,endpoint}`` (answers that broke off after they started),
``smsroute_edge_query_timeouts_total{query}`` (a cluster's core: HTTP edges' questions its HTTP loop did
not answer in time, answered ``overloaded``).
A cluster's core with HTTP edges: each edge's own families as ``smsroute_edge_<name>{edge,...}`` and
``smsroute_edge_metrics_answered{edge}`` (0: missing this time), ``engine.cluster.edge_metrics``.
This process's NATS link: ``smsroute_nats_*``; in a cluster's core each worker's too,
``smsroute_worker_nats_*{worker}`` and ``smsroute_worker_nats_answered{worker}`` (0: missing this time);
``smsroute_worker_stats_answered{part,worker}`` (``pops``, ``carriers``, ``retention``, ``nats``; 0: that
worker's rows are missing from this scrape - it did not answer within ``STATS_TIMEOUT_S``); each worker's
retention sweeper: ``smsroute_worker_retention_{sweeps,sweep_failures}_total{worker}``,
``smsroute_worker_retention_removed_total{worker,store}``. A cluster's worker and edge processes:
gauges ``smsroute_worker_up{worker}`` and ``smsroute_worker_hung{worker}`` (runs, heartbeat late),
counters ``smsroute_worker_restarts_total{worker}`` and ``smsroute_worker_hung_kills_total{worker}``.

Gauges: ``smsroute_actor_alive{actor}``, ``smsroute_actor_hung{actor}`` (the sweeper or an SMPP
carrier's loop runs but stopped working), ``smsroute_dead_actors``, ``smsroute_dead_sessions``,
``smsroute_http_connections_open{app}`` (counter ``smsroute_http_connection_events_total{app,event}``),
``smsroute_in_flight``, ``smsroute_in_flight_limit``, ``smsroute_pending_requests``,
``smsroute_sessions``, ``smsroute_pop_stats_answered{pop}`` (0: the POP did not answer this scrape
in time, its numbers are missing), ``smsroute_pop_store_full{pop}`` (1: its message store refuses new
messages for lack of space, ``/readyz`` is 503), ``smsroute_pop_attempts_held{pop}`` (messages whose next
carrier attempt waits until status changes can be written again), ``smsroute_carrier_stats_answered{carrier,pop}`` and
``smsroute_retention_stats_answered`` (likewise for a carrier and the retention sweeper), ``smsroute_pop_in_flight{pop}``, ``smsroute_pop_timers{pop}``,
``smsroute_pop_outstanding{pop,carrier}``, ``smsroute_pop_waiting{pop,carrier}``,
``smsroute_carrier_{connected,suspended,available}{carrier,pop}`` (1/0),
``smsroute_carrier_window{carrier,pop}``, ``smsroute_carrier_window_in_use{carrier,pop}``,
``smsroute_carrier_binds{carrier,pop,state}``, ``smsroute_webhook_backlog``, ``smsroute_webhook_held``,
``smsroute_webhook_outbox{pop}``, ``smsroute_http_pending_requests``, ``smsroute_mail_outbox``,
``smsroute_privacy_requests_{open,overdue}``,
``smsroute_privacy_incidents_{open,authority_deadline_close,authority_overdue}``,
``smsroute_billing_chain_head_seq``, ``smsroute_billing_reconciliation_differences``; counters
``smsroute_mail_deliveries_total{outcome}``, ``smsroute_store_dropped_entries_total{store}``, ``smsroute_billing_low_balance_notices_total``.

Histograms: ``smsroute_delivery_latency_seconds{pop,country}`` (accepted -> final status),
``smsroute_submit_latency_seconds{pop,country}`` (``POST /v1/messages`` until the durable 202),
``smsroute_http_request_duration_seconds{app,endpoint,code}``.

The engine's numbers are read at scrape time from a :class:`Snapshot`; the live counters and histograms
are thread-safe (prometheus_client), so status callbacks may update them from any thread. The start
times used for delivery latency are kept in a bounded map (oldest dropped first).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from engine.http.loop_histogram import LoopHistogram, Series
from engine.status import FINAL
from storage.full import FULL_REFUSALS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
MAX_TRACKED = 200_000
POP_COUNTERS = {
    "retries": "Retries scheduled after a retryable carrier answer",
    "failovers": "Retries that moved a message to another carrier",
    "resp_timeouts": "Submits a carrier never answered within resp_timeout_seconds",
    "store_failures": "Group commits the POP's store refused (a full store raises this)",
    "commits": "Group commits written (each one fsynced transaction for a batch of messages)",
    "attempt_hold_starts": "Times the POP stopped starting carrier attempts because status changes could not "
                     "be written (a full disk)",
}
SMPP_COUNTERS = {
    "receipts": "Delivery receipts received",
    "reconnects": "Binds re-established after a drop or a refusal",
    "throttle_pauses": "Pauses of a bind after ESME_RTHROTTLED",
}
CARRIER_FLAGS = {
    "connected": "1 while the carrier's link is up (SMPP: a transmitting bind is bound)",
    "suspended": "1 while an operator has taken the carrier out of service",
    "available": "1 while the carrier takes traffic (connected and not suspended)",
}

PRIVACY_GAUGES = (  # (metric, key of PrivacyServices.stats(), help)
    ("smsroute_privacy_requests_open", "dsar_open", "Data-subject requests not yet answered"),
    ("smsroute_privacy_requests_overdue", "dsar_overdue", "Data-subject requests past their deadline"),
    ("smsroute_privacy_incidents_open", "incidents_open", "Incidents not yet closed"),
    ("smsroute_privacy_incidents_authority_deadline_close", "incidents_authority_deadline_close",
     "Incidents whose 72-hour authority deadline is close and not yet notified"),
    ("smsroute_privacy_incidents_authority_overdue", "incidents_authority_overdue",
     "Incidents past the 72-hour authority deadline and not yet notified"),
)


@dataclass
class Snapshot:
    """What the engine and the HTTP layer report at scrape time (each part may be empty)."""

    engine: dict[str, Any] = field(default_factory=dict)  # Engine.stats()
    carriers: list[dict[str, Any]] = field(default_factory=list)  # Engine.carriers()
    webhook_backlog: int | None = None
    webhook_held: int | None = None
    webhook_outcomes: dict[str, int] = field(default_factory=dict)
    removed_by_store: dict[str, int] = field(default_factory=dict)  # the HTTP layer's own sweeps
    connections: dict[str, dict[str, int]] = field(default_factory=dict)  # per port: open + events
    shedding: dict[str, int] = field(default_factory=dict)  # the customer port's door (Shedder)
    request_log_dropped: int | None = None  # entries dropped while the http store did not keep up
    edge_query_timeouts: dict[str, int] | None = None  # a cluster's core: per query kind


class HttpMetrics:
    """All metrics of one running HTTP layer."""

    def __init__(self, snapshot: Callable[[], Snapshot] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter("smsroute_messages", "Message status changes the engine reported",
                                ["status", "pop", "carrier"], registry=self.registry)
        self.answers_cut = Counter(
            "smsroute_http_answers_cut", "Answers that broke off after they started (a streamed "
            "answer failing mid-way): the client saw their status, then a closed connection",
            ["app", "endpoint"], registry=self.registry)
        self.delivery_latency = Histogram(
            "smsroute_delivery_latency_seconds", "Accepted to final status, per corridor",
            ["pop", "country"], buckets=LATENCY_BUCKETS, registry=self.registry)
        # observed on every request: histograms of the HTTP loop's own (engine.http.loop_histogram)
        self.submit_latency = LoopHistogram(
            "smsroute_submit_latency_seconds", "POST /v1/messages until durably accepted, per corridor",
            ["pop", "country"], LATENCY_BUCKETS)
        self.requests = LoopHistogram(
            "smsroute_http_request_duration_seconds", "HTTP answers",
            ["app", "endpoint", "code"], LATENCY_BUCKETS)
        self.registry.register(self.submit_latency)
        self.registry.register(self.requests)
        self._started: OrderedDict[str, float] = OrderedDict()
        self._request_children: dict[tuple[str, str, int], Series] = {}  # looked up once per series
        self._submit_children: dict[tuple[str, str], Series] = {}
        self._bounds = self.requests.bounds  # (the same buckets as submit_latency's)
        self.registry.register(_SnapshotCollector(snapshot or Snapshot))

    def observe_request(self, app: str, endpoint: str, status: int, seconds: float) -> None:
        """One HTTP answer (the HTTP loop's thread)."""
        series = self._request_children.get((app, endpoint, status))
        if series is None:  # endpoints are route templates: a bounded set of series
            series = self._request_children[(app, endpoint, status)] = self.requests.series(
                app, endpoint, str(status))
        series.counts[bisect_left(self._bounds, seconds)] += 1  # LoopHistogram.observe, inline
        series.sum += seconds

    def observe_submit(self, pop: str, country: str, seconds: float) -> None:
        """One ``POST /v1/messages`` answered 202 after ``seconds`` (the HTTP loop's thread)."""
        series = self._submit_children.get((pop, country))
        if series is None:  # corridors: a bounded set of series
            series = self._submit_children[(pop, country)] = self.submit_latency.series(
                pop or "none", country or "none")
        series.counts[bisect_left(self._bounds, seconds)] += 1
        series.sum += seconds

    def observe_status(self, item: Any) -> None:
        """One ``engine.messages.StatusItem``: count it and, when final, time its corridor."""
        self.messages.labels(item.status, item.pop or "none", item.carrier or "none").inc()
        if item.status == "accepted":
            self._started[item.message_id] = item.at
            if len(self._started) > MAX_TRACKED:
                self._started.popitem(last=False)
        elif item.status in FINAL:
            started = self._started.pop(item.message_id, None)
            if started is not None:
                self.delivery_latency.labels(item.pop or "none", item.country or "none").observe(
                    max(0.0, item.at - started))

    def exposition(self) -> bytes:
        """The Prometheus text format of everything."""
        return generate_latest(self.registry)


class _SnapshotCollector:
    """Turns a :class:`Snapshot` into metric families at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _engine_families(snap.engine)
        yield from _actor_families(snap.engine)
        yield from _cluster_families(snap.engine)
        yield from _connection_families(snap.connections)
        yield from _pop_families(snap.engine.get("pops") or [])
        yield from _carrier_families(snap.carriers)
        yield from _webhook_families(snap)
        yield from _shedding_families(snap.shedding)
        if snap.engine.get("edge_metrics"):  # a cluster's core: its HTTP edges' own metrics
            from engine.cluster.edge_metrics import families

            yield from families(snap.engine["edge_metrics"])
        if snap.edge_query_timeouts is not None:
            late = CounterMetricFamily("smsroute_edge_query_timeouts",
                                       "HTTP edges' questions the core's HTTP loop did not answer in "
                                       "time (answered overloaded), by query", labels=["query"])
            for query in ("account_for_key", "lease", "lease_block"):
                late.add_metric([query], snap.edge_query_timeouts.get(query, 0))
            yield late
        if snap.request_log_dropped is not None:
            dropped = CounterMetricFamily("smsroute_store_dropped_entries",
                                          "Entries not written: the store's disk did not keep up",
                                          labels=["store"])
            dropped.add_metric(["request_log"], snap.request_log_dropped)
            yield dropped
        yield from _retention_families(snap.engine.get("sweeper") or {}, snap.removed_by_store)
        yield from _worker_retention_families(snap.engine.get("worker_sweepers") or {})
        yield from _mail_families(snap.engine.get("mail") or {})
        yield from _privacy_families(snap.engine.get("privacy") or {})
        yield from _ledger_families(snap.engine.get("ledger") or {})
        yield from _store_full_families(dict(FULL_REFUSALS))


def _gauge(name: str, doc: str, value: Any) -> Iterator[GaugeMetricFamily]:
    if _is_number(value):
        yield GaugeMetricFamily(name, doc, value=float(value))


def _engine_families(stats: dict[str, Any]) -> Iterator[Metric]:
    yield from _gauge("smsroute_in_flight", "Messages accepted and not yet final",
                      stats.get("in_flight"))
    yield from _gauge("smsroute_in_flight_limit", "max_in_flight: beyond it submits are refused",
                      stats.get("max_in_flight"))
    yield from _gauge("smsroute_pending_requests", "Submits waiting for their durable answer",
                      stats.get("pending_requests"))
    yield from _gauge("smsroute_sessions", "Customer session actors running", stats.get("sessions"))


def _actor_families(stats: dict[str, Any]) -> Iterator[Metric]:
    """Long-lived parts (``Engine.parts_alive``: clock, ledger, committer, sweeper, POPs, carriers, the
    mail sender, webhooks): 1 while running. An actor that raised out of a handler has stopped, a
    thread that raised has ended; alert on ``smsroute_dead_actors`` above 0. Hung: 1 while the sweeper or
    an SMPP carrier's event loop runs but stopped working (``Runtime.hung_parts``: ``/readyz`` 503)."""
    alive = GaugeMetricFamily("smsroute_actor_alive", "1 while the actor runs, 0 once it has died",
                              labels=["actor"])
    hung = GaugeMetricFamily("smsroute_actor_hung", "1 while the actor runs but stopped working (the "
                             "sweeper: engine.sweep_stall_seconds without progress; an SMPP carrier: "
                             "its event loop did not turn for engine.child_hung_after_seconds)",
                             labels=["actor"])
    for name, view in sorted((stats.get("actors") or {}).items()):
        _add(alive, [str(name)], (view or {}).get("alive"))
        _add(hung, [str(name)], (view or {}).get("hung"))
    yield alive
    yield hung
    yield from _gauge("smsroute_dead_actors", "Long-lived actors that have died",
                      stats.get("dead_actors"))
    yield from _gauge("smsroute_dead_sessions", "Customer sessions that stopped unexpectedly",
                      stats.get("dead_sessions"))


def _cluster_families(stats: dict[str, Any]) -> Iterator[Metric]:
    """A cluster's worker and edge processes (1 while running; 1 while hung: running, heartbeat late;
    restarts by the supervisor, and those for hanging) and this process's NATS link (its frames in and
    out, what was refused on entry, and requests not acted on)."""
    up = GaugeMetricFamily("smsroute_worker_up", "1 while the worker process runs", labels=["worker"])
    hung = GaugeMetricFamily("smsroute_worker_hung", "1 while the worker process runs but its heartbeat "
                             "is late (engine.child_hung_after_seconds)", labels=["worker"])
    restarts = CounterMetricFamily("smsroute_worker_restarts", "Times the supervisor restarted the "
                                   "worker", labels=["worker"])
    hung_kills = CounterMetricFamily("smsroute_worker_hung_kills", "Times the supervisor killed the "
                                     "worker for hanging (engine.child_kill_after_seconds), then "
                                     "restarted it", labels=["worker"])
    other = GaugeMetricFamily("smsroute_worker_protocol_mismatch", "1 while the process speaks another "
                              "cluster protocol than the core (another smsroute version): it is handed "
                              "no work (engine.cluster.protocol)", labels=["worker"])
    for w in stats.get("workers") or []:
        node = [str(w.get("node"))]
        _add(up, node, int(bool(w.get("alive"))))
        _add(hung, node, int(bool(w.get("hung"))))
        _add(restarts, node, w.get("restarts"))
        _add(hung_kills, node, w.get("hung_kills"))
        _add(other, node, int(bool(w.get("protocol_mismatch"))))
    yield from (up, hung, restarts, hung_kills, other)
    t = stats.get("transport") or {}
    if t:
        yield from _nats_families("smsroute_nats", [], [([], t)])
    links = stats.get("worker_transport") or {}
    if links:  # the core of a cluster: each worker's own link, as that worker counts it
        answered = GaugeMetricFamily("smsroute_worker_nats_answered", "1 if the worker answered the "
                                     "scrape's question for its NATS counters in time, 0 if not (its "
                                     "numbers are missing from this scrape)", labels=["worker"])
        for node, view in sorted(links.items()):
            _add(answered, [str(node)], int(bool(view.get("answered"))))
        yield answered
        yield from _nats_families("smsroute_worker_nats", ["worker"],
                                  [([str(node)], view) for node, view in sorted(links.items())
                                   if view.get("answered")])
        yield _answered_family(stats, links)


def _answered_family(stats: dict[str, Any], links: dict[str, Any]) -> GaugeMetricFamily:
    """Which workers answered which part of this scrape in time (``STATS_TIMEOUT_S``): a hung one
    is 0 and its rows are missing this time, the others' are kept."""
    family = GaugeMetricFamily("smsroute_worker_stats_answered", "1 if the worker's numbers of this "
                               "part (pops, carriers, nats) are in this scrape, 0 if it did not answer "
                               "in time", labels=["part", "worker"])
    parts = {"pops": stats.get("pops_missing"), "carriers": stats.get("carriers_missing"),
             "retention": stats.get("sweepers_missing")}
    for node, view in sorted(links.items()):
        for part, missing in parts.items():
            if isinstance(missing, dict):
                _add(family, [part, str(node)], int(node not in missing))
        _add(family, ["nats", str(node)], int(bool(view.get("answered"))))
    return family


def _nats_families(prefix: str, labels: list[str], links: list[tuple[list[str], dict[str, Any]]]
                   ) -> Iterator[Metric]:
    """One NATS link's numbers per ``(label values, Transport.stats())``: this process's (no label) or
    each worker's (``worker``)."""
    connected = GaugeMetricFamily(f"{prefix}_connected", "1 while the NATS connection is up",
                                  labels=labels)
    frames = CounterMetricFamily(f"{prefix}_frames", "Actor messages over NATS", labels=[*labels, "way"])
    refused = CounterMetricFamily(f"{prefix}_refused", "Inbound frames refused on entry",
                                  labels=[*labels, "reason"])
    backlog = GaugeMetricFamily(f"{prefix}_backlog_bytes", "Bytes sent to NATS the server has not taken",
                                labels=labels)
    dropped = CounterMetricFamily(f"{prefix}_dropped", "Outbound frames dropped: the link did not move "
                                  "and its backlog was full", labels=labels)
    reconnects = CounterMetricFamily(f"{prefix}_reconnects", "Reconnections of the NATS link",
                                     labels=labels)
    queries = CounterMetricFamily(f"{prefix}_queries_not_acted_on", "Requests refused while the link "
                                  "was down, or dropped on arrival after their deadline",
                                  labels=[*labels, "reason"])
    for values, t in links:
        _add(connected, values, int(bool(t.get("connected"))))
        _add(frames, [*values, "out"], t.get("frames_out"))
        _add(frames, [*values, "in"], t.get("frames_in"))
        _add(refused, [*values, "malformed"], t.get("malformed"))
        _add(refused, [*values, "unknown_target"], t.get("unknown_target"))
        _add(backlog, values, t.get("backlog_bytes"))
        _add(dropped, values, t.get("frames_dropped"))
        _add(reconnects, values, t.get("reconnects"))
        _add(queries, [*values, "link_down"], t.get("requests_refused"))
        _add(queries, [*values, "late"], t.get("late_queries"))
    yield from (connected, frames, refused, backlog, dropped, reconnects, queries)


def _connection_families(connections: dict[str, dict[str, int]]) -> Iterator[Metric]:
    """Each HTTP port's open connections, and what its connection guard refused or closed."""
    open_ = GaugeMetricFamily("smsroute_http_connections_open", "Open connections per port",
                              labels=["app"])
    events = CounterMetricFamily("smsroute_http_connection_events",
                                 "Connections refused (bounds), timed out (head) or malformed, per port",
                                 labels=["app", "event"])
    for app, view in sorted(connections.items()):
        _add(open_, [app], view.get("open"))
        for event, n in sorted(view.items()):
            if event != "open":
                _add(events, [app, event], n)
    yield from (open_, events)


def _shard_labels(pops: list[dict[str, Any]]) -> tuple[list[str], Callable[[dict[str, Any]], list[str]]]:
    """The labels of a POP's rows: ``pop``, and in a cluster's core ``worker`` too - every worker runs
    a shard of every POP, and without it the shards' rows were duplicate series of one ``pop``."""
    if any("worker" in p for p in pops):
        return ["pop", "worker"], lambda p: [str(p.get("pop", "")), str(p.get("worker", ""))]
    return ["pop"], lambda p: [str(p.get("pop", ""))]


def _pop_families(pops: list[dict[str, Any]]) -> Iterator[Metric]:
    labels, values = _shard_labels(pops)
    in_flight = GaugeMetricFamily("smsroute_pop_in_flight", "Messages open in the POP", labels=labels)
    timers = GaugeMetricFamily("smsroute_pop_timers", "Expiry and resp-timeout timers pending",
                               labels=labels)
    outstanding = GaugeMetricFamily("smsroute_pop_outstanding",
                                    "Submits sent to a carrier and not yet answered",
                                    labels=[*labels, "carrier"])
    waiting = GaugeMetricFamily("smsroute_pop_waiting", "Messages queued for a carrier's window",
                                labels=[*labels, "carrier"])
    counters = {key: CounterMetricFamily(f"smsroute_pop_{key}", doc, labels=labels)
                for key, doc in POP_COUNTERS.items()}
    full = GaugeMetricFamily("smsroute_pop_store_full", "1 while the POP's message store refuses new "
                             "messages for lack of space (disk or LMDB map)", labels=labels)
    held = GaugeMetricFamily("smsroute_pop_attempts_held", "Messages whose next carrier attempt waits "
                             "until status changes can be written again (a full disk)", labels=labels)
    answered = GaugeMetricFamily("smsroute_pop_stats_answered", "1 if the POP answered this scrape's "
                                 "question for its numbers in time, 0 if not (they are missing from it)",
                                 labels=labels)
    for pop in pops:
        shard = values(pop)
        _add(answered, shard, int("error" not in pop))
        _add(in_flight, shard, pop.get("in_flight"))
        _add(timers, shard, pop.get("timers"))
        _add(full, shard, pop.get("store_full"))
        _add(held, shard, pop.get("attempts_held"))
        for carrier, n in (pop.get("outstanding") or {}).items():
            _add(outstanding, [*shard, str(carrier)], n)
        for carrier, n in (pop.get("waiting") or {}).items():
            _add(waiting, [*shard, str(carrier)], n)
        for key, family in counters.items():
            _add(family, shard, pop.get(key))
    yield from (answered, in_flight, timers, full, held, outstanding, waiting, *counters.values())


def _carrier_families(carriers: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["carrier", "pop"]
    flags = {key: GaugeMetricFamily(f"smsroute_carrier_{key}", doc, labels=labels)
             for key, doc in CARRIER_FLAGS.items()}
    window = GaugeMetricFamily("smsroute_carrier_window", "Submits the carrier may have unanswered",
                               labels=labels)
    in_use = GaugeMetricFamily("smsroute_carrier_window_in_use", "Submits awaiting the carrier's answer",
                               labels=labels)
    binds = GaugeMetricFamily("smsroute_carrier_binds", "SMPP binds per state", labels=[*labels, "state"])
    submitted = CounterMetricFamily("smsroute_carrier_submitted", "Messages handed to the carrier",
                                    labels=labels)
    smpp = {key: CounterMetricFamily(f"smsroute_carrier_{key}", doc, labels=labels)
            for key, doc in SMPP_COUNTERS.items()}
    errors = CounterMetricFamily("smsroute_carrier_errors", "SMPP link and protocol errors by kind",
                                 labels=[*labels, "error"])
    refusals = CounterMetricFamily("smsroute_carrier_bind_refusals",
                                   "SMPP binds the SMSC refused, by bind_resp command_status name",
                                   labels=[*labels, "status"])
    answered = GaugeMetricFamily("smsroute_carrier_stats_answered", "1 if the carrier answered this "
                                 "scrape's question for its numbers in time, 0 if not (they are "
                                 "missing from it)", labels=labels)
    for c in carriers:
        key = [str(c.get("carrier", "")), str(c.get("pop", ""))]
        _add(answered, key, int("error" not in c))
        for flag, family in flags.items():
            if isinstance(c.get(flag), bool):
                _add(family, key, int(c[flag]))
        _add(window, key, c.get("window"))
        _add(in_use, key, c.get("window_in_use"))
        _add(submitted, key, c.get("submitted"))
        if c.get("kind") == "smpp":
            states = Tally(str(b.get("state")) for b in c.get("binds") or [])
            for state, n in sorted(states.items()):
                _add(binds, [*key, state], n)
            for name, family in smpp.items():
                _add(family, key, c.get(name))
            for kind, n in sorted((c.get("errors") or {}).items()):
                _add(errors, [*key, str(kind)], n)
            for status, n in sorted((c.get("bind_refusals") or {}).items()):
                _add(refusals, [*key, str(status)], n)
    yield from (answered, *flags.values(), window, in_use, binds, submitted, *smpp.values(), errors,
                refusals)


def _shedding_families(shedding: dict[str, int]) -> Iterator[Metric]:
    """The customer port's door: requests being served, and those refused 503 before being read."""
    yield from _gauge("smsroute_http_pending_requests", "Customer API requests being served",
                      shedding.get("pending"))
    shed = CounterMetricFamily("smsroute_http_shed_requests",
                               "Customer API requests refused at the door (503 overloaded), by reason",
                               labels=["reason"])
    for reason in ("pending", "delay"):
        _add(shed, [reason], shedding.get(f"shed_{reason}"))
    yield shed


def _webhook_families(snap: Snapshot) -> Iterator[Metric]:
    yield from _gauge("smsroute_webhook_backlog",
                      "Webhook events not yet delivered (from the durable outboxes)",
                      snap.webhook_backlog)
    yield from _gauge("smsroute_webhook_held",
                      "Webhook events held back (kept in the outbox) while the dispatcher is full",
                      snap.webhook_held)
    pops = snap.engine.get("pops") or []
    labels, values = _shard_labels(pops)
    outbox = GaugeMetricFamily("smsroute_webhook_outbox", "Events in the POP's durable webhook outbox",
                               labels=labels)
    dropped = CounterMetricFamily("smsroute_webhook_outbox_dropped",
                                  "Events not stored because the POP's outbox was full", labels=labels)
    for pop in pops:
        _add(outbox, values(pop), pop.get("webhook_outbox"))
        _add(dropped, values(pop), pop.get("webhooks_dropped"))
    yield from (outbox, dropped)
    deliveries = CounterMetricFamily("smsroute_webhook_deliveries",
                                     "Webhook delivery attempts by outcome", labels=["outcome"])
    for outcome, n in sorted(snap.webhook_outcomes.items()):
        _add(deliveries, [str(outcome)], n)
    yield deliveries


def _retention_families(sweeper: dict[str, Any], http_removed: dict[str, int]) -> Iterator[Metric]:
    sweeps = CounterMetricFamily("smsroute_retention_sweeps", "Retention sweeps run")
    failures = CounterMetricFamily("smsroute_retention_sweep_failures",
                                   "Store sweeps that failed (retried at the next sweep)")
    if sweeper:  # a sweeper runs here: silent ({"error"}) is 0, not a missing series
        yield from _gauge("smsroute_retention_stats_answered", "1 if the retention sweeper answered "
                          "this scrape's question for its numbers in time, 0 if not (they are missing "
                          "from it)", int("error" not in sweeper))
    if _is_number(sweeper.get("sweeps")):
        sweeps.add_metric([], float(sweeper["sweeps"]))
        failures.add_metric([], float(sweeper.get("failures") or 0))
    removed = CounterMetricFamily("smsroute_retention_removed",
                                  "Items past their retention removed (bodies purged, records "
                                  "deleted), per store", labels=["store"])
    per_store = Tally(sweeper.get("removed_by_store") or {})
    per_store.update(http_removed)
    for store, n in sorted(per_store.items()):
        _add(removed, [str(store)], n)
    yield from (sweeps, failures, removed)


def _worker_retention_families(workers: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    """The core of a cluster: each worker's own retention sweeper (its POP shards' stores), which
    ``smsroute_retention_*`` (this process's sweeper) does not count; a worker that did not answer the
    scrape in time is left out (``smsroute_worker_stats_answered{part="retention"} 0``)."""
    if not workers:
        return
    sweeps = CounterMetricFamily("smsroute_worker_retention_sweeps", "Retention sweeps the worker ran",
                                 labels=["worker"])
    failures = CounterMetricFamily("smsroute_worker_retention_sweep_failures", "Store sweeps on the "
                                   "worker that failed (retried at its next sweep)", labels=["worker"])
    removed = CounterMetricFamily("smsroute_worker_retention_removed", "Items past their retention the "
                                  "worker removed, per store", labels=["worker", "store"])
    for node, view in sorted(workers.items()):
        _add(sweeps, [str(node)], view.get("sweeps"))
        if _is_number(view.get("sweeps")):
            _add(failures, [str(node)], view.get("failures") or 0)
        for store, n in sorted((view.get("removed_by_store") or {}).items()):
            _add(removed, [str(node), str(store)], n)
    yield from (sweeps, failures, removed)


def _mail_families(mail: dict[str, Any]) -> Iterator[Metric]:
    """The outbox, its send attempts by outcome (``not_delivered``: only logged, no mail server: never
    counted ``sent``) and whether a mail server is configured at all (alert on 0)."""
    yield from _gauge("smsroute_mail_outbox", "Customer mails waiting to be sent", mail.get("outbox"))
    sent = CounterMetricFamily("smsroute_mail_deliveries", "Customer mail send attempts by outcome",
                               labels=["outcome"])
    for outcome in ("sent", "not_delivered", "retried", "refused"):
        _add(sent, [outcome], mail.get(outcome))
    yield sent
    if mail.get("delivery") in ("smtp", "not_configured"):
        yield from _gauge("smsroute_mail_delivery_configured", "1 if a mail server is configured; 0: "
                          "customer mail is only logged, nobody receives it",
                          int(mail["delivery"] == "smtp"))


def _privacy_families(privacy: dict[str, Any]) -> Iterator[Metric]:
    """Data-subject requests and incidents (policy 7.5 and 9); alert on the *_overdue and
    *_deadline_close gauges being above 0."""
    for name, key, doc in PRIVACY_GAUGES:
        yield from _gauge(name, doc, privacy.get(key))


def _ledger_families(ledger: dict[str, Any]) -> Iterator[Metric]:
    """The ledger's chain head (a history of it, kept off the host, is what shows a cut-off tail),
    the last reconciliation's differences (alert above 0) and the low-balance notices sent."""
    yield from _gauge("smsroute_billing_chain_head_seq", "Sequence number of the newest ledger entry",
                      ledger.get("head_seq"))
    yield from _gauge("smsroute_billing_reconciliation_differences",
                      "Differences the last reconciliation of records and ledger found",
                      ledger.get("reconciliation_differences"))
    if _is_number(ledger.get("low_balance_notices")):
        yield CounterMetricFamily("smsroute_billing_low_balance_notices",
                                  "Accounts told their balance went below their threshold",
                                  value=float(ledger["low_balance_notices"]))


def _store_full_families(refusals: dict[str, int]) -> Iterator[Metric]:
    """Writes this process refused because their store was full (``storage.full``), by store."""
    refused = CounterMetricFamily("smsroute_store_full_refusals",
                                  "Writes refused because their store (LMDB map or disk) was full",
                                  labels=["store"])
    for store, n in sorted(refusals.items()):
        _add(refused, [store], n)
    yield refused


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: Any) -> None:
    if _is_number(value):
        family.add_metric(labels, float(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
