"""An actor that dies is never silent: /readyz answers 503 naming it and /metrics shows it."""

from __future__ import annotations

import re

import pytest

from actors.ledger import LedgerActor
from tests.engine.http.conftest import Client, start_engine, wait_for


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
