"""A hung but connected worker holds neither ``GET /v1/holds`` nor ``GET /v1/audit``, and the answer
says which worker's holds and audit entries it lacks; the embedding API's ``Engine.carriers()`` names it
at once.

Before, both asked every worker with the 30 s query timeout and, with one worker stopped, answered 503
after 30 s: the auditor saw nothing of the workers that did answer. An audit page that silently lacked
a worker's entries would mislead, so the partial answer names the missing worker. Real nats-server, two
worker processes (w1 SIGSTOPped: connected, answering nothing), the core's real control port. The
query timeout is cut to 10 s (30 s by default) so the old behaviour fails this test quickly too.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from engine.cluster import cluster_shards as shards
from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import Cluster, stop_process
from tests.engine.cluster.test_views_hung_worker_functional import ANSWER_WITHIN_S, _call
from tests.engine.crash_support import webhook_engine_overrides

pytestmark = pytest.mark.functional

AUDIT = "/v1/audit?kind=retention_exception&limit=1000"


def _workers(holds: list[dict]) -> set[str]:
    return {h["pop"].split("/")[0] for h in holds}


def test_holds_and_audit_keep_what_answered_and_name_the_stopped_worker(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "QUERY_TIMEOUT_S", 10.0)
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        port = c.engine.http.control_port
        token = (tmp_path / "core" / "operator.token").read_text().strip()
        account = c.accounts(1)[0]
        c.engine.place_hold("debug_window", actor="support:test", reason="debugging",
                            reference="T-13", until=time.time() + 3600, account_id=account.id)
        _, status, before = _call(port, token, "GET", "/v1/holds")
        assert status == 200 and before["holds_missing"] == {}
        assert _workers(before["holds"]) == {"w0", "w1"}  # one hold per POP shard of each worker
        worker_of = {h["hold_id"]: h["pop"].split("/")[0] for h in before["holds"]}
        _, status, trail = _call(port, token, "GET", AUDIT)
        assert status == 200 and trail["workers_missing"] == {}
        assert {worker_of[e["target"]] for e in trail["entries"] if e["target"] in worker_of} == {
            "w0", "w1"}

        stopped = c.cluster.workers[1].proc
        assert stopped is not None
        stop_process(stopped.pid)  # connected (the kernel keeps its socket), answers nothing
        try:
            took, status, view = _call(port, token, "GET", "/v1/holds")
            assert status == 200 and took < ANSWER_WITHIN_S, (status, took, view)
            assert list(view["holds_missing"]) == ["w1"]
            assert view["holds"] == [h for h in before["holds"] if worker_of[h["hold_id"]] == "w0"]

            took, status, partial = _call(port, token, "GET", AUDIT)
            assert status == 200 and took < ANSWER_WITHIN_S, (status, took, partial)
            assert list(partial["workers_missing"]) == ["w1"]  # the page says it lacks w1's entries
            assert partial["entries"] == [e for e in trail["entries"]
                                          if worker_of.get(e["target"]) == "w0"]

            started = time.monotonic()
            with pytest.raises(ClusterUnavailable, match=r"carrier rows missing: w1 \("):
                c.engine.carriers()  # a list cannot be partial: an error naming w1, at once
            assert time.monotonic() - started < ANSWER_WITHIN_S
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
    finally:
        c.stop()
