"""A POP message store full for new messages keeps a reserve (``storage.headroom``): new messages are refused
``store_full`` before the map's last page, so an account's erasure and the retention sweep still commit on
it and free room, and submits are taken again after them. (LMDB copies every page it changes, so in a map
used to its last page even a delete is refused.)"""

from __future__ import annotations

import time

import pytest

from actors.sweeper import SweeperActor
from engine import Engine
from engine.errors import StoreFull
from tests.engine.crash_support import silent_carriers

LONG_BODY = "€" * 700  # 10 GSM-7 segments of escape pairs: a big record and body
FRA = "+4915112345678"


@pytest.fixture
def tiny_engine(tmp_path):
    overrides = silent_carriers()  # every accepted message stays open, its body stored
    overrides["engine"]["map_size_mb"] = 1  # per POP; the three POPs share one environment: 3 MiB
    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides)
    yield engine
    engine.stop(drain_seconds=0)


def _account(engine, name: str):
    acc = engine.create_account(email=f"{name}@example.com")
    engine.register_sender(acc.id, "FULL")
    engine.deposit(acc.id, usd="100000", chain="t", tx_hash=f"0x{name}", from_address="a")
    engine.set_webhook(acc.id, f"https://hooks.example.com/{name}")  # each status change: an event stored
    return acc


def _fill(engine, *accounts) -> list:
    """Submit for ``accounts`` in turn until the store refuses; the messages accepted (per account)."""
    accepted: list[list] = [[] for _ in accounts]
    with pytest.raises(StoreFull) as refused:
        for i in range(20_000):
            accepted[i % len(accounts)].append(
                engine.submit(accounts[i % len(accounts)].api_key, FRA, "FULL", LONG_BODY))
    assert refused.value.code == "store_full"
    assert all(accepted), "the store took no message at all"
    return accepted


def test_a_full_pop_store_still_erases_and_sweeps_and_takes_messages_again_after(tiny_engine):
    engine = tiny_engine
    alice, bob = _account(engine, "alice"), _account(engine, "bob")
    sent_alice, sent_bob = _fill(engine, alice, bob)
    with pytest.raises(StoreFull):  # the other POPs of the process share the environment, and its map
        engine.submit(bob.api_key, "+6591234567", "FULL", "short")

    # the erasure of one account commits on the full store (in batches its reserve holds)
    erased = engine.erase_account(alice.id)
    assert erased["message_records_deleted"] == len(sent_alice)
    assert engine.status(sent_alice[0].message_id) is None
    assert engine.status(sent_bob[0].message_id).status == "accepted"  # the other account's kept
    assert engine.submit(bob.api_key, FRA, "FULL", "room again").pop == "fra"

    # full again; the retention sweep (a day later: the undelivered webhook events are past their retry
    # window) commits too, and makes room
    more = _fill(engine, bob)[0]
    store = engine.runtime.pop_stores["fra"]
    assert store.webhooks.count > len(more)
    sweeper = SweeperActor.start({}, clock=lambda: time.time() + 2 * 86400, sweepables={
        "records:fra": store.records, "webhook_outbox:fra": store.webhooks})
    try:
        result = sweeper.proxy().sweep_now().get(timeout=30)
    finally:
        sweeper.stop()
    assert result["totals"]["failures"] == 0, result["failures"]
    assert result["last"]["webhook_outbox:fra"]["removed"] > len(more)
    again = engine.submit(bob.api_key, FRA, "FULL", LONG_BODY)
    assert engine.status(again.message_id).status == "accepted"
    assert engine.status(more[-1].message_id).status == "accepted"  # the messages themselves are kept
