"""``smsroute run --workers 2`` as an operator runs it: one command, a supervisor, two workers, a NATS server.

Through the real ports: an account made on the control port sends on the customer API and its message is
delivered (its status read back from the worker that holds it); ``/readyz`` and ``/v1/stats`` show every
worker; and SIGTERM stops every worker process and the NATS server the command started, exit status 0.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.door import lag_never_sheds_config
from tests.engine.cli_support import Running
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

_CONNECT = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1], connect_timeout=2, allow_reconnect=False)
    await nc.close()
asyncio.run(main())
"""


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_left(pids: set[int]) -> None:
    """A failed test must not leave workers or a NATS server behind."""
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_run_with_two_workers_serves_the_api_and_sigterm_stops_every_process(tmp_path):
    data = tmp_path / "data"
    children: set[int] = set()
    try:
        _run_with_two_workers(data, children)
    finally:
        _kill_left(children)


def _run_with_two_workers(data, children: set[int]) -> None:
    with Running("run", "--workers", "2", "--data-dir", str(data), "--customer-port", "0",
                 "--control-port", "0", "--config", lag_never_sheds_config(data.parent)) as run:
        line = run.wait_for_line("smsroute running:", 90)
        assert "2 worker process(es) over NATS nats://127.0.0.1:" in line
        nats_url = re.search(r"over NATS (nats://\S+);?", line).group(1).rstrip(";")
        refused = subprocess.run([sys.executable, "-c", _CONNECT, nats_url], capture_output=True, text=True)
        assert "Authorization Violation" in refused.stderr  # another local user: no token, no entry
        assert (data / "nats" / "client.token").stat().st_mode & 0o777 == 0o600
        customer = int(re.search(r":(\d+)/v1", run.wait_for_line("customer API:")).group(1))
        control = int(re.search(r":(\d+)/$", run.wait_for_line("control port:")).group(1))
        children.update(_children(run.proc.pid))
        assert len(children) == 3  # two workers and nats-server

        token = (data / "operator.token").read_text().strip()
        ops, api = Client(control, token), Client(customer)
        status, _, body = ops.request("GET", "/readyz")
        assert status == 200, body
        status, _, acct = ops.request("POST", "/v1/accounts", {"email": "ops@example.com"})
        assert status == 201, acct
        ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                    {"usd": "10.00", "chain": "tron", "tx_hash": "0xabc", "from_address": "TXYZ"})
        ops.request("POST", f"/v1/accounts/{acct['id']}/senders", {"sender": "ACME"})
        api.token = acct["api_key"]
        status, _, sent = api.request("POST", "/v1/messages",
                                      {"to": "+4915112345678", "from": "ACME", "body": "hi"})
        assert status == 202, sent
        mid = sent.get("id") or sent.get("message_id")

        def final() -> bool:  # the embedded default's carriers fail a few messages on purpose
            s, _, msg = api.request("GET", f"/v1/messages/{mid}")
            return s == 200 and msg["status"] in ("delivered", "failed", "rejected", "expired")

        wait_for(final, "the message final, read back from its worker", 30)
        status, _, stats = ops.request("GET", "/v1/stats")
        assert {w["node"] for w in stats["workers"]} == {"w0", "w1"}
        assert all(w["alive"] for w in stats["workers"])
        status, _, metrics = ops.request("GET", "/metrics")
        text = metrics.decode() if isinstance(metrics, bytes) else metrics
        assert 'smsroute_worker_up{worker="w0"} 1.0' in text
        assert 'smsroute_worker_up{worker="w1"} 1.0' in text
        assert "smsroute_nats_connected 1.0" in text
        assert 'smsroute_nats_queries_not_acted_on_total{reason="late"} 0.0' in text

        assert run.stop(60) == 0
        assert "smsroute stopped" in run.output
    wait_for(lambda: not any(_alive(pid) for pid in children), "every worker and nats-server gone", 10)
