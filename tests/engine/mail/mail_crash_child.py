"""Child process for the outbox crash test: creates an account (its confirmation mail is queued), says
so, and waits to be killed with SIGKILL while its SMTP server keeps refusing the mail.

Usage: python -m tests.engine.mail.mail_crash_child DATA_DIR SMTP_PORT OUT_FILE
"""

from __future__ import annotations

import os
import sys
import time

from engine import Engine


def main() -> None:
    data_dir, port, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    engine = Engine.start(data_dir=data_dir, overrides={"email": {
        "host": "127.0.0.1", "port": port, "tls": "none", "retry_base_seconds": 0.01,
        "retry_cap_seconds": 0.05}})
    account = engine.create_account(email="crash@example.com")
    with open(out_path, "w") as out:
        out.write(f"account {account.id}\n")
        out.flush()
        os.fsync(out.fileno())
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
