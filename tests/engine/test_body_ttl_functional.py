"""An engine with a body TTL far shorter than an hour (issue 14): submits keep being accepted across
sweeps and key windows, and each window's key is shredded once its bodies are past the TTL."""

from __future__ import annotations

from engine import Engine
from tests.engine.crash_support import delivering_carriers
from tests.waiting import wait_for


def test_an_engine_with_a_few_seconds_body_ttl_keeps_accepting_submits_across_windows(tmp_path):
    overrides = delivering_carriers()
    overrides["engine"].update(body_ttl_seconds=4, sweep_interval_seconds=0.5, tick_ms=50)
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides)
    try:
        acc = engine.create_account(email="ttl@example.com")
        engine.register_sender(acc.id, "ACME")
        engine.deposit(acc.id, usd="100", chain="tron", tx_hash="0xttl", from_address="TWallet9")
        keys = engine.runtime.keys
        used = []
        for i in range(4):  # several windows (a second long each) and sweeps
            window = keys.current_window()
            accepted = engine.submit(acc.api_key, "+4915112345678", "ACME", f"Your code is {i:06d}")
            assert accepted.message_id  # before the fix: KeyUnavailable, the window in use was shredded
            used.append(window)
            engine.sweep_now()
            wait_for(lambda w=window: keys.current_window() > w, "the next key window", timeout=10)
        first = used[0]
        wait_for(lambda: keys.is_shredded(first), "the first window's key shredded", timeout=15)
        assert engine.submit(acc.api_key, "+4915112345678", "ACME", "still accepted").message_id
    finally:
        engine.stop()
