"""A worker routes and prices by the core's current routing table, also one that was down (or could not
reach the core) when the table was replaced on the control port.

Real nats-server and worker processes on loopback. Before, a worker that missed the core's push kept its
own saved table after its restart, and charged its accounts the old prices until the next replacement.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from engine import messages as m
from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import Cluster, cluster_with_a_cuttable_link, worker_down
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

DE_NUMBER = "+4915112345678"
NEW_DE_PRICE = 99_000  # the default table charges 75,000 micro-USD per German segment


def _dearer_germany(c: Cluster) -> dict:
    table = c.engine.routing_table()
    assert table["rates"]["DE"] != NEW_DE_PRICE
    return {**table, "rates": {**table["rates"], "DE": NEW_DE_PRICE}}


def _account_on(c: Cluster, node: str):
    place = c.engine.runtime.placement
    return next(a for a in c.accounts(2) if place.worker_of(a.id) == node)


def _replace_while_w1_is_down(c: Cluster, table: dict) -> None:
    """The PUT reaches the core and w0; w1 is not there to take it (the call reports that)."""
    with contextlib.suppress(ClusterUnavailable):
        c.engine.replace_routing(table)
    assert c.engine.routing_table() == table


def test_a_worker_that_was_down_when_the_table_was_replaced_prices_by_the_new_table(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        acct = _account_on(c, "w1")
        new = _dearer_germany(c)
        with worker_down(c, 1):
            _replace_while_w1_is_down(c, new)
        accepted = c.engine.submit(acct.api_key, DE_NUMBER, "ACME", "hello")
        assert accepted.price_micro_usd == NEW_DE_PRICE
        saved = json.loads((tmp_path / "workers" / "w1" / "routing.json").read_text("utf-8"))
        assert saved == new  # and it survives the worker's next restart
    finally:
        c.stop()


def test_a_worker_that_cannot_reach_the_core_at_start_takes_its_table_as_soon_as_it_can(tmp_path):
    c = Cluster(tmp_path, workers=2)
    try:
        acct = _account_on(c, "w1")
        old_price = c.engine.routing_table()["rates"]["DE"]
        new = _dearer_germany(c)
        transport = c.engine.runtime.transport
        answer = transport._answer

        def core_not_answering_routing(raw: bytes) -> bytes:
            q = m.decode(raw)
            if isinstance(q, m.ShardQuery) and q.kind == "routing":
                return m.encode(m.ShardReply(False, "the core is starting", "cluster_unavailable"))
            return answer(raw)

        with worker_down(c, 1):
            _replace_while_w1_is_down(c, new)
            transport._answer = core_not_answering_routing
        try:  # w1 started by its saved (here: the configured) table
            assert c.engine.submit(acct.api_key, DE_NUMBER, "ACME", "old").price_micro_usd == old_price
        finally:
            transport._answer = answer
        saved = tmp_path / "workers" / "w1" / "routing.json"
        wait_for(lambda: saved.exists() and json.loads(saved.read_text("utf-8")) == new,
                 "w1 to take the core's table", 15)
        assert c.engine.submit(acct.api_key, DE_NUMBER, "ACME", "new").price_micro_usd == NEW_DE_PRICE
    finally:
        c.stop()


def test_a_worker_cut_off_from_nats_when_the_table_was_replaced_takes_it_when_its_link_comes_back(tmp_path):
    """w1's NATS link is cut, the table is replaced meanwhile (the core and w0 take it; w1 does not hear
    of it) and the link comes back: w1, which never restarted, asks the core again once it has
    reconnected and prices by the new table - only the re-ask after a reconnect can tell it."""
    # w1 reaches the server through the cutter; the core and w0 directly
    with cluster_with_a_cuttable_link(tmp_path, cut="w1") as (c, link):
        acct = _account_on(c, "w1")
        old_price = c.engine.routing_table()["rates"]["DE"]
        new = _dearer_germany(c)
        link.cut()
        with pytest.raises(ClusterUnavailable):  # w1 did not take it
            c.engine.replace_routing(new)
        assert c.engine.routing_table() == new
        saved = tmp_path / "workers" / "w1" / "routing.json"
        assert not saved.exists() or json.loads(saved.read_text("utf-8"))["rates"]["DE"] == old_price
        link.restore()
        wait_for(lambda: saved.exists() and json.loads(saved.read_text("utf-8")) == new,
                 "w1 to take the core's table after its reconnect", 30)
        assert c.engine.submit(acct.api_key, DE_NUMBER, "ACME", "new").price_micro_usd == NEW_DE_PRICE
