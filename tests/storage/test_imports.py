"""Each storage module (and the sweeper) imports on its own, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["storage.crypto", "storage.keys", "storage.bodies", "storage.audit", "storage.holds",
           "storage.retention", "actors.sweeper", "storage.outbox", "storage.verification",
           "storage.dsar", "storage.incidents", "storage.support", "storage.records_base",
           "storage.account_keys", "storage.pseudonyms", "storage.hsm", "storage.ledger",
           "storage.ledger_chain", "storage.ledger_entries", "storage.ledger_balances",
           "storage.ledger_scan", "storage.ledger_write",
           "storage.records", "storage.accounts", "storage.refunds", "storage.pop_commit",
           "storage.webhook_outbox", "engine.webhook_events", "engine.listing", "engine.submission"]


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
