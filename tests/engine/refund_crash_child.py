"""Child process for the refund crash test: messages fail and are owed a refund, and the ledger cannot
write the refunds (every attempt fails, as on a full disk; it keeps retrying); the parent then kills this
process with SIGKILL.

Usage: python -m tests.engine.refund_crash_child DATA_DIR OUT_FILE
Writes "<account id> <message id> x3 ready" (fsynced) once the three failed records, each with its refund
owed, are durable and the ledger has failed to write the refunds.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from engine import Engine
from engine.errors import StorageError
from storage.ledger import REFUND, LedgerStore
from tests.engine.crash_support import refund_overrides

_ledger_stuck = threading.Event()
_write = LedgerStore.write


def _failing_write(self, entries, **kw):
    entries = list(entries)
    if any(row[0] == REFUND for row in entries):
        _ledger_stuck.set()  # (a blocking write would stall every actor on the shared dispatcher)
        raise StorageError("simulated: the refund is never written before the kill")
    return _write(self, entries, **kw)


def main() -> None:
    data_dir, out_path = sys.argv[1], sys.argv[2]
    LedgerStore.write = _failing_write
    engine = Engine.start(data_dir=data_dir, overrides=refund_overrides())
    account = engine.create_account(email="refund-crash@example.com")
    engine.register_sender(account.id, "ACME")
    engine.deposit(account.id, usd="10", chain="tron", tx_hash="0xrefund", from_address="T")
    for carrier in engine.carriers():
        engine.suspend_carrier(carrier["carrier"], True)
    while sum(len(p["unavailable"]) for p in engine.stats()["pops"]) < len(engine.carriers()):
        time.sleep(0.01)
    # one message per POP: with every carrier suspended a route admits one message at a time
    ids = [engine.submit(account.api_key, to, "ACME", f"lost refund {to}").message_id
           for to in ("+4915112345678", "+6591234567", "+5511987654321")]
    while not (_ledger_stuck.is_set()
               and all(engine.status(mid).refunded_micro_usd > 0 for mid in ids)):
        time.sleep(0.01)
    with open(out_path, "w") as out:
        out.write(" ".join([account.id, *ids, "ready"]) + "\n")
        out.flush()
        os.fsync(out.fileno())
    threading.Event().wait()


if __name__ == "__main__":
    try:
        main()
    except BaseException as exc:  # the actors' threads would keep a failed child alive
        print(f"refund_crash_child: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(2)
