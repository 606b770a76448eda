"""kill -9 under load: every acknowledged message survives, resumes, and is billed exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from engine import Engine
from storage.ledger import DEBIT
from tests.engine.crash_support import delivering_carriers
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _wait_for_accepted(out: Path, proc: subprocess.Popen, want: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read().decode()[-2000:]}")
        if out.exists() and out.read_text().count("\naccepted ") >= want:
            return
        time.sleep(0.05)  # polling a file the child writes; the assertion below does not depend on timing
    raise AssertionError("child did not accept enough messages in time")


def test_messages_acknowledged_before_sigkill_are_resumed_and_billed_exactly_once(tmp_path):
    data_dir, out = tmp_path / "data", tmp_path / "accepted.txt"
    proc = subprocess.Popen([sys.executable, "-m", "tests.engine.crash_child", str(data_dir), str(out)],
                            cwd=ROOT, stderr=subprocess.PIPE)
    try:
        _wait_for_accepted(out, proc, 600, time.monotonic() + 90)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = out.read_text().splitlines()
    _, account_id, _api_key = lines[0].split()
    acknowledged = {line.split()[1]: int(line.split()[2]) for line in lines[1:]
                    if line.startswith("accepted ") and len(line.split()) == 3}
    assert len(acknowledged) >= 600

    finals: dict[str, list[str]] = {}
    lock = threading.Lock()

    def on_status(item):
        if item.status != "accepted":
            with lock:
                finals.setdefault(item.message_id, []).append(item.status)

    engine = Engine.start(data_dir=data_dir, overrides=delivering_carriers(), on_status=on_status)
    try:
        stores = engine.runtime.pop_stores.values()
        records = {r.message_id: r for s in stores for r in s.records.for_account(account_id)}
        # nothing acknowledged was lost
        assert set(acknowledged) <= set(records)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if set(records) <= set(finals):
                    break
            time.sleep(0.05)
        with lock:
            unfinished = set(records) - set(finals)
            assert not unfinished, f"{len(unfinished)} messages never finished"
            # resumed messages reached exactly one final status
            assert all(statuses == ["delivered"] for statuses in finals.values())

        # every durable message is billed exactly once, including any accepted just before the kill:
        # each POP sends the debits it still owes at start, and forgets them once the ledger has them
        wait_for(lambda: all(not s.debits.all() for s in stores), "the owed debits", 30)
        ledger = engine.runtime.ledger_store
        debits = [e for e in ledger.entries(account_id) if e.kind == DEBIT]
        assert sorted(e.reference for e in debits) == sorted(records)
        expected = 100_000 * 1_000_000 - sum(r.price_micro_usd for r in records.values())
        assert engine.balance(account_id) == expected
    finally:
        engine.stop()
