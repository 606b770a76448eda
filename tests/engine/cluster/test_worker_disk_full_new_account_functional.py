"""A new account's first message to a worker whose disk is full is refused ``503 store_full`` at once.

``smsroute run --workers N``: a worker makes an account's data key on the account's first message (the
key file, ``<keys>/accounts/<token>.key``). On a full disk that write failed with ``OSError`` inside the
worker's NATS handler, nothing answered the submit, and the customer got ``503 cluster_unavailable`` ~20 s
later (the core's expiry of unanswered submits) - which also claims the message may have been accepted.
Now the worker refuses the frame's requests ``store_full`` (naming the ``keys`` store), and the same
account's message is accepted once space is freed.

Runs in a private mount namespace with a 4 MiB tmpfs on the worker's data directory (its key directory
included), as the other disk-full tests (needs root and ``unshare``).
"""

from __future__ import annotations

import pytest

from tests.engine.cluster.support import run_on_a_tiny_worker_disk
from tests.engine.disk_full_support import needs_tiny_tmpfs

pytestmark = pytest.mark.functional

CHILD = r"""
import json, os, subprocess, sys, time
from pathlib import Path
from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import DE_NUMBER, Client

data = Path(sys.argv[1])
worker_disk = data / "workers" / "w0"
c = Cluster(data, 1, overrides=webhook_engine_overrides(), http=True)
try:
    account = c.accounts(1)[0]  # nothing sent yet: the worker has no key of it
    api = Client(c.engine.http.customer_port, account.api_key)
    subprocess.run(["dd", "if=/dev/zero", f"of={worker_disk}/fill", "bs=64k"], stderr=subprocess.DEVNULL)
    message = {"to": DE_NUMBER, "from": "ACME", "body": "first"}
    started = time.monotonic()
    status, headers, body = api.request("POST", "/v1/messages", message)
    seconds = time.monotonic() - started
    leftovers = sorted(p.name for p in worker_disk.rglob("*.tmp"))
    os.remove(worker_disk / "fill")
    after = api.request("POST", "/v1/messages", message)[0]
    print(json.dumps({"status": status, "retry_after": headers.get("Retry-After"), "body": body,
                      "seconds": seconds, "leftovers": leftovers, "after": after}))
finally:
    c.stop()
"""

@needs_tiny_tmpfs
def test_a_new_accounts_first_message_to_a_full_worker_is_refused_store_full_at_once(tmp_path):
    seen, log = run_on_a_tiny_worker_disk(tmp_path, CHILD)
    # before: 503 cluster_unavailable after ~20 s (no answer from the worker)
    assert seen["status"] == 503 and seen["body"]["error"]["code"] == "store_full", seen
    assert "keys store is full" in seen["body"]["error"]["message"] and seen["retry_after"]
    assert seen["seconds"] < 5, seen  # answered, not expired
    assert seen["leftovers"] == []  # no partly written key file left taking space
    assert seen["after"] == 202  # the same account, once space is freed
    assert "ALARM store keys is full" in log and "OSError" not in log
