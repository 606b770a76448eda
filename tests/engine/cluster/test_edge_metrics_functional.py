"""The HTTP edges' own metrics on the core's ``/metrics`` (``engine.cluster.edge_metrics``), through a
real ``smsroute run --workers 1 --edges 2``.

Before, each edge kept its metrics (its customer requests, cut answers, shedding, connections, NATS
link) in a registry nothing served: the core's ``/metrics`` showed none of them. Now each edge's are
there as ``smsroute_edge_*{edge}``, and an edge that does not answer the scrape in time is
``smsroute_edge_metrics_answered{edge} 0`` while the other's series are kept.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.engine.cluster.test_edges_functional import _account, _start
from tests.engine.cluster.test_run_workers_functional import _children, _kill_left
from tests.engine.http.promlint import lint
from tests.engine.http.test_metrics_lint_functional import _readme_metric_names

pytestmark = pytest.mark.functional

SUBMITS = 12


def _value(scrape: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for raw, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", scrape, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', raw))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(value)
    return total


def _scrape(ops) -> str:
    status, _, body = ops.request("GET", "/metrics")
    assert status == 200
    return body.decode()


def test_every_edges_metrics_are_on_the_cores_metrics_labelled_by_edge(tmp_path):
    run, api, ops, children = _start(tmp_path)
    try:
        with run:
            acct = _account(ops)
            api.token = acct["api_key"]
            for i in range(SUBMITS):  # a fresh connection each: the kernel spreads them over both edges
                status, _, body = api.request(
                    "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME", "body": f"m{i}"})
                assert status == 202, body
            assert api.request("GET", "/v1/balance")[0] == 200  # forwarded: the core answers it

            scrape = _scrape(ops)
            assert lint(scrape) == []
            for edge in ("e0", "e1"):
                assert _value(scrape, "smsroute_edge_metrics_answered", edge=edge) == 1
                assert _value(scrape, "smsroute_edge_nats_connected", edge=edge) == 1
            # every submit was served (and counted) by one of the edges: all of them are here
            assert _value(scrape, "smsroute_edge_http_request_duration_seconds_count", app="customer",
                          endpoint="POST /v1/messages", code="202") == SUBMITS
            assert _value(scrape, "smsroute_edge_http_request_duration_seconds_count",
                          endpoint="GET /v1/balance") == 0  # (forwarded: the core's own series)
            # the README's metrics table names every edge family this scrape has, and this scrape
            # has every one it names but those that need an event first (a cut, a store full)
            exported = {n for n in re.findall(r"^# TYPE (smsroute_edge_\S+) ", scrape, re.M)
                        if not n.endswith("_created")} - {"smsroute_edge_query_timeouts_total"}
            named = {n for n in _readme_metric_names() if n.startswith("smsroute_edge_")} - {
                "smsroute_edge_query_timeouts_total"}  # (the core's own, not an edge's)
            assert sorted(exported - named) == []
            assert sorted(named - exported) == ["smsroute_edge_http_answers_cut_total",
                                                "smsroute_edge_store_full_refusals_total"]

            status, _, stats = ops.request("GET", "/v1/stats")
            e1 = next(w for w in stats["workers"] if w["node"] == "e1")
            os.kill(e1["pid"], signal.SIGSTOP)  # hung: it answers no scrape
            try:
                scrape = _scrape(ops)
            finally:
                os.kill(e1["pid"], signal.SIGCONT)
            assert _value(scrape, "smsroute_edge_metrics_answered", edge="e1") == 0
            assert _value(scrape, "smsroute_edge_metrics_answered", edge="e0") == 1
            assert _value(scrape, "smsroute_edge_nats_connected", edge="e0") == 1
            assert _value(scrape, "smsroute_edge_nats_connected", edge="e1") == 0  # (missing)
            assert run.stop(30) == 0
    finally:
        _kill_left(children | _children(run.proc.pid) if run.proc.poll() is None else children)
