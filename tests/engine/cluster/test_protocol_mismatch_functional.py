"""A worker of another cluster protocol (another smsroute version) is handed no work, and the core says
so - real worker processes, a real nats-server, the customer and control ports' real sockets.

Worker w1 speaks another protocol: it is started through the test-only entry point
``tests/engine/cluster/other_protocol.py`` (``LocalCluster.child_command`` monkeypatched in this
process), which sets the protocol in that child only. Before, nothing compared versions: the core
handed w1 its accounts' submits and its queries as to any worker, and what had changed between the
versions failed one request at a time (a hold placement with arguments the older side did not know).
Now ``/readyz`` answers 503 naming ``worker:w1 (protocol 2, core 1)``, a submit for an account of w1 is
refused at once (503 ``cluster_unavailable``, nothing sent or billed), w1 is asked nothing, and the
accounts of w0 are served as before - for a core supervising its workers (``--workers N``: from w1's ready
line) and for a ``--role core`` (from w1's announcements on NATS).
"""

from __future__ import annotations

import time

import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.protocol import PROTOCOL
from engine.config import load_settings
from tests.door import LAG_NEVER_SHEDS
from tests.engine.cluster.other_protocol import speaking
from tests.engine.cluster.support import Cluster, funded_accounts
from tests.engine.crash_support import delivering_carriers
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

OTHER = PROTOCOL + 1
NAMED = f"worker:w1 (protocol {OTHER}, core {PROTOCOL})"
FAST_S = 3.0  # a refusal comes well within this (a submit sent to a worker unanswered: 10-20 s)
MESSAGE = {"to": "+4915112345678", "from": "ACME", "body": "hi"}


def _overrides() -> dict:
    overrides = delivering_carriers()
    overrides["http"] = {"customer_port": 0, "control_port": 0, **LAG_NEVER_SHEDS}
    return overrides


def _readyz(ops: Client) -> tuple[int, str]:
    status, _, body = ops.request("GET", "/readyz")
    return status, "" if status == 200 else body["error"]["message"]


def _check_w1_refused_w0_served(engine: Engine) -> None:
    ops = Client(engine.http.control_port)
    accounts = funded_accounts(engine, 2)
    on = {engine.runtime.placement.worker_of(a.id): a for a in accounts}
    wait_for(lambda: NAMED in _readyz(ops)[1], f"/readyz naming {NAMED}", 5)
    status, message = _readyz(ops)
    assert status == 503 and "worker:w0" not in message, message

    api = Client(engine.http.customer_port, on["w1"].api_key)
    before = api.request("GET", "/v1/balance")[2]["balance_micro_usd"]
    for path, body in (("/v1/messages", MESSAGE), ("/v1/messages/batch", {"messages": [MESSAGE] * 2})):
        started = time.monotonic()
        status, headers, answer = api.request("POST", path, body)
        assert time.monotonic() - started < FAST_S
        assert (status, answer["error"]["code"]) == (503, "cluster_unavailable"), answer
        assert f"not ready (protocol {OTHER}, core {PROTOCOL}); nothing was sent" in \
            answer["error"]["message"]
        assert headers.get("Retry-After") == "1"
    assert api.request("GET", "/v1/balance")[2]["balance_micro_usd"] == before  # nothing billed

    token = (engine.data_dir / "operator.token").read_text().strip()
    status, _, holds = ops.request("GET", "/v1/holds", token=token)  # w1 is not asked
    assert status == 200 and holds["holds_missing"] == {"w1": f"protocol {OTHER}, core {PROTOCOL}: "
                                                              "not asked"}, holds
    rows = {r["node"]: r for r in ops.request("GET", "/v1/stats", token=token)[2]["workers"]}
    assert (rows["w1"]["protocol"], rows["w1"]["ready"]) == (OTHER, False)
    assert (rows["w0"]["protocol"], rows["w0"]["protocol_mismatch"]) == (PROTOCOL, None)

    served = Client(engine.http.customer_port, on["w0"].api_key)
    status, _, sent = served.request("POST", "/v1/messages", MESSAGE)
    assert status == 202, sent


def test_a_supervising_core_hands_a_worker_of_another_protocol_no_work(tmp_path, monkeypatch):
    monkeypatch.setattr(LocalCluster, "child_command", speaking({"w1": OTHER}))
    c = Cluster(tmp_path, workers=2, overrides=_overrides(), http=True)
    try:
        _check_w1_refused_w0_served(c.engine)
    finally:
        c.stop()


def test_a_role_core_hands_a_worker_of_another_protocol_no_work(tmp_path, monkeypatch):
    """``--role core``: the workers are not its children; it knows w1's protocol from w1's
    announcements on NATS."""
    monkeypatch.setattr(LocalCluster, "child_command", speaking({"w1": OTHER}))
    overrides = _overrides()
    workers = LocalCluster(tmp_path / "cluster", 2, overrides=overrides)  # "other hosts'" supervisor
    engine = None
    try:
        placement = workers.core_placement()  # (starts the nats-server)
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=placement, http=True)
        workers.start_workers()
        _check_w1_refused_w0_served(engine)
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        workers.stop()
