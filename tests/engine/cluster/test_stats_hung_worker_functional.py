"""A worker that hangs but stays connected holds neither ``/v1/stats`` nor ``/metrics`` for long, and
its numbers' absence is named, not hidden.

Before, the core asked each worker for its POP rows (and ``/metrics`` for its carrier rows) with the
30 s query timeout: a stopped worker (SIGSTOP, or actors that do not answer) held both answers ~30 s -
past a Prometheus scrape's 10 s - and then every worker's POP rows were thrown away, with no word of
which worker was missing. Real nats-server, two worker processes, the core's real control port.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time

import pytest

from engine.cluster import cluster_shards as shards
from tests.engine.cluster.support import Cluster, stop_process
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.promlint import lint
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

ANSWER_WITHIN_S = shards.STATS_TIMEOUT_S + 4  # the deadline, and room for a loaded test host


def _get(port: int, token: str, path: str) -> tuple[float, bytes]:
    """``(seconds it took, body)`` of a 200 answer; gives up (fails) well before the old 30 s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_WITHIN_S + 2)
    started = time.monotonic()
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, body
    return time.monotonic() - started, body


def test_a_stopped_worker_is_named_missing_and_the_others_rows_are_kept(tmp_path):
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        port = c.engine.http.control_port
        token = (tmp_path / "core" / "operator.token").read_text().strip()
        before = json.loads(_get(port, token, "/v1/stats")[1])
        assert {p["worker"] for p in before["pops"]} == {"w0", "w1"}
        assert before["pops_missing"] == {}
        pops = {p["pop"] for p in before["pops"]}
        stopped = c.cluster.workers[1].proc
        assert stopped is not None
        stop_process(stopped.pid)  # connected (the kernel keeps its socket), answers nothing
        try:
            took, body = _get(port, token, "/v1/stats")
            assert took < ANSWER_WITHIN_S
            stats = json.loads(body)
            assert {p["pop"] for p in stats["pops"] if p["worker"] == "w0"} == pops  # kept
            assert all(p["worker"] == "w0" for p in stats["pops"])
            assert list(stats["pops_missing"]) == ["w1"]
            assert stats["worker_transport"]["w1"]["answered"] is False

            took, body = _get(port, token, "/metrics")
            assert took < ANSWER_WITHIN_S
            scrape = body.decode()
            for part in ("pops", "carriers", "retention", "nats"):
                assert f'smsroute_worker_stats_answered{{part="{part}",worker="w0"}} 1.0' in scrape
                assert f'smsroute_worker_stats_answered{{part="{part}",worker="w1"}} 0.0' in scrape
            assert [p for p in lint(scrape) if "smsroute_worker_" in p] == []
            assert re.search(r'^smsroute_worker_retention_sweeps_total\{worker="w0"\} ', scrape, re.M)
            assert 'smsroute_worker_retention_sweeps_total{worker="w1"}' not in scrape  # missing: not 0
            shards_seen = set(re.findall(r'^smsroute_pop_in_flight\{pop="([^"]+)",worker="([^"]+)"\}',
                                         scrape, re.M))
            assert shards_seen == {(p, "w0") for p in pops}
            assert re.search(r'^smsroute_carrier_window\{carrier="[^"]+",pop="[^"]+"\} ', scrape,
                             re.M), "w0's carrier rows are kept"
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        wait_for(lambda: json.loads(_get(port, token, "/v1/stats")[1])["pops_missing"] == {},
                 "w1 back on the stats", 20)
    finally:
        c.stop()
