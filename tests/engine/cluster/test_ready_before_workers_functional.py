"""A cluster's core is not ready before its workers are.

``smsroute run --workers N`` opened the HTTP ports (``Engine.start``) and only then told the engine which
workers it supervises: in between ``/readyz`` answered 200 with no worker running. A client that sent on
that 200 (a benchmark, a load balancer) had every submit published to a worker not yet subscribed - lost -
and answered 503 ``cluster_unavailable`` 10-20 s later. The engine now knows its workers before a port
opens, so ``/readyz`` names them until each is ready, and the first submits after the 200 are accepted.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.config import load_settings
from tests.engine.cluster.support import funded_accounts
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client

pytestmark = pytest.mark.functional


def test_readyz_names_the_workers_until_they_are_ready_then_the_first_submits_are_accepted(tmp_path):
    overrides = webhook_engine_overrides()  # (HTTP on free loopback ports)
    cluster = LocalCluster(tmp_path, 1, overrides=overrides)
    engine = None
    try:
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=cluster.core_placement(), http=True, cluster=cluster)
        ops = Client(engine.http.control_port)
        status, _, body = ops.request("GET", "/readyz")  # the ports are open, the worker not started
        assert (status, body["error"]["code"]) == (503, "actors_down"), body
        assert "worker:w0" in body["error"]["message"]

        cluster.start_workers()
        status, _, body = ops.request("GET", "/readyz")
        assert status == 200, body
        account = funded_accounts(engine)[0]
        api = Client(engine.http.customer_port, account.api_key)

        def send(i: int) -> int:
            return api.request("POST", "/v1/messages",
                               {"to": "+4915112345678", "from": "ACME", "body": f"first {i}"})[0]

        with ThreadPoolExecutor(8) as pool:  # the account's first submits, at once: a new session
            assert list(pool.map(send, range(8))) == [202] * 8
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        cluster.stop()
