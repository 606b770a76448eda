"""An actor that dies is never silent: /readyz answers 503 naming it and /metrics shows it."""

from __future__ import annotations

import re

import pytest

from actors.ledger import LedgerActor
from bench.smsc import SmscConfig, SmscThread
from engine import Engine
from engine.smpp import smsc_carrier_settings
from tests.engine.http.conftest import (
    DE_NUMBER,
    Client,
    funded_account,
    overrides,
    start_engine,
    wait_for,
)


@pytest.fixture
def engine(tmp_path):
    engine = start_engine(tmp_path)
    yield engine
    engine.stop()


def test_a_crashed_actor_makes_readyz_503_and_shows_in_metrics(engine, monkeypatch):
    control = Client(engine.http.control_port)
    token = engine.http.ctx.tokens.create("watch", {"viewer"})
    assert control.request("GET", "/readyz")[0] == 200
    metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
    assert 'smsroute_actor_alive{actor="ledger"} 1.0' in metrics
    assert re.search(r"^smsroute_dead_actors(\{[^}]*\})? 0.0$", metrics, re.M)

    def crash(self, raw):
        raise RuntimeError("a bug in the ledger")

    monkeypatch.setattr(LedgerActor, "on_receive", crash)
    engine.runtime.directory.ledger.tell(b"anything")  # the actor raises out of its handler and dies
    wait_for(lambda: not engine.runtime.directory.ledger.is_alive(), "the ledger to die")

    status, _, body = control.request("GET", "/readyz")
    assert status == 503 and body["error"]["code"] == "actors_down" and "ledger" in body["error"][
        "message"]
    assert control.request("GET", "/healthz")[0] == 200  # alive, but not ready
    metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
    assert 'smsroute_actor_alive{actor="ledger"} 0.0' in metrics
    assert re.search(r"^smsroute_dead_actors(\{[^}]*\})? 1.0$", metrics, re.M)
    assert engine.dead_actors() == ["ledger"]


def test_a_carrier_that_is_down_does_not_make_readyz_503_messages_are_stored_and_sent_later(tmp_path):
    """The readiness contract (README): an unreachable SMSC is no reason to take the instance out of the
    load balancer's pool - messages are accepted, stored and sent once the carrier is back."""
    with SmscThread(SmscConfig(seed=3)) as smsc:
        carrier = smsc_carrier_settings("127.0.0.1", smsc.port, reconnect_min_seconds=0.05,
                                        reconnect_max_seconds=0.2)
        config = {**overrides(), "pops": {"fra": {"city": "Frankfurt"}},
                  "carriers": {"fra-smsc": {"pop": "fra", "kind": "smpp", **carrier}},
                  "routes": [{"match": ["DE"], "pop": "fra", "carriers": [{"carrier": "fra-smsc"}]}]}
        engine = Engine.start(tmp_path / "data", http=True, overrides=config)
        try:
            control = Client(engine.http.control_port)
            account = funded_account(engine, "carrier-down@example.com")
            smsc.go_down()
            wait_for(lambda: not engine.carrier_view()["carriers"][0]["available"], "the link to drop")
            assert control.request("GET", "/readyz")[0] == 200
            accepted = engine.submit(account.api_key, DE_NUMBER, "ACME", "waits for its carrier")
            assert engine.status(accepted.message_id).status == "accepted"
            smsc.come_back()
            wait_for(lambda: engine.status(accepted.message_id).status == "delivered", "delivery")
        finally:
            engine.stop(drain_seconds=0)
