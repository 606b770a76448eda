"""A cluster joined to an existing NATS (``--nats URL``) whose one server goes away mid-run and comes back:
what the control port and the customer API answer meanwhile, and what is sent and billed after."""

from __future__ import annotations

import time

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.nats_server import NatsServer
from engine.cluster.placement import core_placement
from engine.config import load_settings
from storage.ledger import DEBIT
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

NUMBER = "+4915112345678"


def test_while_the_nats_server_is_gone_readyz_and_submits_answer_503_at_once_and_nothing_refused_is_sent(
        tmp_path):
    """Before: a submit while the link was down sat in the client's reconnect buffer, answered 503
    ``cluster_unavailable`` only after 10-20 s - and was then sent and billed when the server came back,
    so a client that retried with its Idempotency-Key (as the answer told it to) was billed twice, and
    /readyz's 503 had no Retry-After. Now both answer 503 with Retry-After at once, nothing refused is
    sent, and traffic resumes with every acknowledged message delivered and billed once."""
    server = NatsServer().start()
    overrides = webhook_engine_overrides()
    cluster = LocalCluster(tmp_path, 2, overrides=overrides, nats=[server.url])
    engine = None
    try:
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=core_placement(2, [server.url]), http=True)
        cluster.start_workers()
        account = engine.create_account(email="n@example.com")
        engine.register_sender(account.id, "ACME")
        engine.deposit(account.id, usd="100", chain="test", tx_hash="0xn", from_address="a")
        api = Client(engine.http.customer_port, account.api_key)
        control = Client(engine.http.control_port,
                         (tmp_path / "core" / "operator.token").read_text().strip())
        sms = {"to": NUMBER, "from": "ACME", "body": "hello"}
        acknowledged = []
        status, _, body = api.request("POST", "/v1/messages", sms)
        assert status == 202
        acknowledged.append(body["id"])
        assert control.request("GET", "/readyz")[0] == 200

        server.kill()
        wait_for(lambda: control.request("GET", "/readyz")[0] == 503, "readyz 503 without NATS", 10)
        status, headers, body = control.request("GET", "/readyz")
        assert status == 503 and body["error"]["code"] == "actors_down"
        assert "nats" in body["error"]["message"] and int(headers["Retry-After"]) >= 1
        for i in range(3):
            began = time.monotonic()
            status, headers, body = api.request("POST", "/v1/messages", sms,
                                                headers={"Idempotency-Key": f"k{i}"})
            assert time.monotonic() - began < 3, "a submit waited on a NATS server that is gone"
            assert status == 503 and body["error"]["code"] == "cluster_unavailable"
            assert int(headers["Retry-After"]) >= 1

        server = NatsServer(server.port).start()  # the same URL comes back
        wait_for(lambda: control.request("GET", "/readyz")[0] == 200, "readyz 200 again", 30)
        for i in range(3):  # the retries the 503s asked for, and new traffic
            status, _, body = wait_for(
                lambda i=i: (r := api.request("POST", "/v1/messages", sms,
                                              headers={"Idempotency-Key": f"k{i}"}))[0] == 202 and r,
                "the retried submit accepted", 15)
            acknowledged.append(body["id"])
        for _ in range(3):
            status, _, body = api.request("POST", "/v1/messages", sms)
            assert status == 202
            acknowledged.append(body["id"])

        def finals() -> bool:
            return all((r := engine.status(mid)) is not None and r.status == "delivered"
                       for mid in acknowledged)

        wait_for(finals, "every acknowledged message delivered", 30)
        records = engine.runtime.shards.records_for_account(account.id)
        assert sorted(r.message_id for r in records) == sorted(acknowledged)  # no refused one was sent

        def billed_once() -> bool:
            debits = [e.reference for e in engine.runtime.ledger_store.entries(account.id)
                      if e.kind == DEBIT]
            return sorted(debits) == sorted(acknowledged)

        wait_for(billed_once, "each acknowledged message billed exactly once", 30)
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        cluster.stop()
        server.stop()
