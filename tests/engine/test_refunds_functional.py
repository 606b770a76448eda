"""Refunds: a message no carrier ever acknowledged ends ``failed`` with its reason and is credited back
exactly once - also when the process dies between the failure and the refund (issue 9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from engine import Engine
from engine.delivery.attempt import NO_CARRIER_AVAILABLE
from storage.ledger import DEBIT, REFUND
from tests.engine.crash_support import refund_overrides
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DE = "+4915112345678"
DEPOSIT = 10_000_000


def suspended_fra() -> dict:
    """Carriers that deliver at once, and messages valid for 1 s (the fra ones get suspended)."""
    return refund_overrides()


def customer(engine: Engine):
    acct = engine.create_account(email="refund@example.com")
    engine.register_sender(acct.id, "ACME")
    engine.deposit(acct.id, usd="10", chain="tron", tx_hash="0xrefund", from_address="T")
    return acct


def ledger(engine: Engine, account_id: str, kind: str) -> list:
    return [e for e in engine.runtime.ledger_store.entries(account_id) if e.kind == kind]


def test_a_message_with_every_carrier_suspended_fails_and_is_refunded_once(tmp_path):
    finals: dict[str, str] = {}
    lock = threading.Lock()

    def on_status(item):
        if item.status != "accepted":
            with lock:
                finals[item.message_id] = item.status

    engine = Engine.start(tmp_path / "data", overrides=suspended_fra(), on_status=on_status)
    try:
        acct = customer(engine)
        for name in ("fra-telekom", "fra-vodafone"):
            engine.suspend_carrier(name, True)
        wait_for(lambda: set(next(p for p in engine.stats()["pops"] if p["pop"] == "fra")
                             ["unavailable"]) == {"fra-telekom", "fra-vodafone"}, "both suspended")
        accepted = engine.submit(acct.api_key, DE, "ACME", "nobody will take this")
        assert engine.balance(acct.id) == DEPOSIT - accepted.price_micro_usd  # charged at first
        wait_for(lambda: accepted.message_id in finals, "the message to end", 20)

        rec = engine.status(accepted.message_id)
        assert (rec.status, rec.error, rec.attempts) == ("failed", NO_CARRIER_AVAILABLE, 0)
        assert rec.refunded_micro_usd == accepted.price_micro_usd
        assert engine.balance(acct.id) == DEPOSIT  # the balance is restored
        assert [e.reference for e in ledger(engine, acct.id, DEBIT)] == [accepted.message_id]
        refunds = ledger(engine, acct.id, REFUND)
        assert [(e.reference, e.amount_micro_usd) for e in refunds] == [
            (accepted.message_id, accepted.price_micro_usd)]
        # what was refunded can be spent again, and a delivered message stays charged
        for name in ("fra-telekom", "fra-vodafone"):
            engine.suspend_carrier(name, False)
        wait_for(lambda: not next(p for p in engine.stats()["pops"] if p["pop"] == "fra")
                 ["unavailable"], "both resumed")
        again = engine.submit(acct.api_key, DE, "ACME", "this one goes")
        wait_for(lambda: finals.get(again.message_id) == "delivered", "delivery", 20)
        assert engine.status(again.message_id).refunded_micro_usd == 0
        assert engine.balance(acct.id) == DEPOSIT - again.price_micro_usd
    finally:
        engine.stop(drain_seconds=0)


def test_a_refund_still_owed_at_start_is_not_credited_a_second_time(tmp_path):
    data = tmp_path / "data"
    engine = Engine.start(data, overrides=suspended_fra())
    acct = customer(engine)
    for name in ("fra-telekom", "fra-vodafone"):
        engine.suspend_carrier(name, True)
    accepted = engine.submit(acct.api_key, DE, "ACME", "refunded, then a crash")
    wait_for(lambda: ledger(engine, acct.id, REFUND), "the refund", 20)
    engine.stop(drain_seconds=0)
    # as if the process died after the ledger wrote the refund, before the POP forgot it owed it
    assert _add_owed(data, accepted.message_id) == [accepted.message_id]
    engine = Engine.start(data, overrides=suspended_fra())
    try:
        # the POP sends what it owes again when it starts; the ledger answers, the POP forgets it
        wait_for(lambda: engine.runtime.pop_stores["fra"].refunds.all() == [], "the owed refund", 20)
        assert len(ledger(engine, acct.id, REFUND)) == 1  # sent again, written once
        assert engine.balance(acct.id) == DEPOSIT
    finally:
        engine.stop(drain_seconds=0)


def _add_owed(data: Path, message_id: str) -> list[str]:
    from storage.env import open_env
    from storage.refunds import OwedRefunds

    env = open_env(data / "pops" / "fra", map_size=64 << 20)
    try:
        owed = OwedRefunds(env)
        with env.begin(write=True) as txn:
            owed.add(txn, [message_id])
        return owed.all()
    finally:
        env.close()


def test_messages_failed_before_a_kill_9_that_lost_their_refund_are_refunded_once_at_restart(
        tmp_path):
    data, out = tmp_path / "data", tmp_path / "failed.txt"
    proc = subprocess.Popen([sys.executable, "-m", "tests.engine.refund_crash_child", str(data),
                             str(out)], cwd=ROOT, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: out.exists() and out.read_text().endswith("ready\n")
                 or proc.poll() is not None, "the child to fail its messages", 60)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.read_text().split()
    account_id, failed = lines[0], lines[1:-1]
    assert len(failed) == 3

    for restart in range(2):  # the second start finds nothing left to do
        engine = Engine.start(data, overrides=suspended_fra())
        try:
            # each POP sends what it still owes when it starts; once all have forgotten it, it is in
            # (one message per POP: waiting for fra alone raced the other two under load)
            stores = engine.runtime.pop_stores.values()
            wait_for(lambda stores=stores: all(s.refunds.all() == [] for s in stores), "owed refunds",
                     20)
            refunds = ledger(engine, account_id, REFUND)
            assert sorted(e.reference for e in refunds) == sorted(failed), f"restart {restart}"
            assert engine.balance(account_id) == DEPOSIT
            assert all(engine.status(mid).refunded_micro_usd > 0 for mid in failed)
        finally:
            engine.stop(drain_seconds=0)


def test_a_refund_is_written_after_the_debit_it_cancels(tmp_path):
    engine = Engine.start(tmp_path / "data", overrides=suspended_fra())
    try:
        acct = customer(engine)
        for name in ("fra-telekom", "fra-vodafone"):
            engine.suspend_carrier(name, True)
        accepted = engine.submit(acct.api_key, DE, "ACME", "order matters")
        wait_for(lambda: ledger(engine, acct.id, REFUND), "the refund", 20)
        kinds = [e.kind for e in engine.runtime.ledger_store.entries(acct.id)
                 if e.reference == accepted.message_id]
        assert kinds == [DEBIT, REFUND]
    finally:
        engine.stop(drain_seconds=0)
