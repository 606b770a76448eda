"""Reconciliation at start-up (issue 14): after start-up recovery has billed and refunded what a crash
lost, the engine reconciles records and ledger in the background; a clean data directory reports no
difference, a tampered one has its differences logged (the account by its pseudonym), counted in
``/metrics`` and listed."""

from __future__ import annotations

import logging
import struct

import lmdb

from engine import Engine
from tests.engine.crash_support import delivering_carriers
from tests.waiting import wait_for

TOS = ("+4915112345678", "+6591234567", "+5511987654321")


def test_every_start_reconciles_and_a_tampered_balance_is_listed_and_logged(tmp_path, caplog):
    data = tmp_path / "data"
    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        acct = engine.create_account(email="startup@example.com")
        engine.register_sender(acct.id, "ACME")
        engine.deposit(acct.id, usd="5", chain="tron", tx_hash="0xstart", from_address="T")
        for to in TOS:
            engine.submit(acct.api_key, to, "ACME", "before the restart")
        clean = wait_for(lambda: engine.billing.last_reconciliation, "the start-up reconciliation")
        assert clean.ok  # (it ran against the empty directory of this first start)
        token = engine.runtime.pseudonyms.account(acct.id)
    finally:
        engine.stop()

    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        report = wait_for(lambda: engine.billing.last_reconciliation, "the start-up reconciliation")
        assert report.ok and report.counts["records"] == 3 and report.counts["ledger_items"] == 4
    finally:
        engine.stop()

    env = lmdb.open(str(data / "core"), max_dbs=64, subdir=True)
    with env.begin(write=True) as txn:  # someone adds 1 USD to the balance row by hand
        db = env.open_db(b"balances", txn=txn)
        row = bytearray(txn.get(token, db=db))
        row[:8] = struct.pack(">q", struct.unpack(">q", row[:8])[0] + 1_000_000)
        txn.put(token, bytes(row), db=db)
    env.close()

    caplog.set_level(logging.WARNING, logger="engine.billing.service")
    engine = Engine.start(data, overrides=delivering_carriers())
    try:
        report = wait_for(lambda: engine.billing.last_reconciliation, "the start-up reconciliation")
        [diff] = report.differences
        assert (diff.kind, diff.account, diff.found - diff.expected) == ("balance_mismatch", acct.id,
                                                                          1_000_000)
        assert engine.stats()["ledger"]["reconciliation_differences"] == 1
        assert engine.billing.verify().ok  # the chain covers entries, not balance rows
        logged = [r.getMessage() for r in caplog.records]
        pseudonym = engine.account_pseudonym(acct.id)
        assert any("balance_mismatch" in line and pseudonym in line for line in logged)
        assert any("1 differences" in line for line in logged)
        # a log line outlives an erasure: it names the account by its pseudonym, never by its id
        assert not [line for line in logged if acct.id in line]
        assert engine.billing.last_reconciliation.differences[0].account == acct.id  # (the listing)
    finally:
        engine.stop()
