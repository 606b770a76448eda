"""A POP's memory follows what is in flight, not what it has ever carried."""

from __future__ import annotations

import threading
import time

from engine import Engine
from tests.engine.crash_support import delivering_carriers


def test_timer_entries_of_finished_messages_are_dropped_even_with_a_long_validity(tmp_path):
    finals = set()
    lock = threading.Lock()

    def on_status(item):
        if item.status != "accepted":
            with lock:
                finals.add(item.message_id)

    overrides = delivering_carriers()
    overrides["engine"].update(default_validity_seconds=3600, tick_ms=20)
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides, on_status=on_status)
    try:
        acc = engine.create_account(email="mem@example.com")
        engine.register_sender(acc.id, "MEM")
        engine.deposit(acc.id, usd="10000", chain="t", tx_hash="0x1", from_address="a")
        futs = [engine.submit_future(acc.api_key, "+4915112345678", "MEM", f"m{i}")
                for i in range(3000)]
        ids = {f.result(30).message_id for f in futs}

        def fra():
            return next(p for p in engine.stats()["pops"] if p["pop"] == "fra")

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                done = ids <= finals
            if done and fra()["in_flight"] == 0 and fra()["timers"] == 0:
                break
            time.sleep(0.05)
        stats = fra()
        assert stats["in_flight"] == 0
        assert stats["timers"] == 0  # 3000 deadline entries an hour away were compacted away
    finally:
        engine.stop()
