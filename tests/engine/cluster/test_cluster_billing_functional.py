"""Billing in a cluster (issue 14 on top of the cluster): the core's ledger with the workers' records.
An operator's debit reaches the account's session on its worker (starting it if it never ran) and never
overdraws; usage exports carry the workers' record columns and add up to the balance; reconciliation reads
every worker's records and finds nothing amiss; the chain verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InsufficientBalance
from storage.keys import KeyRing, LocalKeyProvider
from tests.engine.cluster.support import DEPOSIT_USD, Cluster
from tests.engine.crash_support import delivering_carriers
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

NUMBERS = ["+4915112345678", "+6591234567", "+5511987654321"]  # one per POP
def ring_id(directory) -> bytes:
    """The id of the key store in ``directory`` (read as the engine reads it, under its master key)."""
    assert (directory / "keys.store").is_file(), f"no key store in {directory}"
    return KeyRing(directory, LocalKeyProvider(directory)).ring_id


COUNTRIES = {"+4915112345678": "DE", "+6591234567": "SG", "+5511987654321": "BR"}


def test_billing_works_across_the_core_and_its_workers(tmp_path):
    keys = tmp_path / "keys"  # [keys] dir outside the data directory (policy 9): each process its own
    c = Cluster(tmp_path / "data", workers=2, overrides={**delivering_carriers(), "keys": {"dir": str(keys)}})
    try:
        accounts = c.accounts(2)  # at least one on each worker
        idle = accounts[0]  # no submit yet: its session is started by the operator's debit
        deposit = int(DEPOSIT_USD) * 1_000_000
        with pytest.raises(InsufficientBalance):
            c.engine.billing.adjust(idle.id, f"-{int(DEPOSIT_USD) + 1}", "too much", "too-much")
        done = c.engine.billing.adjust(idle.id, "-1.25", "setup fee", "setup-1")
        assert (done.balance_micro_usd, done.duplicate) == (deposit - 1_250_000, False)
        assert c.engine.billing.adjust(idle.id, "-1.25", "setup fee", "setup-1").duplicate
        sent = {}
        for acct in accounts:
            sent[acct.id] = [(c.engine.submit(acct.api_key, to, "ACME", f"m{i}"), to)
                             for i, to in enumerate(NUMBERS * 2)]
        every = [a.message_id for rows in sent.values() for a, _ in rows]
        wait_for(lambda: all(c.final_in_store(mid) for mid in every), "every message final", 30)

        for acct in accounts:
            rows = list(c.engine.billing.usage(acct.id))
            messages = {r.id: r for r in rows if r.type == "message"}
            assert list(messages) == [a.message_id for a, _ in sent[acct.id]]
            for accepted, to in sent[acct.id]:  # the record columns come from the account's worker
                row = messages[accepted.message_id]
                assert (row.country, row.segments, row.status) == (COUNTRIES[to], 1, "delivered")
            assert sum(r.amount_micro_usd for r in rows) == c.engine.balance(acct.id)
        report = c.engine.billing.reconcile(settle_seconds=0.0)
        assert report.ok, report.as_dict()
        assert report.records_checked and report.counts["records"] == len(every)
        assert c.engine.billing.verify().ok
        # The overrides (which may hold an SMSC password) reach the workers on their stdin, never on a
        # command line other local users can read (the key stores below prove they arrived)
        lines = _worker_command_lines(tmp_path / "data")
        assert len(lines) == 2 and all("--overrides-stdin" in line for line in lines)
        assert not [line for line in lines if str(keys) in line]
    finally:
        c.stop()
    # One key store was shared by the core and both workers: each rewrote keys.store with what it
    # knew, dropping the others' newer keys (a worker's body window key: its bodies unreadable after a
    # restart). Each worker now has a key store of its own beside the core's.
    rings = {ring_id(keys / node) for node in ("w0", "w1")}
    assert len(rings) == 2 and ring_id(keys) not in rings


def _worker_command_lines(data: Path) -> list[str]:
    """The command lines of the worker processes of the cluster in ``data`` (as ``ps`` shows them)."""
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "engine.cluster.worker" in line and str(data) in line:
            out.append(line)
    return out
