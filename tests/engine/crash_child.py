"""Child process for the crash test: accepts messages under load until it is killed with SIGKILL.

Usage: python -m tests.engine.crash_child DATA_DIR OUT_FILE
Writes "account <id> <api_key>" then one "accepted <message_id> <price>" line per acknowledged message,
flushed and fsynced before the next submit is counted, so the parent knows exactly what was acknowledged.
"""

from __future__ import annotations

import os
import sys
import time

from engine import Engine
from tests.engine.crash_support import silent_carriers


def main() -> None:
    data_dir, out_path = sys.argv[1], sys.argv[2]
    engine = Engine.start(data_dir=data_dir, overrides=silent_carriers())
    account = engine.create_account(email="crash@example.com")
    engine.register_sender(account.id, "CRASH")
    engine.deposit(account.id, usd="100000", chain="test", tx_hash="0x1", from_address="addr")
    with open(out_path, "a", buffering=1) as out:
        out.write(f"account {account.id} {account.api_key}\n")
        out.flush()
        os.fsync(out.fileno())
        tos = ["+4915112345678", "+6591234567", "+5511987654321"]
        i = 0
        while True:
            futs = [engine.submit_future(account.api_key, to=tos[(i + k) % 3], sender="CRASH",
                                         body=f"crash test {i + k}") for k in range(50)]
            i += 50
            for fut in futs:
                accepted = fut.result(30)
                out.write(f"accepted {accepted.message_id} {accepted.price_micro_usd}\n")
            out.flush()
            os.fsync(out.fileno())
            time.sleep(0.001)


if __name__ == "__main__":
    main()
