"""Two real HTTP edge processes leasing one API key's rate limit from a real core (NATS, real sockets).

Each edge listens on a port of its own here (``smsroute run --edges`` shares one, and the kernel picks the
edge), so the test decides which edge each request reaches: a client whose connections alternate between
the edges must get the key's whole burst admitted, not a 429 while the other edge holds unspent tokens.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.door import LAG_NEVER_SHEDS
from tests.engine.cluster.support import Cluster
from tests.engine.crash_support import delivering_carriers
from tests.engine.http.conftest import Client

pytestmark = pytest.mark.functional

BURST = 60  # (with the previous edges the 42nd request was refused: the other edge held 19 tokens)


@contextmanager
def _edge(c: Cluster, index: int, edges: int, overrides: dict, data) -> Iterator[int]:
    """``python -m engine.cluster.edge`` as ``smsroute run --edges`` starts it, on a port of its own."""
    cluster = c.cluster
    args = [sys.executable, "-m", "engine.cluster.edge", "--index", str(index), "--workers",
            str(len(cluster.workers)), "--edges", str(edges), "--nats", ",".join(cluster.nats_urls),
            "--data-dir", str(data / f"e{index}"), "--port", "0",
            "--core-url", f"http://127.0.0.1:{c.engine.http.customer_port}",
            "--parent-pid", str(os.getpid()), "--overrides-stdin"]
    if cluster.nats_token_file:
        args += ["--nats-token-file", cluster.nats_token_file]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdin.write("edge-token-for-the-test\n" + json.dumps(overrides) + "\n")
        proc.stdin.close()
        lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
        while True:
            line = lines.get(timeout=60)
            if (ready := re.search(r"ready on [\d.]+:(\d+)", line)) is not None:
                break
        yield int(ready.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_keys_requests_alternating_between_two_edges_are_admitted_up_to_its_limit(tmp_path):
    overrides = delivering_carriers()
    overrides["http"] = {"rate_limit_burst": BURST, "rate_limit_per_second": 0.001,  # no refill
                         "customer_port": 0, "control_port": 0,  # (not the defaults 8080/8081)
                         **LAG_NEVER_SHEDS}
    c = Cluster(tmp_path, workers=1, overrides=overrides, http=True)
    try:
        [account] = c.accounts(1)
        with _edge(c, 0, 2, overrides, tmp_path) as port0, _edge(c, 1, 2, overrides, tmp_path) as port1:
            clients = [Client(port0, account.api_key), Client(port1, account.api_key)]
            statuses = []
            for i in range(BURST + 20):  # one at a time, each answered before the next
                status, headers, body = clients[i % 2].request(
                    "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME", "body": f"a{i}"})
                assert status in (202, 429), body
                statuses.append(status)
            first_refused = statuses.index(429)
            assert first_refused == BURST, statuses  # not one request refused below the limit
            # and not more than the limit either, beyond one request on credit per edge
            assert statuses.count(202) <= BURST + 2
            assert headers["RateLimit-Remaining"] == "0" and int(headers["Retry-After"]) >= 1
    finally:
        c.stop()
