"""A cluster's core is not ready while a worker's message store is full, and ready again after.

``smsroute run --workers N``: a worker whose disk filled refused every new message ``store_full``, but only
its own ``/readyz`` - which nothing asks: the core serves the ports - knew it; the core's ``/readyz`` kept
answering 200, so a load balancer kept sending it traffic the cluster could only refuse. The worker now
names its full stores on its heartbeat line (the stdout pipe ``smsroute run`` already reads,
``engine.cluster.heartbeat``), and the core's ``/readyz`` answers 503 ``store_full`` naming the worker and
the store - ``worker:w0 (message:fra)``, never a path - until the worker says the store takes new messages
again.

Runs in a private mount namespace with a 4 MiB tmpfs on the worker's data directory only
(``<data>/workers/w0``), as the other disk-full tests (needs root and ``unshare``).
"""

from __future__ import annotations

import pytest

from tests.engine.cluster.support import run_on_a_tiny_worker_disk
from tests.engine.disk_full_support import needs_tiny_tmpfs

pytestmark = pytest.mark.functional

CHILD = r"""
import json, os, subprocess, sys, time
from engine.errors import SmsrouteError
from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import webhook_engine_overrides
from tests.engine.http.conftest import Client
from tests.waiting import wait_for
from pathlib import Path

data = Path(sys.argv[1])
worker_disk = data / "workers" / "w0"


c = Cluster(data, 1, overrides=webhook_engine_overrides(), http=True)
try:
    ops = Client(c.engine.http.control_port)
    account = c.accounts(1)[0]
    ready_before = ops.request("GET", "/readyz")[0]
    # a first message, so the worker holds the account's key before its disk fills (storing it then fails)
    c.engine.submit(account.api_key, "+4915112345678", "ACME", "first")
    subprocess.run(["dd", "if=/dev/zero", f"of={worker_disk}/fill", "bs=64k"], stderr=subprocess.DEVNULL)
    msg = {"to": "+4915112345678", "sender": "ACME", "body": "x" * 150}

    def refused():
        codes = set()
        for future in c.engine.submit_many(account.api_key, [msg] * 50):
            try:
                future.result(30)
            except SmsrouteError as exc:
                codes.add(exc.code)
        return codes

    codes = wait_for(refused, "a submit refused store_full")

    def not_ready():
        status, _, body = ops.request("GET", "/readyz")
        return (status, body) if status != 200 else None

    status, body = wait_for(not_ready, "the core not ready")
    os.remove(f"{worker_disk}/fill")
    wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "the core ready again")
    print(json.dumps({"ready_before": ready_before, "codes": sorted(codes), "status": status,
                      "body": body, "data": str(data)}))
finally:
    c.stop()
"""

@needs_tiny_tmpfs
def test_the_cores_readyz_names_a_worker_whose_store_is_full_and_is_ready_again_after(tmp_path):
    seen, _log = run_on_a_tiny_worker_disk(tmp_path, CHILD)
    assert seen["ready_before"] == 200
    assert seen["codes"] == ["store_full"]
    # before: 200 all along (only the worker's own metric and log knew)
    assert seen["status"] == 503 and seen["body"]["error"]["code"] == "store_full", seen
    message = seen["body"]["error"]["message"]
    assert "worker:w0 (message:fra)" in message and seen["data"] not in message  # the worker, not a path
