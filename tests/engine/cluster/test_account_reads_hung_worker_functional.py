"""A hung worker affects only the accounts it holds, and the customer API does not name it.

Before, a customer's listing (``GET /v1/messages``), usage export (``GET /v1/usage``) and a status read
of an id no other worker held asked every worker: while one was hung every customer's listing answered
503, naming the hung worker (``account_pages not asked: worker w1 is hung``) - a process name that is
the operator's, not the customer's -, and a usage export of the hung worker's account answered 200 and
then broke off. Now an account's reads ask only the workers that may hold its
messages (its own, the worker count never having changed); what does need the hung worker answers 503
``cluster_unavailable`` with ``Retry-After`` and a message that names no process, while the control
port still names it. Real nats-server, two worker processes (w1 SIGSTOPped: connected, answering
nothing, its heartbeat silent), the core's real customer and control ports.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal

import pytest

from engine.errors import ClusterUnavailable
from tests.engine.cluster.support import Cluster, stop_process
from tests.engine.cluster.test_queries_hung_worker_functional import _hung, _overrides, _sent
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

AT_ONCE_S = 4.0
NODE_NAME = re.compile(rb"\b[we]\d+\b")  # w1, e0: the cluster's process names


def _get(port: int, token: str, path: str, method: str = "GET", body: dict | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=AT_ONCE_S + 2)
    try:
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_a_hung_worker_fails_only_its_own_accounts_reads_without_being_named_to_them(tmp_path):
    c = Cluster(tmp_path, 2, overrides=_overrides(), http=True)
    try:
        customer, control = c.engine.http.customer_port, c.engine.http.control_port
        ops = (tmp_path / "core" / "operator.token").read_text().strip()
        on = {c.engine.runtime.placement.worker_of(a.id): a for a in c.accounts(2)}
        mine, theirs = on["w0"], on["w1"]
        mine_id, theirs_id = _sent(c, mine), _sent(c, theirs)
        absent = theirs_id[:-1] + ("0" if theirs_id[-1] != "0" else "1")  # an id no worker holds

        stopped = c.cluster.workers[1].proc
        assert stopped is not None
        stop_process(stopped.pid)
        try:
            wait_for(lambda: _hung(c, "w1"), "w1 judged hung", 10)

            # the healthy worker's customer: listing, usage export, status reads all answer
            status, _, body = _get(customer, mine.api_key, "/v1/messages")
            assert status == 200, body
            assert [m["id"] for m in json.loads(body)["messages"]] == [mine_id]
            status, _, body = _get(customer, mine.api_key, "/v1/usage")
            assert status == 200, body
            assert [r["id"] for r in json.loads(body)["rows"] if r["type"] == "message"] == [mine_id]
            status, _, body = _get(customer, mine.api_key, f"/v1/messages/{absent}")
            assert status == 404, body  # not found where it could be, not 503 for w1's silence

            # the hung worker's customer: 503, retry later, and no process named
            for path in ("/v1/messages", "/v1/usage", "/v1/usage?format=csv",
                         f"/v1/messages/{theirs_id}"):
                status, headers, body = _get(customer, theirs.api_key, path)
                assert status == 503 and headers.get("Retry-After"), (path, status, body)
                error = json.loads(body)["error"]
                assert error["code"] == "cluster_unavailable", (path, body)
                assert error["message"] == ClusterUnavailable.PUBLIC_MESSAGE, (path, body)
                assert not NODE_NAME.search(body), (path, body)
            # an action on every worker (a debugging window is kept at each): 503 unnamed, too
            status, _, body = _get(customer, mine.api_key, "/v1/debug-window", "POST", {"hours": 1})
            assert status == 503 and b"cluster_unavailable" in body, body
            assert not NODE_NAME.search(body), body

            # the operator is told which worker (control port, embedding API)
            status, _, body = _get(control, ops, f"/v1/accounts/{theirs.id}/export")
            assert status == 503 and b"w1 is hung" in body, body
            with pytest.raises(ClusterUnavailable, match="w1 is hung"):
                c.engine.messages(theirs.id)
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
        wait_for(lambda: not _hung(c, "w1"), "w1 answering again", 15)
        status, _, body = _get(customer, theirs.api_key, "/v1/messages")
        assert status == 200 and [m["id"] for m in json.loads(body)["messages"]] == [theirs_id]
    finally:
        c.stop()
