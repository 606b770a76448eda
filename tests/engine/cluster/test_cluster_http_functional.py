"""The customer API of a cluster's core: a batch, the message list and durable webhooks reach the POP
shards on the workers (through engine.cluster.shards and the transport)."""

from __future__ import annotations

import json
import time

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.config import load_settings
from tests.engine.cluster.support import funded_accounts
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client, Receiver
from tests.waiting import wait_for


def test_batch_list_and_webhooks_work_across_two_workers(tmp_path):
    overrides = webhook_engine_overrides()
    cluster = LocalCluster(tmp_path, 2, overrides=overrides)
    engine = None
    receiver = Receiver()
    try:
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=cluster.core_placement(), http=True)
        cluster.start_workers()
        accounts = funded_accounts(engine, usd="100")  # one on each worker
        ids = {}
        for account in accounts:
            api = Client(engine.http.customer_port, account.api_key)
            assert api.request("PUT", "/v1/webhook", {"url": receiver.url})[0] == 200
            batch = [{"to": to, "from": "ACME", "body": "cluster", "client_ref": f"r{i}"}
                     for i, to in enumerate(["+4915112345678", "+6591234567", "+5511912345678"] * 2)]
            status, _, answer = api.request("POST", "/v1/messages/batch", {"messages": batch})
            assert status == 200 and answer["accepted"] == 6, answer
            ids[account.id] = {r["id"] for r in answer["results"]}
        wanted = {(mid, s) for group in ids.values() for mid in group for s in ("accepted", "delivered")}
        got: set = set()
        deadline = time.monotonic() + 60
        while not wanted <= got and time.monotonic() < deadline:
            _, body, _ = receiver.next(timeout=max(0.1, deadline - time.monotonic()))
            event = json.loads(body)
            got.add((event["data"]["id"], event["data"]["status"]))
        assert wanted <= got
        for account in accounts:  # the list, read from the workers' shards
            api = Client(engine.http.customer_port, account.api_key)
            wait_for(lambda a=api, k=account.id: {m["id"] for m in a.request(
                "GET", "/v1/messages?status=delivered")[2]["messages"]} == ids[k], timeout=20)
    finally:
        receiver.close()
        if engine is not None:
            engine.stop(drain_seconds=0)
        cluster.stop()
