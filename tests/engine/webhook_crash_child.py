"""Child process of the webhook crash test: accepts messages whose webhooks are still pending when killed.

Usage: python -m tests.engine.webhook_crash_child DATA_DIR OUT_FILE RECEIVER_URL [BATCH_MAX]
Writes "account <id>" then one "accepted <message_id>" line per acknowledged message (fsynced), then
"done", and waits to be killed with SIGKILL.
"""

from __future__ import annotations

import os
import sys
import time

from engine import Engine
from tests.engine.crash_support import webhook_engine_overrides


def main() -> None:
    data_dir, out_path, url = sys.argv[1], sys.argv[2], sys.argv[3]
    batch_max = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    engine = Engine.start(data_dir=data_dir, http=True, overrides=webhook_engine_overrides())
    account = engine.create_account(email="hooks@example.com")
    engine.register_sender(account.id, "CRASH")
    engine.deposit(account.id, usd="1000", chain="test", tx_hash="0x1", from_address="addr")
    engine.set_webhook(account.id, url, batch_max=batch_max, batch_wait_ms=50)
    with open(out_path, "a", buffering=1) as out:
        out.write(f"account {account.id}\n")
        tos = ["+4915112345678", "+6591234567", "+5511987654321"]
        futures = [engine.submit_future(account.api_key, to=tos[k % 3], sender="CRASH",
                                        body=f"webhook crash {k}", client_ref=f"ref-{k}")
                   for k in range(150)]
        for fut in futures:
            out.write(f"accepted {fut.result(30).message_id}\n")
        out.write("done\n")
        out.flush()
        os.fsync(out.fileno())
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
