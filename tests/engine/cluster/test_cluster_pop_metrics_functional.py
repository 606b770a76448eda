"""A cluster core's ``/metrics`` has one series per POP shard: ``pop`` and ``worker``.

Every worker runs a shard of every POP, and the core listed each shard's numbers under ``pop`` alone, so
``smsroute_pop_*`` and ``smsroute_webhook_outbox{,_dropped_total}`` held duplicate series (Prometheus
keeps one of them: a worker's drops or backlog could be hidden behind another's). Real nats-server,
two worker processes and the core's real control port on loopback.
"""

from __future__ import annotations

import re

import pytest

from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.engine.http.promlint import lint

pytestmark = pytest.mark.functional


def test_each_pop_shard_is_its_own_series_labelled_by_worker(tmp_path):
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        token = (tmp_path / "core" / "operator.token").read_text().strip()
        status, _, body = Client(c.engine.http.control_port, token).request("GET", "/metrics")
        assert status == 200
        scrape = body.decode() if isinstance(body, bytes) else body
        assert [p for p in lint(scrape) if "duplicate series" in p] == []
        pops = {p["pop"] for p in c.engine.stats()["pops"]}
        assert len(pops) >= 2
        for family in ("smsroute_pop_in_flight", "smsroute_webhook_outbox",
                       "smsroute_webhook_outbox_dropped_total"):
            shards = set(re.findall(rf'^{family}\{{pop="([^"]+)",worker="([^"]+)"\}} ', scrape, re.M))
            assert shards == {(p, w) for p in pops for w in ("w0", "w1")}, family
        # (the core's answers to its HTTP edges: only a cluster's core has them)
        assert 'smsroute_edge_query_timeouts_total{query="lease_block"} 0.0' in scrape
        assert [p for p in lint(scrape) if "smsroute_edge_query" in p] == []
    finally:
        c.stop()
