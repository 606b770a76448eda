"""A worker's NATS counters reach the core's control port: ``/v1/stats`` (``worker_transport``, by
node) and ``/metrics`` (``smsroute_worker_nats_*{worker}``).

Before, a worker's ``late_queries`` (an operator's action that reached it after the core gave up, dropped
unacted) and its other transport counters were only in that worker's log: an operator watching the core
saw nothing. A worker that is down is shown as not answered, within the stats call's short deadline.
Real nats-server, worker processes and the core's real control port on loopback.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from engine.cluster import cluster_shards as shards
from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import cluster_with_a_cuttable_link, worker_down
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.engine.http.promlint import lint
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


@pytest.fixture()
def cut_core(tmp_path):
    """``(cluster, link, control)``: two workers, the core's NATS link through ``link``, and a client
    of the core's control port."""
    with cluster_with_a_cuttable_link(tmp_path, cut="core", overrides=webhook_engine_overrides(),
                                      http=True) as (c, link):
        token = (tmp_path / "core" / "operator.token").read_text().strip()
        yield c, link, Client(c.engine.http.control_port, token)


def _stats(control: Client) -> dict:
    status, _, body = control.request("GET", "/v1/stats")
    assert status == 200, body
    return body


def _scrape(control: Client) -> str:
    status, _, body = control.request("GET", "/metrics")
    assert status == 200
    return body.decode() if isinstance(body, bytes) else body


def _answered_by(nodes: tuple[str, ...], ask: Callable[[], Any], answered: Callable[[Any, str], bool]
                 ) -> Any:
    """``ask()``'s first result that every one of ``nodes`` answered. Each worker has
    ``STATS_TIMEOUT_S`` (2 s) to answer, and a question that reaches it after half of that is dropped
    unanswered (as late): on a loaded machine one may miss a call - shown as not answered, as it
    should be - and answer the next one."""
    def each_answered() -> Any:
        got = ask()
        return got if all(answered(got, node) for node in nodes) else None

    return wait_for(each_answered, f"an answer from each of {', '.join(nodes)}", 30)


def _all_answered(links: dict, node: str) -> bool:
    return bool(links[node]["answered"])


def _scraped_all(scrape: str, node: str) -> bool:
    return f'smsroute_worker_nats_answered{{worker="{node}"}} 1.0' in scrape


def test_a_late_query_dropped_by_the_workers_is_counted_on_the_cores_stats_and_metrics(
        cut_core, monkeypatch):
    c, link, control = cut_core
    links = _answered_by(("w0", "w1"), lambda: _stats(control)["worker_transport"], _all_answered)
    assert sorted(links) == ["w0", "w1"]
    assert all(v["connected"] for v in links.values())
    # (0 on a quiet machine; on a loaded one a question the core asked while starting may already have
    # reached a worker late: what the held suspension below adds is counted from here)
    before = {node: v["late_queries"] for node, v in links.items()}
    monkeypatch.setattr(shards, "QUERY_TIMEOUT_S", 2.0)
    carrier = c.engine.carriers()[0]["carrier"]
    link.hold()  # the suspension goes out but reaches the workers only after the core gave up
    with pytest.raises(ClusterUnavailable):
        c.engine.suspend_carrier(carrier, True)
    link.release()
    # (a read the core asked meanwhile, e.g. the webhook outboxes, may have been dropped late too)
    links = wait_for(lambda: (v := _stats(control)["worker_transport"]) and all(
        w.get("late_queries", 0) > before[node] for node, w in v.items()) and v,
        "each worker's dropped late query on the core's /v1/stats", 30)
    scrape = _answered_by(("w0", "w1"), lambda: _scrape(control), _scraped_all)
    for node in ("w0", "w1"):
        late = re.search(rf'^smsroute_worker_nats_queries_not_acted_on_total\{{reason="late",'
                         rf'worker="{node}"\}} (\S+)$', scrape, re.M)
        assert late is not None and float(late[1]) >= links[node]["late_queries"], scrape
        assert f'smsroute_worker_nats_connected{{worker="{node}"}} 1.0' in scrape
    assert [p for p in lint(scrape) if "smsroute_worker_nats" in p] == []  # conventions kept


def test_a_worker_that_is_down_is_shown_as_not_answered_and_does_not_hold_up_the_stats(cut_core):
    c, _link, control = cut_core
    def stats_held_up_by_no_one() -> dict:
        started = time.monotonic()
        links = _stats(control)["worker_transport"]
        assert time.monotonic() - started < shards.STATS_TIMEOUT_S + 5
        assert links["w1"] == {"answered": False, "error": "down: not asked"}  # known down: not asked
        return links

    with worker_down(c, 1):
        links = _answered_by(("w0",), stats_held_up_by_no_one, _all_answered)
        assert links["w0"]["connected"]
        scrape = _answered_by(("w0",), lambda: _scrape(control), _scraped_all)
        assert 'smsroute_worker_nats_answered{worker="w1"} 0.0' in scrape
        assert 'smsroute_worker_nats_frames_total{way="in",worker="w1"}' not in scrape  # not made up
    wait_for(lambda: _stats(control)["worker_transport"]["w1"]["answered"], "w1 back on the stats", 30)
