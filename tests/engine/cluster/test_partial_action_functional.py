"""An operator's action that reaches only some workers says where it was done, and asking again converges.

Real nats-server and two worker processes on loopback; w1 reaches the server through a relay that cuts
its link (the core and w0 stay connected). Before, a suspension that w0 took and w1 never heard of was
answered 503 ``cluster_unavailable`` naming only w1's silence: the operator could not tell that the
carrier was suspended on w0 and in service on w1. And a hold placed on w0 only could not be asked
again: w0 placed a second one. A lawful order placed on w0 only had no notice and nothing said so: the
503 now says no holder was told and what to do, its holds read notice ``placement_incomplete``, their
disclosure is refused, and asking again with its key completes it with one notice for the whole order.
"""

from __future__ import annotations

import time

import pytest

from engine.errors import ClusterUnavailable, HolderNotNotified
from tests.engine.cluster.support import Cluster, cluster_with_a_cuttable_link
from tests.waiting import wait_for

pytestmark = pytest.mark.functional


@pytest.fixture()
def cut_w1(tmp_path):
    """``(cluster, link)``: two workers; w1's NATS link goes through ``link``."""
    with cluster_with_a_cuttable_link(tmp_path, cut="w1") as cluster_and_link:
        yield cluster_and_link


def _suspended_by_worker(c: Cluster, carrier: str) -> dict[str, bool] | None:
    """Each worker's view of the carrier, or None while a worker does not answer."""
    try:
        rows = c.engine.carriers()
    except ClusterUnavailable:
        return None
    row = next(r for r in rows if r["carrier"] == carrier)
    return {w["worker"]: w["suspended"] for w in row["workers"]}


def test_a_suspension_only_some_workers_took_names_them_and_asking_again_converges(cut_w1):
    c, link = cut_w1
    carrier = c.engine.carriers()[0]["carrier"]
    link.cut()
    with pytest.raises(ClusterUnavailable) as refused:  # 503 cluster_unavailable on the control port
        c.engine.suspend_carrier(carrier, True)
    message = refused.value.message
    assert "done at w0" in message and "no answer from w1" in message, message
    assert "again is safe" in message, message

    link.restore()
    wait_for(lambda: _suspended_by_worker(c, carrier) is not None, "w1 to answer again", 30)
    assert _suspended_by_worker(c, carrier) == {"w0": True, "w1": False}  # what the 503 said
    c.engine.suspend_carrier(carrier, True)  # the operator asks again
    assert _suspended_by_worker(c, carrier) == {"w0": True, "w1": True}

    link.cut()
    with pytest.raises(ClusterUnavailable, match="done at w0; no answer from w1"):
        c.engine.suspend_carrier(carrier, False)
    link.restore()
    wait_for(lambda: _suspended_by_worker(c, carrier) is not None, "w1 to answer again", 30)
    c.engine.suspend_carrier(carrier, False)
    assert _suspended_by_worker(c, carrier) == {"w0": False, "w1": False}


def _holds_by_worker(c: Cluster, reference: str) -> dict[str, list[str]] | None:
    """Each worker's active hold ids with this reference, or None while a worker does not answer."""
    try:
        holds = c.engine.active_holds()
    except ClusterUnavailable:
        return None
    found: dict[str, list[str]] = {}
    for hold in holds:
        if hold["reference"] == reference:
            found.setdefault(hold["pop"].split("/")[0], []).append(hold["hold_id"])
    return {worker: sorted(ids) for worker, ids in found.items()}


def _notices(c: Cluster, reference: str) -> dict[str, dict]:
    """hold id -> its notice as GET /v1/holds shows it, for the holds with this reference."""
    return {h["hold_id"]: h["notice"] for h in c.engine.holds_view()["holds"]
            if h["reference"] == reference}


def test_a_hold_only_some_workers_placed_is_completed_by_asking_again_with_its_key(cut_w1):
    c, link = cut_w1
    account = c.accounts(1)[0]
    order = {"actor": "privacy:test", "reason": "court order", "reference": "ORDER-7",
             "authority": "court_order", "until": time.time() + 3600, "account_id": account.id, "idempotency_key": "order-7"}
    link.cut()
    with pytest.raises(ClusterUnavailable) as refused:  # 503 cluster_unavailable on the control port
        c.engine.place_hold("lawful_order", **order)
    message = refused.value.message
    assert "done at w0" in message and "no answer from w1" in message, message
    assert "with the same Idempotency-Key is safe" in message, message
    # the notice waits for the whole order, and the answer says so and what to do
    assert "no account holder was told yet" in message and "placement_incomplete" in message
    assert "place it again with the same Idempotency-Key" in message, message

    link.restore()
    wait_for(lambda: _holds_by_worker(c, "ORDER-7") is not None, "w1 to answer again", 30)
    placed = _holds_by_worker(c, "ORDER-7")
    assert placed is not None and set(placed) == {"w0"}, placed  # what the 503 said
    notices = _notices(c, "ORDER-7")
    assert notices and all(n == {"state": "placement_incomplete", "mails": 0}
                           for n in notices.values()), notices
    with pytest.raises(HolderNotNotified, match="did not complete.*same Idempotency-Key"):
        c.engine.read_held_body(placed["w0"][0], "msg_0000000000000000", actor="privacy:test")
    again = c.engine.place_hold("lawful_order", **order)  # the operator asks again
    assert not again["replayed"]  # w1 placed it now
    assert again["notice"]["mails"] == 1  # one notice, to the one holder, for the whole order
    notices = _notices(c, "ORDER-7")
    assert len(notices) == len(placed["w0"]) * 2, notices  # w0's first holds and w1's new ones ...
    assert all(n["state"] != "placement_incomplete" and n["mails"] == 1
               for n in notices.values()), notices  # ... all under that notice
    after = _holds_by_worker(c, "ORDER-7")
    assert after is not None and after["w0"] == placed["w0"], after  # one hold per shard of w0 ...
    assert len(after["w1"]) == len(placed["w0"]), after  # ... and of w1
    replay = c.engine.place_hold("lawful_order", **order)
    assert replay["replayed"] and replay["notice"] == again["notice"]  # noticed once, not again
    assert sorted(h["hold_id"] for h in replay["holds"]) == sorted(after["w0"] + after["w1"])
    # one order: the holds w0 placed the first time and those w1 placed when asked again share its id
    assert len({h["order_id"] for h in replay["holds"]}) == 1, replay["holds"]
    assert _holds_by_worker(c, "ORDER-7") == after
