"""A hung but connected worker does not hold the customer's ``DELETE /v1/debug-window``: the windows of
the workers that answered are ended within the 2 s view deadline, and the answer says it is partial
(without naming the worker: worker names are the operator's); the same request again, once the worker
is back, ends the rest.

Before, the core listed every worker's holds and released each window by asking every worker, all with
the 30 s query timeout: with one worker stopped the customer waited that long and got 503, and no
window was ended. Real nats-server, two worker processes (w1 SIGSTOPped: connected, answering
nothing), the core's real customer port; the answer is checked against the published schema. The
query timeout is cut to 10 s (30 s by default) so the old behaviour fails this test quickly too.
"""

from __future__ import annotations

import os
import signal

import pytest

from engine.cluster import cluster_shards as shards
from tests.engine.cluster.support import Cluster, stop_process
from tests.engine.cluster.test_views_hung_worker_functional import ANSWER_WITHIN_S, _call
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.engine.http.jsonschema_values import inline, mismatches

pytestmark = pytest.mark.functional


def _windows(engine, account_id: str) -> dict[str, list[str]]:
    """The account's open debugging windows by worker (asked of every worker: none may be hung)."""
    out: dict[str, list[str]] = {}
    for h in engine.active_holds():
        if h["kind"] == "debug_window" and h["account_id"] == account_id:
            out.setdefault(h["pop"].split("/")[0], []).append(h["hold_id"])
    return out


def test_closing_a_window_ends_what_answered_says_it_is_partial_and_the_retry_ends_the_rest(
        tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "QUERY_TIMEOUT_S", 10.0)
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        port = c.engine.http.customer_port
        account = c.accounts(1)[0]
        status, _, opened = Client(port, account.api_key).request("POST", "/v1/debug-window",
                                                                  {"hours": 1})
        assert status == 201, opened
        before = _windows(c.engine, account.id)
        assert set(before) == {"w0", "w1"}  # one window per POP shard of each worker
        _, status, doc = _call(port, "", "GET", "/v1/openapi.json")
        schema = inline(doc["paths"]["/v1/debug-window"]["delete"]["responses"]["200"]["content"][
            "application/json"]["schema"], doc["components"]["schemas"])

        stopped = c.cluster.workers[1].proc
        assert stopped is not None
        stop_process(stopped.pid)  # connected (the kernel keeps its socket), answers nothing
        try:
            took, status, partial = _call(port, account.api_key, "DELETE", "/v1/debug-window")
            assert status == 200 and took < ANSWER_WITHIN_S, (status, took, partial)
            assert partial == {"closed": len(before["w0"]), "partial": True}
            assert mismatches(schema, partial) == [], partial
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        assert _windows(c.engine, account.id) == {"w1": before["w1"]}  # w0's ended, w1's still open

        _, status, rest = _call(port, account.api_key, "DELETE", "/v1/debug-window")
        assert status == 200 and rest == {"closed": len(before["w1"]), "partial": False}
        assert mismatches(schema, rest) == [], rest
        assert _windows(c.engine, account.id) == {}
    finally:
        c.stop()
