"""Delivery under real carrier behaviour (issue 9): the engine over SMPP to the simulated SMSC, with faults
scripted on single parts, dropped connections and an outage.

The SMSC records every part it receives, so each test checks the engine's statuses against what really
crossed the wire: no part of an abandoned attempt arrives after the abandonment, a permanent rejection
ends the message at once, and reconnects and outages delay messages but fail none. Tests wait on
conditions with a deadline; nothing sleeps and hopes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from bench.smsc import UNANSWERED, SmscConfig, SmscThread
from bench.smsc_faults import DROP
from engine import Engine
from engine.smpp import pdu as p
from engine.status import DELIVERED, FINAL, REJECTED
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

DE = "+4915112345678"
LONG = "part one of a message that is long enough to need two parts " * 3  # 2 GSM-7 segments
ENGINE = {"tick_ms": 20, "retry_base_ms": 5, "retry_cap_ms": 50, "resp_timeout_seconds": 2,
          "default_validity_seconds": 30, "expiry_grace_seconds": 1}
BIND = {"kind": "smpp", "pop": "fra", "system_id": "smsroute", "password": "secret", "binds": 1,
        "resp_timeout_seconds": 2.0, "reconnect_min_seconds": 0.05, "enquire_link_seconds": 30.0}


def topology(*carriers: tuple[str, int, dict], engine: dict | None = None) -> dict:
    """DE routed through SMPP carriers (name, SMSC port, options), tried in the order given."""
    return {
        "engine": {**ENGINE, **(engine or {})},
        "carriers": {name: {**BIND, "port": port, **opts} for name, port, opts in carriers},
        "routes": [{"match": ["DE"], "pop": "fra",
                    "carriers": [{"carrier": name, "priority": i + 1}
                                 for i, (name, _, _) in enumerate(carriers)]}],
    }


class Statuses:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.final: dict[str, list[str]] = {}

    def __call__(self, item) -> None:
        if item.status in FINAL:
            with self.lock:
                self.final.setdefault(item.message_id, []).append(item.status)

    def wait(self, ids, timeout: float = 30.0) -> None:
        wait_for(lambda: set(ids) <= self.final.keys(), "every message final", timeout)


def start(tmp_path, overrides: dict) -> tuple[Engine, Statuses, object]:
    statuses = Statuses()
    engine = Engine.start(tmp_path / "data", overrides=overrides, on_status=statuses)
    wait_for(lambda: all(c.get("connected_binds") for c in engine.carriers()), "binds up")
    acct = engine.create_account(email="faults@example.com")
    engine.register_sender(acct.id, "ACME")
    engine.deposit(acct.id, usd="1000", chain="tron", tx_hash="0xfaults", from_address="T")
    return engine, statuses, acct


def to_dest(part) -> str:
    return part.params["destination_addr"]


@pytest.mark.parametrize("script", [
    {1: [p.ESME_RTHROTTLED], 2: [p.ESME_RINVDSTADR]},
    {1: [p.ESME_RMSGQFUL], 2: [p.ESME_RINVDSTADR]},
    {1: [p.ESME_RSYSERR], 2: [p.ESME_RINVDSTADR]},
    {1: [p.ESME_RINVDSTADR], 2: [p.ESME_RTHROTTLED]},
    {1: [p.ESME_RINVMSGLEN], 2: [p.ESME_RSYSERR]},
    {1: [DROP], 2: [p.ESME_RINVDSTADR]},
], ids=["0x58+0x0B", "0x14+0x0B", "0x08+0x0B", "0x0B+0x58", "0x01+0x08", "drop+0x0B"])
def test_a_permanent_error_on_one_part_and_a_retryable_one_on_another_end_rejected_at_once(
        tmp_path, script):
    with SmscThread(SmscConfig(seed=1, part_script=script)) as smsc:
        engine, statuses, acct = start(tmp_path, topology(("a", smsc.port, {"window": 10})))
        try:
            accepted = engine.submit(acct.api_key, DE, "ACME", LONG)
            assert accepted.segments == 2
            statuses.wait([accepted.message_id])
            rec = engine.status(accepted.message_id)
            assert statuses.final[accepted.message_id] == [REJECTED]
            assert rec.status == REJECTED and rec.error in ("ESME_RINVDSTADR", "ESME_RINVMSGLEN")
            parts = [part for part in smsc.smsc.parts if to_dest(part) == DE[1:]]
            permanent = [i for i, part in enumerate(parts)
                         if part.status in (p.ESME_RINVDSTADR, p.ESME_RINVMSGLEN)]
            assert len(permanent) == 1
            # nothing after the attempt that met the rejection: at most its sibling part
            assert len(parts) - 1 - permanent[0] <= 1
            assert len(parts) <= 2 * rec.attempts and rec.attempts <= 2
            acked = any(part.status == p.ESME_ROK for part in parts)
            assert rec.refunded_micro_usd == (0 if acked else accepted.price_micro_usd)
        finally:
            engine.stop(drain_seconds=0)


def test_a_throttled_first_part_fails_over_and_its_queued_parts_never_reach_the_first_smsc(
        tmp_path):
    body = "x" * 600  # 4 GSM-7 parts
    with SmscThread(SmscConfig(seed=2, part_script={1: [p.ESME_RTHROTTLED]})) as first, \
            SmscThread(SmscConfig(seed=3)) as second:
        engine, statuses, acct = start(tmp_path, topology(
            ("a", first.port, {"window": 1}), ("b", second.port, {"window": 10})))
        try:
            accepted = engine.submit(acct.api_key, DE, "ACME", body)
            assert accepted.segments == 4
            statuses.wait([accepted.message_id])
            assert statuses.final[accepted.message_id] == [DELIVERED]
            assert engine.status(accepted.message_id).carrier == "b"
            assert [part.status for part in first.smsc.parts] == [p.ESME_RTHROTTLED]
            assert sorted(part.status for part in second.smsc.parts) == [p.ESME_ROK] * 4
            a = next(c for c in engine.carriers() if c["carrier"] == "a")
            assert a["outcomes"].get("withdrawn") == 3 and a["queued"] == 0  # taken back unsent
        finally:
            engine.stop(drain_seconds=0)


def test_a_connection_dropped_every_few_submits_delays_messages_but_fails_none(tmp_path):
    with SmscThread(SmscConfig(seed=4, latency=(0.0, 0.005), close_every_submits=7)) as smsc:
        engine, statuses, acct = start(tmp_path, topology(
            ("a", smsc.port, {"window": 4, "bind_wait_seconds": 5.0})))
        try:
            futures = [engine.submit_future(acct.api_key, f"+49151{i:08d}", "ACME", f"drop {i}")
                       for i in range(120)]
            ids = [f.result(30).message_id for f in futures]
            statuses.wait(ids, timeout=60)
            outcomes = Counter(s for i in ids for s in statuses.final[i])
            errors = [engine.status(i).error for i in ids if engine.status(i).status != DELIVERED]
            assert outcomes == {DELIVERED: len(ids)}, errors
            assert smsc.smsc.counters["closed_by_fault"] >= 10
            a = engine.carriers()[0]
            assert a["reconnects"] >= 10 and a["outcomes"].get("offline", 0) > 0
            assert all(part.status in (p.ESME_ROK, UNANSWERED) for part in smsc.smsc.parts)
        finally:
            engine.stop(drain_seconds=0)


def test_an_smsc_down_longer_than_the_retry_window_delivers_after_it_returns(tmp_path):
    retry_window = 1.0
    with SmscThread(SmscConfig(seed=5)) as smsc:
        engine, statuses, acct = start(tmp_path, topology(
            ("a", smsc.port, {"window": 50, "bind_wait_seconds": 0.5}),
            engine={"retry_window_seconds": retry_window}))
        try:
            smsc.call(setattr, smsc.smsc.config, "answer", False)  # in flight when it goes down
            futures = [engine.submit_future(acct.api_key, f"+49151{i:08d}", "ACME", f"outage {i}")
                       for i in range(30)]
            ids = [f.result(30).message_id for f in futures]
            wait_for(lambda: smsc.smsc.counters["unanswered"] == 30, "every message on the wire")
            smsc.go_down()
            down_at = time.monotonic()

            def fra():
                return next(s for s in engine.stats()["pops"] if s["pop"] == "fra")

            # every message waits for the carrier, well past the retry window
            wait_for(lambda: fra()["parked"] == 30 and time.monotonic() - down_at > 2 * retry_window,
                     "the messages to wait out the outage", 20)
            assert not statuses.final  # nothing failed while the SMSC was away
            smsc.call(setattr, smsc.smsc.config, "answer", True)
            smsc.come_back()
            back_at = time.monotonic()
            wait_for(lambda: engine.carriers()[0]["connected_binds"], "the bind to come back", 10)
            assert time.monotonic() - back_at < 1.5  # reconnect backoff bounded at about 1 s
            statuses.wait(ids)
            assert Counter(s for i in ids for s in statuses.final[i]) == {DELIVERED: len(ids)}
            assert smsc.smsc.counters["outages"] == 1
        finally:
            engine.stop(drain_seconds=0)
