"""An operator's action that a cluster answered ``cluster_unavailable`` does not take effect later.

Real nats-server and worker processes on loopback; the core reaches the server through a relay that
cuts or stalls its link (the workers stay connected). Before, a suspension asked for while the core's
link was down waited in the NATS client's reconnect buffer, failed after 30 s, and was carried out once
the link came back; one that a stalled link delivered late was carried out too.
"""

from __future__ import annotations

import json

import pytest

from engine.cluster import cluster_shards as shards
from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import Cluster, cluster_with_a_cuttable_link
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


@pytest.fixture()
def cut_core(tmp_path):
    """``(cluster, link)``: two workers; the core's NATS link goes through ``link``."""
    with cluster_with_a_cuttable_link(tmp_path, cut="core") as cluster_and_link:
        yield cluster_and_link


def _suspended_anywhere(c: Cluster, carrier: str) -> bool:
    row = next(r for r in c.engine.carriers() if r["carrier"] == carrier)
    return any(w["suspended"] for w in row["workers"])


def test_a_suspension_refused_while_the_cores_link_was_down_does_not_happen_when_it_comes_back(
        cut_core, monkeypatch):
    c, link = cut_core
    monkeypatch.setattr(shards, "QUERY_TIMEOUT_S", 5.0)  # (before the fix: 5 s in the buffer, not 30)
    carrier = c.engine.carriers()[0]["carrier"]
    link.cut()
    wait_for(lambda: not c.engine.runtime.transport.connected, "the core to notice its link is down")
    with pytest.raises(ClusterUnavailable):  # 503 cluster_unavailable on the control port
        c.engine.suspend_carrier(carrier, True)
    link.restore()
    wait_for(lambda: c.engine.runtime.transport.connected, "the core to reconnect", 15)
    # asked after anything the core sent before on its link, and answered in that order by each worker
    assert not _suspended_anywhere(c, carrier)
    assert c.engine.stats()["transport"]["requests_refused"] >= 1  # (/metrics: reason="link_down")


def test_a_suspension_that_reaches_the_workers_after_the_core_gave_up_is_not_carried_out(
        cut_core, monkeypatch):
    c, link = cut_core
    monkeypatch.setattr(shards, "QUERY_TIMEOUT_S", 2.0)
    carrier = c.engine.carriers()[0]["carrier"]
    link.hold()  # the link stalls unnoticed: the question goes out but arrives only after release()
    with pytest.raises(ClusterUnavailable):
        c.engine.suspend_carrier(carrier, True)
    link.release()
    assert not _suspended_anywhere(c, carrier)


def test_a_table_replaced_while_the_cores_link_was_down_reaches_the_workers_when_it_comes_back(
        cut_core, tmp_path):
    """The replacement is refused at once (not sent late), yet the core has the new table; the workers,
    whose links stayed up, get it pushed when the core's link is back."""
    c, link = cut_core
    table = c.engine.routing_table()
    new = {**table, "rates": {**table["rates"], "DE": table["rates"]["DE"] + 1}}
    link.cut()
    wait_for(lambda: not c.engine.runtime.transport.connected, "the core to notice its link is down")
    with pytest.raises(ClusterUnavailable):
        c.engine.replace_routing(new)
    assert c.engine.routing_table() == new
    link.restore()
    for node in ("w0", "w1"):
        saved = tmp_path / "workers" / node / "routing.json"
        wait_for(lambda saved=saved: saved.exists() and json.loads(saved.read_text("utf-8")) == new,
                 f"{node} to take the core's table", 30)
