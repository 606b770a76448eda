"""Once a worker is judged hung, the core stops asking it: questions answer at once and the query
threads stay free for everything else, until the worker answers again (or is killed and restarted).

Before, between the hung verdict (10 s of heartbeat silence) and the kill (30 s), every question to the
hung worker still waited out its time-out - 30 s for a message status, an export, an erasure - on one of
the core's 4 HTTP engine threads: a handful of customers reading statuses stalled every other request
(even one that asks no worker) for 30 s at a time. Real nats-server, two worker processes (w1
SIGSTOPped: connected, answering nothing, its heartbeat silent), the core's real customer and control
ports, the default 30 s query time-out; the test's hung deadline is 1 s (the kill 120 s, out of reach).
"""

from __future__ import annotations

import http.client
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import Cluster, stop_process
from tests.engine.cluster.test_views_hung_worker_functional import _call
from tests.engine.crash_support import webhook_engine_overrides
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

HUNG_AFTER_S, KILL_AFTER_S = 1.0, 120.0
AT_ONCE_S = 4.0  # generous on a loaded host; the old answer took the 30 s query time-out
MANY = 24  # concurrent status reads: six times the core's HTTP engine threads


def _overrides() -> dict:
    out = webhook_engine_overrides()
    out["engine"] = {**out["engine"], "child_hung_after_seconds": HUNG_AFTER_S,
                     "child_kill_after_seconds": KILL_AFTER_S}
    return out


def _sent(c: Cluster, account) -> str:
    """A message of ``account``, once its worker has its record."""
    accepted = c.engine.submit(account.api_key, "+4915112345678", "ACME", "hi")
    wait_for(lambda: c.engine.status(accepted.message_id) is not None, "the message's record")
    return accepted.message_id


def test_a_worker_judged_hung_is_not_asked_and_holds_no_thread(tmp_path):
    c = Cluster(tmp_path, 2, overrides=_overrides(), http=True)
    try:
        customer, control = c.engine.http.customer_port, c.engine.http.control_port
        ops = (tmp_path / "core" / "operator.token").read_text().strip()
        accounts = c.accounts(2)
        on = {c.engine.runtime.placement.worker_of(a.id): a for a in accounts}
        mine, theirs = on["w0"], on["w1"]  # a customer of the healthy worker, one of the hung one
        mine_id, theirs_id = _sent(c, mine), _sent(c, theirs)

        stopped = c.cluster.workers[1].proc
        assert stopped is not None

        def read_theirs(_: int) -> tuple[float, int, dict]:
            return _call(customer, theirs.api_key, "GET", f"/v1/messages/{theirs_id}",
                         timeout=HUNG_AFTER_S + AT_ONCE_S + 2)

        stop_process(stopped.pid)  # connected (the kernel keeps its socket), answers nothing
        try:
            stopped_at = time.monotonic()
            with ThreadPoolExecutor(MANY) as pool:  # asked before the verdict: they wait for w1
                answers = list(pool.map(read_theirs, range(MANY)))
            assert _hung(c, "w1")
            # given up on at the verdict (reads), not after the 30 s time-out; the rest not asked
            assert time.monotonic() - stopped_at < HUNG_AFTER_S + AT_ONCE_S
            with ThreadPoolExecutor(MANY) as pool:  # asked after the verdict: w1 is not asked
                answers += list(pool.map(read_theirs, range(MANY)))
            for took, status, body in answers:  # its worker may hold it: refused, not "no such message"
                assert status == 503 and took < HUNG_AFTER_S + AT_ONCE_S, (took, status, body)
                assert body["error"]["code"] == "cluster_unavailable"
            assert max(took for took, _, _ in answers[MANY:]) < AT_ONCE_S

            # the threads are free: a request that asks no worker, and a message of the healthy one
            took, status, _ = _call(customer, mine.api_key, "GET", "/v1/keys", timeout=AT_ONCE_S + 2)
            assert status == 200 and took < AT_ONCE_S, took
            took, status, record = _call(customer, mine.api_key, "GET", f"/v1/messages/{mine_id}",
                                         timeout=AT_ONCE_S + 2)
            assert status == 200 and took < AT_ONCE_S and record["id"] == mine_id, (took, record)

            # operator: a view names w1 at once; a question only w1 can answer is 503 at once
            took, status, holds = _call(control, ops, "GET", "/v1/holds", timeout=AT_ONCE_S + 2)
            assert status == 200 and took < AT_ONCE_S, took
            assert holds["holds_missing"] == {"w1": "hung: not asked"}
            started = time.monotonic()
            status, headers, body = _raw(control, ops, "GET", f"/v1/accounts/{theirs.id}/export")
            assert status == 503 and time.monotonic() - started < AT_ONCE_S, body
            assert headers.get("Retry-After") and b"w1 is hung" in body

            # an erasure that cannot reach w1 is refused, never reported done: the account is there
            took, status, refused = _call(control, ops, "POST", f"/v1/accounts/{theirs.id}/erase",
                                          timeout=AT_ONCE_S + 2)
            assert status == 503 and took < AT_ONCE_S, (took, refused)
            assert "not asked w1 (hung)" in refused["error"]["message"], refused
            with pytest.raises(ClusterUnavailable, match="not asked: worker w1 is hung"):
                c.engine.place_hold("legal_hold", actor="legal:test", reason="litigation",
                                    reference="L-1", until=time.time() + 3600,
                                    message_ids=[theirs_id])  # (w1 may hold the message)
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        wait_for(lambda: not _hung(c, "w1"), "w1 answering again", 15)
        assert c.engine.status(theirs_id) is not None  # not erased by the refused erasure
        _, status, erased = _call(control, ops, "POST", f"/v1/accounts/{theirs.id}/erase", timeout=60)
        assert status == 200 and erased["message_records_deleted"] >= 1, erased  # asked again: done
        assert c.engine.status(theirs_id) is None
    finally:
        c.stop()


def _hung(c: Cluster, node: str) -> bool:
    """What ``/v1/stats`` and ``/readyz`` say of ``node``: hung (its heartbeat is late)."""
    return next(w for w in c.cluster.status() if w["node"] == node)["hung"]


def _raw(port: int, token: str, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of one request (``_call`` does not give the headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=AT_ONCE_S + 2)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()
