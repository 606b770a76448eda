"""A part of the engine on a thread of its own that stops working is not silent: a retention sweeper
stuck in a store's sweep, or an SMPP carrier's event loop stuck in a callback, makes ``/readyz`` 503
naming it (``sweeper (hung)``, ``carrier:<name> (hung)``) and ``smsroute_actor_hung`` 1, and readiness
comes back once it works again. Before, ``/readyz`` said ready while no body was erased or no message
went to that carrier."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bench.smsc import SmscConfig, SmscThread
from engine import Engine
from engine.smpp import smsc_carrier_settings
from engine.smpp.client import SmppConnector
from storage.holds import Holds
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, overrides, wait_for


def _ready(control: Client) -> bool:
    return control.request("GET", "/readyz")[0] == 200


def _not_ready_naming(control: Client, part: str) -> str | None:
    status, headers, body = control.request("GET", "/readyz")
    if status == 503 and part in body["error"]["message"]:
        assert body["error"]["code"] == "actors_down" and headers["Retry-After"] == "1"
        return body["error"]["message"]
    return None


class _Gate:
    """Makes a patched call block, once armed, until released (a lock never freed, a call that never
    returns); ``entered`` is set once it blocks."""

    def __init__(self) -> None:
        self.armed = False
        self.entered, self.release = threading.Event(), threading.Event()

    def wrap(self, call):
        def blocking(*args: Any, **kwargs: Any):
            if self.armed:
                self.entered.set()
                self.release.wait(15)
            return call(*args, **kwargs)
        return blocking


@pytest.fixture
def gate():
    gate = _Gate()
    yield gate
    gate.release.set()  # never leave an engine thread blocked behind a failed test


def test_a_sweeper_stuck_in_a_store_sweep_makes_readyz_503_naming_it_until_it_is_released(
        tmp_path, monkeypatch, gate):
    monkeypatch.setattr(Holds, "sweep", gate.wrap(Holds.sweep))
    config = overrides()
    config["engine"] = {"sweep_stall_seconds": 0.5}  # (the interval stays 60 s: no sweep due meanwhile)
    engine = Engine.start(tmp_path / "data", http=True, overrides=config)
    try:
        control = Client(engine.http.control_port)
        wait_for(lambda: _ready(control), "ready")
        gate.armed = True
        engine.runtime.sweeper.proxy().sweep_now()  # (its answer comes once released)
        assert gate.entered.wait(10)
        message = wait_for(lambda: _not_ready_naming(control, "sweeper (hung)"), "503 naming the sweeper")
        assert "ledger" not in message and "carrier" not in message  # only what is hung
        assert "sweeper (hung)" in engine.dead_actors()
        gate.release.set()
        wait_for(lambda: _ready(control), "ready again once the sweep goes on")
        assert engine.runtime.hung_parts() == {}
    finally:
        gate.release.set()
        engine.stop(drain_seconds=0)


def test_an_smpp_carrier_whose_loop_is_stuck_makes_readyz_503_naming_it_and_shows_in_metrics(
        tmp_path, monkeypatch, gate):
    monkeypatch.setattr(SmppConnector, "submit", gate.wrap(SmppConnector.submit))
    with SmscThread(SmscConfig(seed=5)) as smsc:
        carrier = smsc_carrier_settings("127.0.0.1", smsc.port, reconnect_min_seconds=0.05,
                                        reconnect_max_seconds=0.2)
        config = {**overrides(), "engine": {"child_hung_after_seconds": 0.5},
                  "pops": {"fra": {"city": "Frankfurt"}},
                  "carriers": {"fra-smsc": {"pop": "fra", "kind": "smpp", **carrier}},
                  "routes": [{"match": ["DE"], "pop": "fra", "carriers": [{"carrier": "fra-smsc"}]}]}
        engine = Engine.start(tmp_path / "data", http=True, overrides=config)
        try:
            control = Client(engine.http.control_port)
            token = engine.http.ctx.tokens.create("watch", {"viewer"})
            account = funded_account(engine, "stuck-loop@example.com")
            wait_for(lambda: engine.carrier_view()["carriers"][0]["available"], "the bind")
            wait_for(lambda: _ready(control), "ready")
            gate.armed = True  # the loop's next submit blocks it: no traffic to or from the SMSC
            accepted = engine.submit(account.api_key, DE_NUMBER, "ACME", "stuck behind its loop")
            assert gate.entered.wait(10)
            wait_for(lambda: _not_ready_naming(control, "carrier:fra-smsc (hung)"),
                     "503 naming the carrier")
            metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
            assert 'smsroute_actor_hung{actor="carrier:fra-smsc"} 1.0' in metrics
            assert 'smsroute_actor_hung{actor="sweeper"} 0.0' in metrics
            gate.armed = False
            gate.release.set()
            wait_for(lambda: _ready(control), "ready again once the loop turns")
            wait_for(lambda: engine.status(accepted.message_id).status == "delivered", "delivery")
            metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
            assert 'smsroute_actor_hung{actor="carrier:fra-smsc"} 0.0' in metrics
        finally:
            gate.release.set()
            engine.stop(drain_seconds=0)
