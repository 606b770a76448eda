"""``bench.http_cost``'s targets: each starts a server that answers the POST its wrk script sends, and says
how to read the CPU it spends (the harness broke once when a target's contract changed; wrk itself is not
needed here)."""

from __future__ import annotations

import argparse
import http.client
import json

import pytest

from bench import http_cost, http_load


@pytest.mark.parametrize("target", ["bare", "stub"])
def test_a_target_answers_the_measured_post_and_reports_its_cpu(tmp_path, target):
    args = argparse.Namespace(accounts=2, carrier_throughput=100_000, carrier_window=5000)
    port, keys, stop, cpu_seconds = http_cost.TARGETS[target](args, tmp_path)
    try:
        before = cpu_seconds()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = {"to": http_load.DESTINATIONS[0], "from": "ACME", "body": "Your code is 123456"}
        conn.request("POST", "/v1/messages", json.dumps(body),
                     {"Content-Type": "application/json", "Authorization": f"Bearer {keys[0]}"})
        answer = conn.getresponse()
        assert answer.status == 202 and json.loads(answer.read())["status"] == "accepted"
        conn.close()
        assert cpu_seconds() >= before  # a CPU clock of the serving process
    finally:
        stop()
