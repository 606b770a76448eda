"""``GET /v1/carriers`` on a cluster's control port answers as one process does: one row per carrier.

Before, a cluster answered one row per carrier *per worker* (with a ``worker`` field), so a dashboard or
script written against one process counted every carrier N times and read one worker's counters as the
carrier's. Now each row is the carrier's across the workers (counters summed, ``suspended`` only when
every worker has it suspended, ``connected``/``available`` when any has), the per-worker rows nested in
``workers``. A real nats-server, two worker processes and the core's real control port on loopback.
"""

from __future__ import annotations

import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.config import load_settings
from tests.engine.cluster.support import funded_accounts
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

NUMBER = "+4915112345678"  # Germany: the fra carriers


def _control(engine: Engine, data_dir) -> Client:
    return Client(engine.http.control_port, (data_dir / "operator.token").read_text().strip())


def _carriers(control: Client) -> list[dict]:
    status, _, body = control.request("GET", "/v1/carriers")
    assert status == 200, body
    return body["carriers"]


def test_a_clusters_carrier_list_has_one_row_per_carrier_like_one_process(tmp_path):
    overrides = webhook_engine_overrides()
    one = Engine.start(data_dir=tmp_path / "one", settings=load_settings(None, overrides), http=True)
    try:
        single = {c["carrier"]: c for c in _carriers(_control(one, tmp_path / "one"))}
    finally:
        one.stop(drain_seconds=0)
    cluster = LocalCluster(tmp_path / "cluster", 2, overrides=overrides)
    engine = None
    try:
        engine = Engine.start(data_dir=tmp_path / "cluster" / "core",
                              settings=load_settings(None, overrides),
                              placement=cluster.core_placement(), http=True)
        cluster.start_workers()
        control = _control(engine, tmp_path / "cluster" / "core")
        accounts = funded_accounts(engine, usd="100")  # one on each worker
        for account in accounts:
            for _ in range(3):
                assert Client(engine.http.customer_port, account.api_key).request(
                    "POST", "/v1/messages", {"to": NUMBER, "from": "ACME", "body": "hi"})[0] == 202

        def all_submitted() -> list[dict] | None:
            rows = _carriers(control)
            return rows if sum(r.get("submitted", 0) for r in rows) >= 6 else None

        rows = wait_for(all_submitted, "six submits counted", 30)
        assert sorted(r["carrier"] for r in rows) == sorted(single)  # once each, not once per worker
        for row in rows:
            assert set(row) - {"workers"} == set(single[row["carrier"]]), row["carrier"]
            assert row["pop"] == single[row["carrier"]]["pop"]
            assert sorted(w["worker"] for w in row["workers"]) == ["w0", "w1"]
            for key in ("submitted", "window", "window_in_use"):
                assert row[key] == sum(w[key] for w in row["workers"]), key
            assert (row["suspended"], row["connected"], row["available"]) == (False, True, True)
        assert sum(r["submitted"] for r in rows) == 6

        name = rows[0]["carrier"]
        assert control.request("POST", f"/v1/carriers/{name}/suspend")[0] == 200
        row = next(r for r in _carriers(control) if r["carrier"] == name)
        assert (row["suspended"], row["available"]) == (True, False)
        assert all(w["suspended"] for w in row["workers"])
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        cluster.stop()
