"""Prometheus metrics for the control port's ``/metrics``, in a registry of their own.

What is exposed:

* ``smsroute_messages_total{status,pop,carrier}`` — every status change the engine reports.
* ``smsroute_delivery_latency_seconds{pop,country}`` — accepted → final status, per corridor.
* ``smsroute_submit_latency_seconds{country}`` — ``POST /v1/messages`` until the durable 202, per corridor.
* ``smsroute_http_request_duration_seconds{app,endpoint,code}`` — every HTTP answer.
* ``smsroute_webhook_backlog`` and ``smsroute_webhook_deliveries_total{outcome}``.
* ``smsroute_engine_*`` gauges — every number in ``engine.stats()`` (in-flight, queue depths, per-POP and
  per-carrier counters, sweeper counts), flattened: ``{"pops": {"fra": {"queued": 3}}}`` becomes
  ``smsroute_engine_pops_queued{key="fra"} 3``.

Counters and histograms are thread-safe (prometheus_client), so status callbacks may update them from any
thread. The start times used for delivery latency are kept in a bounded map (oldest dropped first).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from engine.status import FINAL

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
MAX_TRACKED = 200_000
_NAME = re.compile(r"[^a-zA-Z0-9_]")


class HttpMetrics:
    """All metrics of one running HTTP layer."""

    def __init__(self, stats: Callable[[], dict[str, Any]] | None = None,
                 extra: Callable[[], dict[str, float]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages = Counter("smsroute_messages", "Message status changes",
                                ["status", "pop", "carrier"], registry=self.registry)
        self.delivery_latency = Histogram(
            "smsroute_delivery_latency_seconds", "Accepted to final status, per corridor",
            ["pop", "country"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.submit_latency = Histogram(
            "smsroute_submit_latency_seconds", "POST /v1/messages until durably accepted",
            ["country"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.requests = Histogram(
            "smsroute_http_request_duration_seconds", "HTTP answers",
            ["app", "endpoint", "code"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self._started: OrderedDict[str, float] = OrderedDict()
        self.registry.register(_GaugeCollector(stats or dict, extra or dict))

    def observe_request(self, app: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(app, endpoint, str(status)).observe(seconds)

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


class _GaugeCollector:
    """Turns ``engine.stats()`` and the HTTP layer's own numbers into gauges at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, Any]],
                 extra: Callable[[], dict[str, float]]) -> None:
        self._stats = stats
        self._extra = extra

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for name, key, value in _flatten("smsroute_engine", self._stats()):
            if name not in families:
                families[name] = GaugeMetricFamily(name, "engine.stats() " + name[16:],
                                                   labels=["key"])
            families[name].add_metric([key], value)
        yield from families.values()
        for name, value in self._extra().items():
            yield GaugeMetricFamily(name, name.replace("_", " "), value=value)


def _flatten(prefix: str, data: Any, key: str = "") -> Iterator[tuple[str, str, float]]:
    """(metric name, entity key, number) for every number in nested stats.

    Below the top level, a dict whose values are all dicts is a map of entities (POPs, carriers), and so
    is a list of dicts (named by their ``pop``/``carrier``/``name`` field): the entity names become the
    ``key`` label instead of part of the metric name.
    """
    if isinstance(data, bool | int | float):
        yield prefix, key, float(data)
        return
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        data = {_entity_name(v, i): v for i, v in enumerate(data)}
    if not isinstance(data, dict):
        return
    entities = prefix != "smsroute_engine" and bool(data) and all(
        isinstance(v, dict) for v in data.values())
    for k, v in data.items():
        if entities:
            yield from _flatten(prefix, v, f"{key}/{k}" if key else str(k))
        else:
            yield from _flatten(f"{prefix}_{_NAME.sub('_', str(k))}", v, key)


def _entity_name(item: dict, index: int) -> str:
    for field in ("carrier", "pop", "name", "id"):
        if isinstance(item.get(field), str):
            return item[field]
    return str(index)
