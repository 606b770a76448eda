"""A full store refuses new messages with a clear error and an alarm, and loses nothing already accepted."""

from __future__ import annotations

import pytest

from engine import Engine
from engine.errors import StoreFull
from tests.engine.crash_support import silent_carriers

LONG_BODY = "€" * 700  # 10 GSM-7 segments of escape pairs: a big record


@pytest.fixture
def tiny_engine(tmp_path):
    overrides = silent_carriers()
    overrides["engine"]["map_size_mb"] = 1  # each POP's LMDB map fills after ~200 such messages
    # an environment per POP (not one shared by the process's POPs, whose map they fill together)
    overrides["engine"]["shared_pop_store"] = False
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides)
    yield engine
    engine.stop(drain_seconds=0)


def test_a_full_store_refuses_with_store_full_raises_an_alarm_and_keeps_what_it_accepted(tiny_engine):
    engine = tiny_engine
    acc = engine.create_account(email="full@example.com")
    engine.register_sender(acc.id, "FULL")
    engine.deposit(acc.id, usd="100000", chain="t", tx_hash="0x1", from_address="a")
    accepted = []
    with pytest.raises(StoreFull):
        for _ in range(5000):
            accepted.append(engine.submit(acc.api_key, "+4915112345678", "FULL", LONG_BODY))
    assert accepted, "the store took no message at all"
    fra = next(p for p in engine.stats()["pops"] if p["pop"] == "fra")
    assert fra["store_failures"] >= 1  # the operator-visible alarm

    # everything acknowledged is still there and still open; the refused one was not billed
    assert all(engine.status(a.message_id).status == "accepted" for a in accepted)
    spent = sum(a.price_micro_usd for a in accepted)
    assert engine.balance(acc.id) == 100_000 * 1_000_000 - spent

    # another POP's store is unaffected
    other = engine.submit(acc.api_key, "+6591234567", "FULL", "still works")
    assert other.pop == "sin"
