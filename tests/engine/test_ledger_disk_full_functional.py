"""The ledger on a full disk says ``store_full``, counts it, and logs it once - not every tick.

Before, the ledger turned LMDB's full-disk error into a bare ``storage_error`` (a deposit was answered
``storage_error``, nothing was counted in ``smsroute_store_full_refusals_total``) and its queued debits
logged ``ALARM could not write N debits (storage_error)`` on every tick of the outage - twenty lines a
second at a 50 ms tick. Now: one ALARM naming the store when it starts, a summary with a count at most
every ``FULL_SUMMARY_SECONDS``, one line when the ledger writes again, and the debits are all written then.

Runs in a private mount namespace with a 2 MiB tmpfs mounted on the core's store only (``<data>/core``:
accounts, keys, the ledger), so the POPs keep committing and their debits reach the ledger. The disk is
filled while another process holds a read transaction on the core store, so LMDB cannot reuse the pages
it frees (as ``test_receipts_disk_full_functional``).
"""

from __future__ import annotations

import pytest

from tests.engine.disk_full_support import needs_tiny_tmpfs, run_on_tiny_tmpfs

pytestmark = pytest.mark.functional

PIN = r"""
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, max_dbs=512, subdir=True)
txn = env.begin()
print("pinned", flush=True)
sys.stdin.read()
"""

CHILD = r"""
import json, os, subprocess, sys, time
import actors.ledger
from engine import Engine
from engine.errors import SmsrouteError
from storage.full import FULL_REFUSALS
from tests.waiting import wait_for

actors.ledger.FULL_SUMMARY_SECONDS = 0.5  # (60 s in production)
data = sys.argv[1]
engine = Engine.start(data_dir=data, overrides={"engine": {"tick_ms": 50}})


acct = engine.create_account(email="full@example.com")
engine.register_sender(acct.id, "ACME")
engine.deposit(acct.id, usd="100", chain="tron", tx_hash="0xfull", from_address="T")
pin = subprocess.Popen([sys.executable, "-c", os.environ["PIN"], data + "/core"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert pin.stdout.readline().strip() == "pinned"
for n, size in enumerate(("64k", "4k")):  # to the last page
    subprocess.run(["dd", "if=/dev/zero", f"of={data}/core/fill{n}", f"bs={size}"],
                   stderr=subprocess.DEVNULL)
print("FULL", file=sys.stderr, flush=True)
full_at = time.monotonic()
ids = [engine.submit(acct.api_key, "+4915112345678", "ACME", f"hello {i}").message_id
       for i in range(5)]
try:
    engine.deposit(acct.id, usd="1", chain="tron", tx_hash="0xmore", from_address="T")
    deposit = "credited"
except SmsrouteError as exc:
    deposit = exc.code
wait_for(lambda: FULL_REFUSALS["ledger"] >= 20, "a second of ticks", timeout=5)
refusals = FULL_REFUSALS["ledger"]
time.sleep(0.6)  # one summary is due (FULL_SUMMARY_SECONDS), not one line per tick
print("FREE", file=sys.stderr, flush=True)
seconds_full = time.monotonic() - full_at
for n in range(2):
    os.remove(f"{data}/core/fill{n}")
pin.stdin.close()
pin.wait(10)
wait_for(lambda: engine.billing.reconcile(settle_seconds=0).differences_total == 0, "every debit written")
engine.stop()
print(json.dumps({"deposit": deposit, "refusals": refusals, "seconds_full": seconds_full}))
"""


@needs_tiny_tmpfs
def test_a_full_disk_under_the_ledger_is_store_full_counted_and_logged_once_with_a_summary_and_a_recovery_line(
        tmp_path):
    data = tmp_path / "data"  # the core's directory on a 2 MiB tmpfs
    seen, err = run_on_tiny_tmpfs(data / "core", CHILD, arg=data, size="2m", env={"PIN": PIN}, timeout=60)
    outage = err.split("FULL", 1)[1]
    during, after = outage.split("FREE", 1)
    assert seen["deposit"] == "store_full"  # before: storage_error
    assert seen["refusals"] >= 20  # smsroute_store_full_refusals_total{store="ledger"}; before: 0
    assert during.count("ALARM store ledger is full") == 1, during[-3000:]
    summaries = during.count("ALARM store ledger still full")  # each with its count
    assert 1 <= summaries <= seen["seconds_full"] / 0.5 + 1, during[-3000:]  # not one per tick
    assert "could not write" not in outage and "storage_error" not in outage  # before: every tick
    assert after.count("store ledger takes writes again") == 1, after[-3000:]
