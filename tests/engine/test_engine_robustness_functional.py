"""Ordinary accidents must not stop an actor: cancelled callers, bad text, stopped peers, corrupt data."""

from __future__ import annotations

import asyncio
import threading

import lmdb
import pytest

from engine import Engine
from engine.errors import InputError
from engine.ids import id_bytes
from tests.engine.crash_support import delivering_carriers, silent_carriers
from tests.waiting import wait_for

DE = "+4915112345678"


def _customer(engine):
    acc = engine.create_account(email="robust@example.com")
    engine.register_sender(acc.id, "ACME")
    engine.deposit(acc.id, usd="1000", chain="tron", tx_hash="0x1", from_address="T")
    return acc



def test_a_caller_that_cancels_its_submit_does_not_stop_the_pop(tmp_path):
    engine = Engine.start(data_dir=tmp_path / "data", overrides=delivering_carriers())
    try:
        acc = _customer(engine)

        async def cancel_one():
            task = asyncio.ensure_future(engine.submit_async(acc.api_key, DE, "ACME", "hi"))
            await asyncio.sleep(0)  # the submit is in the engine; its future is pending
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_one())
        assert engine.submit(acc.api_key, DE, "ACME", "next", timeout=10).pop == "fra"
        assert engine.runtime.directory.pops["fra"].is_alive()
        wait_for(lambda: engine.gate.in_flight == 0, "every slot back", timeout=20.0)
    finally:
        engine.stop()


def test_text_that_is_not_valid_unicode_is_refused_and_gives_its_slot_back(tmp_path):
    engine = Engine.start(data_dir=tmp_path / "data", overrides=delivering_carriers())
    try:
        acc = _customer(engine)
        with pytest.raises(InputError):
            engine.submit(acc.api_key, DE, "ACME", "lone surrogate \ud800")
        assert engine.gate.in_flight == 0 and engine.bridge.pending_requests() == 0
        huge = engine.submit(acc.api_key, DE, "ACME", "ok", validity_seconds=10**30)
        assert engine.status(huge.message_id).validity_seconds == 86400
    finally:
        engine.stop()


def test_a_pop_survives_its_carriers_stopping_first_and_keeps_the_message_for_the_next_start(tmp_path):
    engine = Engine.start(data_dir=tmp_path / "data", overrides=silent_carriers())
    try:
        acc = _customer(engine)
        for name in ("fra-telekom", "fra-vodafone"):
            engine.runtime._carrier_actors[name].stop()
        accepted = engine.submit(acc.api_key, DE, "ACME", "carrier gone", timeout=10)
        assert engine.runtime.directory.pops["fra"].is_alive()
        assert engine.status(accepted.message_id).status == "accepted"
    finally:
        engine.stop(drain_seconds=0)


def test_a_corrupt_body_found_at_restart_fails_that_message_only(tmp_path):
    data = tmp_path / "data"
    finals: dict[str, str] = {}
    lock = threading.Lock()

    def on_status(item):
        if item.status != "accepted":
            with lock:
                finals[item.message_id] = item.status

    first = Engine.start(data_dir=data, overrides=silent_carriers())  # nothing is ever answered
    acc = _customer(first)
    broken = first.submit(acc.api_key, DE, "ACME", "will be corrupted").message_id
    intact = first.submit(acc.api_key, DE, "ACME", "stays intact").message_id
    first.stop(drain_seconds=0)

    env = lmdb.open(str(data / "pops" / "_shared"), max_dbs=128)  # the POPs share one environment
    with env.begin(write=True) as txn:
        db = env.open_db(b"fra/bodies", txn=txn)
        value = bytearray(txn.get(id_bytes(broken), db=db))
        value[-1] ^= 1  # one flipped bit in the ciphertext's tag
        txn.put(id_bytes(broken), bytes(value), db=db)
    env.close()

    second = Engine.start(data_dir=data, overrides=delivering_carriers(), on_status=on_status)
    try:
        assert second.runtime.directory.pops["fra"].is_alive()
        wait_for(lambda: {broken, intact} <= set(finals), "both messages final", timeout=20.0)
        assert finals[broken] == "failed" and "unreadable" in second.status(broken).error
        assert finals[intact] == "delivered"
        fra = next(p for p in second.stats()["pops"] if p["pop"] == "fra")
        assert fra["store_failures"] >= 1  # the operator-visible alarm
    finally:
        second.stop()


def test_a_sender_registered_while_the_session_starts_is_not_lost(tmp_path, monkeypatch):
    engine = Engine.start(data_dir=tmp_path / "data", overrides=delivering_carriers())
    try:
        acc = engine.create_account(email="race@example.com")
        engine.deposit(acc.id, usd="10", chain="tron", tx_hash="0x1", from_address="T")
        accounts = engine.runtime.accounts
        original = accounts.get
        read_done, registered = threading.Event(), threading.Event()

        def get_then_wait(account_id):  # the first submit reads the account, then stalls
            record = original(account_id)
            if threading.current_thread().name == "first-submit":
                read_done.set()
                registered.wait(10)
            return record

        monkeypatch.setattr(accounts, "get", get_then_wait)
        outcome: list = []

        def first_submit():
            try:
                engine.submit(acc.api_key, DE, "ACME", "first", timeout=10)
                outcome.append("accepted")
            except Exception as exc:  # UnknownSender is fine: it raced the registration
                outcome.append(type(exc).__name__)

        thread = threading.Thread(target=first_submit, name="first-submit")
        thread.start()
        assert read_done.wait(10)
        engine.register_sender(acc.id, "ACME")  # lands while the session is being started
        registered.set()
        thread.join(10)
        assert outcome and outcome[0] in ("accepted", "UnknownSender")
        assert engine.submit(acc.api_key, DE, "ACME", "later", timeout=10).pop == "fra"
    finally:
        engine.stop()


def test_a_burst_beyond_the_carriers_throughput_is_slowed_down_not_failed(tmp_path):
    overrides = delivering_carriers()
    for name in ("fra-telekom", "fra-vodafone"):
        overrides["carriers"][name]["throughput"] = 300  # msg/s: the burst is ~2.5 s of capacity
    overrides["engine"].update(retry_window_seconds=60, default_validity_seconds=120, max_attempts=4)
    finals: dict[str, str] = {}
    lock = threading.Lock()

    def on_status(item):
        if item.status != "accepted":
            with lock:
                finals[item.message_id] = item.error or item.status

    engine = Engine.start(data_dir=tmp_path / "data", overrides=overrides, on_status=on_status)
    try:
        acc = _customer(engine)
        futs = [engine.submit_future(acc.api_key, DE, "ACME", f"burst {i}") for i in range(1500)]
        ids = {f.result(30).message_id for f in futs}
        wait_for(lambda: ids <= set(finals), "every message final", timeout=60)
        failed = [e for mid, e in finals.items() if engine.status(mid).status != "delivered"]
        assert failed == []
        fra = next(p for p in engine.stats()["pops"] if p["pop"] == "fra")
        assert fra["retries"] > 0  # the carriers did throttle
    finally:
        engine.stop()
