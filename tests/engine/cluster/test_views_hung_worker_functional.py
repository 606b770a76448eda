"""A hung but connected worker holds neither ``GET /v1/retention`` nor ``GET /v1/carriers``, and a
carrier suspension is tried at every worker instead of failing on its name check.

Before, both views asked every worker with the 30 s query timeout and, with one worker stopped, answered
503 after 30 s: nothing of the workers that did answer. And ``POST /v1/carriers/{name}/suspend`` checked
the name by asking every worker for its carriers: a hung worker made it 503 before any worker was asked,
so the operator learnt nothing of where the carrier was suspended. Real nats-server, two worker
processes (w1 SIGSTOPped: connected, answering nothing), the core's real control port.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time

import pytest

from engine.cluster import cluster_shards as shards
from tests.engine.cluster.support import Cluster, stop_process
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.jsonschema_values import inline, mismatches
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

ANSWER_WITHIN_S = shards.STATS_TIMEOUT_S + 4  # the deadline, and room for a loaded test host
ACTION_TIMEOUT_S = 4.0  # the core's query timeout for this test (30 s by default): an action waits it


def _call(port: int, token: str, method: str, path: str, timeout: float = ANSWER_WITHIN_S + 2
          ) -> tuple[float, int, dict]:
    """``(seconds it took, status, body)``; gives up (fails) well before the old 30 s."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
    finally:
        conn.close()
    return time.monotonic() - started, resp.status, body


def _meets_published_schema(port: int, token: str, answer: dict) -> None:
    """The answer validates against what the core's document publishes for ``GET /v1/retention``
    (the cluster's fields included, with a worker missing or not)."""
    _, status, doc = _call(port, token, "GET", "/v1/openapi.json")
    assert status == 200
    schema = inline(doc["paths"]["/v1/retention"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"], doc["components"]["schemas"])
    assert {"workers", "workers_missing", "holds_missing"} <= set(schema.get("properties", {}))
    assert mismatches(schema, answer) == [], answer


def _suspended(rows: list[dict], carrier: str) -> dict[str, bool]:
    row = next(r for r in rows if r["carrier"] == carrier)
    return {w["worker"]: w["suspended"] for w in row["workers"]}


def test_views_keep_what_answered_and_a_suspension_says_where_it_was_done(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "QUERY_TIMEOUT_S", ACTION_TIMEOUT_S)
    c = Cluster(tmp_path, 2, overrides=webhook_engine_overrides(), http=True)
    try:
        port = c.engine.http.control_port
        token = (tmp_path / "core" / "operator.token").read_text().strip()
        _, status, before = _call(port, token, "GET", "/v1/carriers")
        assert status == 200 and not before.get("carriers_missing")
        carrier = before["carriers"][0]["carrier"]
        assert _suspended(before["carriers"], carrier) == {"w0": False, "w1": False}
        _, status, retention = _call(port, token, "GET", "/v1/retention")
        assert status == 200 and set(retention["workers"]) == {"w0", "w1"}
        assert not retention.get("workers_missing") and not retention.get("holds_missing")
        _meets_published_schema(port, token, retention)

        stopped = c.cluster.workers[1].proc
        assert stopped is not None
        stop_process(stopped.pid)  # connected (the kernel keeps its socket), answers nothing
        try:
            took, status, retention = _call(port, token, "GET", "/v1/retention")
            assert status == 200 and took < ANSWER_WITHIN_S
            assert set(retention["workers"]) == {"w0"}  # w0's sweeper kept
            assert list(retention["workers_missing"]) == ["w1"]
            assert list(retention["holds_missing"]) == ["w1"]
            assert isinstance(retention["holds"], list)
            _meets_published_schema(port, token, retention)

            took, status, view = _call(port, token, "GET", "/v1/carriers")
            assert status == 200 and took < ANSWER_WITHIN_S
            assert _suspended(view["carriers"], carrier) == {"w0": False}  # w0's rows kept
            assert list(view["carriers_missing"]) == ["w1"]

            _, status, refused = _call(port, token, "POST", f"/v1/carriers/{carrier}/suspend",
                                       timeout=ACTION_TIMEOUT_S + 10)
            assert status == 503, refused  # the action's partial outcome, as when a link is cut
            message = refused["error"]["message"]
            assert "done at w0" in message and "no answer from w1" in message, message
            _, status, _ = _call(port, token, "POST", "/v1/carriers/no-such-carrier/suspend")
            assert status == 404
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        wait_for(lambda: _call(port, token, "GET", "/v1/carriers")[2]["carriers_missing"] == {},
                 "w1 back on the carrier view", 20)
        rows = _call(port, token, "GET", "/v1/carriers")[2]["carriers"]
        assert _suspended(rows, carrier) == {"w0": True, "w1": False}  # what the 503 said
    finally:
        c.stop()
