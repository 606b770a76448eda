"""The HTTP edges' metrics on the core's ``/metrics``: each edge's own registry, gathered at scrape time.

Each edge (``engine.cluster.edge``) keeps its own metrics - its customer requests
(``smsroute_http_request_duration_seconds``), the answers it cut, its door's shedding, its connections,
its request log's dropped entries, its NATS link - which nothing served before: the core's ``/metrics``
showed the workers' numbers but none of the edges', so an overloaded or failing edge was invisible.

At a scrape the core asks every edge it supervises (``EdgeQuery`` ``edge_metrics`` over NATS, as it asks
the workers for their stats: all at once, with ``STATS_TIMEOUT_S``) for its exposition, and shows each of
its families with samples as ``smsroute_edge_<name>`` (the edge's ``smsroute_<name>``) with an ``edge``
label (``e0``, ...): other names than the core's own families (one name cannot have two ``# TYPE``
lines in one scrape), the same labels and help. ``smsroute_edge_metrics_answered{edge}`` is 1 for an
edge that answered in time, 0 for one that did not (hung, restarting): its series are missing from
that scrape, the others' are kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from engine import messages as m

QUERY = "edge_metrics"
PREFIX, EDGE_PREFIX = "smsroute_", "smsroute_edge_"

_asking = ThreadPoolExecutor(4, thread_name_prefix="edge-metrics")


def answer(source: Callable[[], bytes] | None) -> Any:
    """An edge's answer to :data:`QUERY`: its exposition as text ("" before its HTTP server runs)."""
    return source().decode() if source is not None else ""


def ask(transport: Any, edges: list[str], timeout: float) -> Future:
    """Ask every edge at once for its exposition; the future's result is ``{edge: text or None}``
    (None: no answer within ``timeout``, or a failure), ready at most about ``timeout`` later."""
    def gather() -> dict[str, str | None]:
        act_by = time.time() + timeout
        asked = {node: _asking.submit(_ask_one, transport, node, timeout, act_by) for node in edges}
        wait(asked.values(), timeout + 1)
        return {node: (f.result() if f.done() and f.exception() is None else None)
                for node, f in asked.items()}

    return _asking.submit(gather) if edges else _done({})


def _ask_one(transport: Any, node: str, timeout: float, act_by: float) -> str | None:
    reply = m.decode(transport.request(node, m.encode(m.ShardQuery(QUERY, [])), timeout, act_by,
                                       read=True))
    if not isinstance(reply, m.ShardReply) or not reply.ok:
        return None
    return str(reply.result)


def _done(value: Any) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


def families(gathered: dict[str, str | None]) -> Iterator[Metric]:
    """``smsroute_edge_metrics_answered{edge}`` and every edge family with samples, renamed and
    labelled by edge (see the module's docstring), one family per name over all edges."""
    answered = GaugeMetricFamily("smsroute_edge_metrics_answered", "1 if the HTTP edge answered this "
                                 "scrape's question for its metrics in time, 0 if not (its series "
                                 "are missing from this scrape)", labels=["edge"])
    merged: dict[str, Metric] = {}
    for edge, text in sorted(gathered.items()):
        answered.add_metric([edge], int(text is not None))
        for family in text_string_to_metric_families(text or ""):
            if not family.samples or not family.name.startswith(PREFIX):
                continue
            name = EDGE_PREFIX + family.name[len(PREFIX):]
            out = merged.get(name)
            if out is None:
                out = merged[name] = Metric(name, family.documentation, family.type)
            for s in family.samples:
                out.add_sample(EDGE_PREFIX + s.name[len(PREFIX):], {**s.labels, "edge": edge}, s.value)
    yield answered
    yield from merged.values()
