"""An actor that dies is never silent: /readyz answers 503 naming it and /metrics shows it."""

from __future__ import annotations

import re

import pytest

from actors.group_commit import CommitterActor
from actors.ledger import LedgerActor
from actors.sweeper import SweeperActor
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


def _raise_out_of_a_handler(monkeypatch, actor_class, ref) -> None:
    """``ref``'s actor raises out of a handler and dies (pykka), as on a bug."""
    def crash(self, raw):
        raise RuntimeError("a bug")

    monkeypatch.setattr(actor_class, "on_receive", crash)
    ref.tell(b"anything")


def _end_the_clock_thread(engine) -> None:
    """The clock's thread raises (its time source, say) and ends: nothing is told any more."""
    clock = engine.runtime.clock

    def broken() -> float:
        raise RuntimeError("a bug")

    clock.now = broken
    with clock._cond:
        clock._cond.notify()  # (wakes it at once rather than at the next tick)


@pytest.mark.parametrize("part", ["clock", "committer", "sweeper"])
def test_a_dead_clock_committer_or_sweeper_makes_readyz_503_naming_it_and_shows_in_metrics(
        engine, monkeypatch, part):
    """Before, the clock (every tick, retry and sweep) and the group commit's committer were not among
    the long-lived parts: dead, /readyz said ready and no metric moved. The sweeper was listed; a dead
    one (not hung) is named here as it is on a worker's heartbeat (engine.cluster.heartbeat)."""
    control = Client(engine.http.control_port)
    token = engine.http.ctx.tokens.create("watch", {"viewer"})
    metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
    assert f'smsroute_actor_alive{{actor="{part}"}} 1.0' in metrics
    runtime = engine.runtime
    if part == "clock":
        _end_the_clock_thread(engine)
    elif part == "committer":
        _raise_out_of_a_handler(monkeypatch, CommitterActor, runtime._committer)
    else:
        _raise_out_of_a_handler(monkeypatch, SweeperActor, runtime.sweeper)
    wait_for(lambda: not runtime.actors_alive()[part], f"the {part} to die")

    status, _, body = control.request("GET", "/readyz")
    assert status == 503 and body["error"]["code"] == "actors_down"
    assert body["error"]["message"] == f"not running: {part}"
    metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
    assert f'smsroute_actor_alive{{actor="{part}"}} 0.0' in metrics
    assert re.search(r"^smsroute_dead_actors(\{[^}]*\})? 1.0$", metrics, re.M)
    assert engine.dead_actors() == [part]
    assert runtime.dead_parts() == [part]


def _end_the_mail_thread(engine) -> None:
    """The mail sender's loop stops under it (an error out of its loop): its thread ends."""
    worker = engine.mail.worker
    worker._loop.call_soon_threadsafe(worker._loop.stop)


def _end_a_webhook_worker(engine) -> None:
    """One of the webhook dispatcher's worker tasks ends (an error out of its loop)."""
    dispatcher = engine.http.ctx.dispatcher
    engine.http._loop.call_soon_threadsafe(dispatcher._workers[0].cancel)


@pytest.mark.parametrize("part", ["mail", "webhooks"])
def test_a_dead_mail_sender_or_webhook_worker_makes_readyz_503_naming_it_and_shows_in_metrics(
        engine, part):
    """Before, the mail sender's thread and the webhook dispatcher's workers were no long-lived part:
    ended, no mail or webhook went out again while /readyz said ready."""
    control = Client(engine.http.control_port)
    token = engine.http.ctx.tokens.create("watch", {"viewer"})
    metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
    assert f'smsroute_actor_alive{{actor="{part}"}} 1.0' in metrics
    (_end_the_mail_thread if part == "mail" else _end_a_webhook_worker)(engine)
    wait_for(lambda: not engine.parts_alive()[part], f"the {part} part to end")

    status, _, body = control.request("GET", "/readyz")
    assert status == 503 and body["error"]["message"] == f"not running: {part}"
    metrics = Client(engine.http.control_port, token).request("GET", "/metrics")[2].decode()
    assert f'smsroute_actor_alive{{actor="{part}"}} 0.0' in metrics
    assert re.search(r"^smsroute_dead_actors(\{[^}]*\})? 1.0$", metrics, re.M)
    assert engine.dead_actors() == [part]


def test_webhooks_whose_outbox_read_at_start_failed_make_readyz_503(tmp_path, monkeypatch):
    """The outboxes are read once at start, live events held until then: a read that ended on an
    error (not a cluster that is not reachable yet, which is retried) held them for ever, unseen."""
    def broken(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Engine, "pending_webhook_events", broken)
    engine = start_engine(tmp_path)
    try:
        control = Client(engine.http.control_port)
        wait_for(lambda: control.request("GET", "/readyz")[0] == 503, "/readyz 503")
        assert engine.dead_actors() == ["webhooks"]
    finally:
        engine.stop()


class _UnusableLink:
    """A worker's ``ledger``: the core's, a ref over a NATS link that is down."""

    remote = True

    def is_alive(self) -> bool:
        return False


def test_dead_parts_leave_out_what_runs_elsewhere_and_what_stops_on_purpose(engine):
    """What a worker's beat waits for (``Runtime.dead_parts``): not the core's ledger (a NATS outage
    must not look like every worker dead at once: ``nats`` says it), and nothing once the runtime
    stops (its parts stop one after the other; the worker still beats while it stops)."""
    runtime = engine.runtime
    assert runtime.dead_parts() == []
    assert {"clock", "committer", "sweeper", "ledger"} <= set(runtime.actors_alive())
    ledger, runtime.directory.ledger = runtime.directory.ledger, _UnusableLink()
    try:
        assert runtime.actors_alive()["ledger"] is False and runtime.dead_parts() == []
    finally:
        runtime.directory.ledger = ledger
    engine.stop()
    assert not any(runtime.actors_alive().values()) and runtime.dead_parts() == []


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
