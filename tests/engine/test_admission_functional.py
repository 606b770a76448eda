"""Admission (issue 9): offered more than the carriers can take, the engine refuses at the door - and every
message it did accept is delivered, none fails after acceptance."""

from __future__ import annotations

import threading
import time
from collections import Counter

from engine import Engine
from engine.errors import OverloadedError
from tests.waiting import wait_for

DE = "+4915112345678"
CAPACITY = 100  # messages per second the one carrier takes


def one_slow_carrier(horizon: float) -> dict:
    carrier = {"pop": "fra", "kind": "simulated", "window": 50, "throughput": CAPACITY,
               "latency": {"distribution": "fixed", "ms": 2},
               "receipt_delay": {"distribution": "fixed", "ms": 5},
               "outcomes": {"delivered": 1.0}, "late_receipt_rate": 0.0,
               "duplicate_receipt_rate": 0.0}
    return {
        "engine": {"admission_horizon_seconds": horizon, "default_validity_seconds": 10,
                   "tick_ms": 50},
        "carriers": {"slow": carrier},
        "routes": [{"match": ["DE"], "pop": "fra", "carriers": [{"carrier": "slow"}]}],
    }


def test_three_times_the_carriers_capacity_is_refused_at_the_door_and_nothing_accepted_fails(
        tmp_path):
    finals: dict[str, str] = {}
    lock = threading.Lock()

    def on_status(item):
        if item.status != "accepted":
            with lock:
                finals[item.message_id] = item.status

    engine = Engine.start(tmp_path / "data", overrides=one_slow_carrier(horizon=2.0),
                          on_status=on_status)
    try:
        acct = engine.create_account(email="burst@example.com")
        engine.register_sender(acct.id, "ACME")
        engine.deposit(acct.id, usd="1000", chain="tron", tx_hash="0xburst", from_address="T")
        offered, rate, seconds = [], 3 * CAPACITY, 3.0
        start = time.perf_counter()
        for i in range(int(rate * seconds)):  # an open loop at 3x what the carrier takes
            while time.perf_counter() < start + i / rate:
                time.sleep(0.0005)
            try:
                offered.append(engine.submit_future(acct.api_key, DE, "ACME", f"burst {i}"))
            except OverloadedError as exc:
                offered.append(exc)
        outcomes = [o.exception(30) if not isinstance(o, Exception) else o for o in offered]
        refused = [e for e in outcomes if e is not None]
        accepted = [o.result().message_id for o, e in zip(offered, outcomes, strict=True)
                    if e is None]
        assert refused and all(isinstance(e, OverloadedError) for e in refused)
        assert {e.code for e in refused} == {"carriers_saturated"}
        # about what the carrier takes in the run plus the horizon, far from all that was offered
        assert 1.5 * CAPACITY * seconds < len(accepted) < 0.9 * len(offered)
        wait_for(lambda: set(accepted) <= finals.keys(), "every accepted message final", 30)
        assert Counter(finals[m] for m in accepted) == {"delivered": len(accepted)}
    finally:
        engine.stop(drain_seconds=0)
