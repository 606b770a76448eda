"""A delivery receipt that arrives after an engine restart still reaches its message (SMPP)."""

from __future__ import annotations

import threading

from bench.smsc import SmscConfig, SmscThread
from engine import Engine
from engine.smpp import smsc_carrier_settings
from tests.waiting import wait_for

DE = "+4915112345678"


def _one_carrier(port: int) -> dict:
    """One POP, one SMPP carrier: every receipt the SMSC holds goes back to that carrier's bind."""
    carrier = smsc_carrier_settings("127.0.0.1", port, reconnect_min_seconds=0.05,
                                    reconnect_max_seconds=0.2)
    return {"pops": {"fra": {"city": "Frankfurt"}},
            "carriers": {"fra-smsc": {"pop": "fra", "kind": "smpp", **carrier}},
            "routes": [{"match": ["DE"], "pop": "fra", "carriers": [{"carrier": "fra-smsc"}]}],
            "rates": {"default": 50000},
            "engine": {"default_validity_seconds": 120, "tick_ms": 50}}



def test_receipts_that_arrive_after_a_restart_are_matched_not_left_to_expire(tmp_path):
    data = tmp_path / "data"
    # receipts come 1.5-2 s after the resp: the engine is restarted in between
    config = SmscConfig(seed=11, receipt_delay=(1.5, 2.0), receipt_states={"DELIVRD": 1.0})
    with SmscThread(config) as smsc:
        acked: set[str] = set()
        lock = threading.Lock()

        def on_ack(message_id: str, _at: float) -> None:
            with lock:
                acked.add(message_id)

        first = Engine.start(data_dir=data, overrides=_one_carrier(smsc.port))
        first.on_carrier_ack(on_ack)
        acc = first.create_account(email="restart@example.com")
        first.register_sender(acc.id, "ACME")
        first.deposit(acc.id, usd="100", chain="tron", tx_hash="0x1", from_address="T")
        ids = {first.submit(acc.api_key, DE, "ACME", f"restart {i}" + " long" * (i % 2) * 40)
               .message_id for i in range(20)}
        wait_for(lambda: ids <= acked, "every message acknowledged by the SMSC", timeout=30.0)
        assert all(first.status(mid).status == "accepted" for mid in ids)  # no receipt yet
        first.stop(drain_seconds=0)

        finals: dict[str, str] = {}

        def on_status(item) -> None:
            if item.status != "accepted":
                with lock:
                    finals[item.message_id] = item.status

        second = Engine.start(data_dir=data, overrides=_one_carrier(smsc.port),
                              on_status=on_status)
        try:
            wait_for(lambda: ids <= set(finals), "every receipt matched after the restart",
                     timeout=30.0)
            assert {finals[mid] for mid in ids} == {"delivered"}
            assert all(second.status(mid).status == "delivered" for mid in ids)
        finally:
            second.stop()
