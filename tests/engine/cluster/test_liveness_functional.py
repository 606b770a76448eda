"""A worker or HTTP edge that hangs is reported, then killed and restarted: ``smsroute run`` as an operator
runs it, with real processes and ports, and the child stopped with SIGSTOP (it stays connected and holds
its sockets, but does nothing - as a deadlocked process would).

Before, supervision noticed only a child that exited: ``/readyz`` stayed 200 for ever, nothing restarted
it, a hung edge kept its share of the customer port's connections and a hung worker's messages stalled.
Now each child beats on its stdout while its loops and actors answer (``engine.cluster.heartbeat``); the
test's deadlines are short (hung after 1 s, killed after 4 s; the defaults are 10 s and 30 s).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from engine.config import default_document
from tests.door import LAG_NEVER_SHEDS_TOML
from tests.engine.cli_support import Running
from tests.engine.cluster.test_run_workers_functional import _alive, _children, _kill_left
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

HUNG_AFTER_S, KILL_AFTER_S = 1.0, 4.0


def _config() -> str:
    """Short deadlines, and the default topology with carriers that deliver everything at once (the
    default's fail some messages and receipt a few late, on purpose)."""
    lines = ["[engine]", f"child_hung_after_seconds = {HUNG_AFTER_S}",
             f"child_kill_after_seconds = {KILL_AFTER_S}", "[http]", LAG_NEVER_SHEDS_TOML.strip()]
    for name, table in default_document()["carriers"].items():
        lines += [f"[carriers.{name}]", f'pop = "{table["pop"]}"', 'outcomes = { delivered = 1.0 }',
                  "late_receipt_rate = 0.0", "duplicate_receipt_rate = 0.0"]
    return "\n".join(lines) + "\n"


def _run(tmp_path: Path, *extra: str) -> Running:
    config = tmp_path / "liveness.toml"
    config.write_text(_config())
    return Running("run", "--workers", "1", *extra, "--data-dir", str(tmp_path / "data"),
                   "--customer-port", "0", "--control-port", "0", "--config", str(config))


def _ports(run: Running) -> tuple[int, int]:
    run.wait_for_line("smsroute running:", 60)
    customer = int(re.search(r":(\d+)/v1", run.wait_for_line("customer API:")).group(1))
    control = int(re.search(r":(\d+)/$", run.wait_for_line("control port:")).group(1))
    return customer, control


def _funded_api(ops: Client, customer: int) -> Client:
    status, _, acct = ops.request("POST", "/v1/accounts", {"email": "ops@example.com"})
    assert status == 201, acct
    ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                {"usd": "10.00", "chain": "tron", "tx_hash": "0xabc", "from_address": "TXYZ"})
    ops.request("POST", f"/v1/accounts/{acct['id']}/senders", {"sender": "ACME"})
    return Client(customer, acct["api_key"])


def _send(api: Client) -> str:
    status, _, sent = api.request("POST", "/v1/messages",
                                  {"to": "+4915112345678", "from": "ACME", "body": "hi"})
    assert status == 202, sent
    return sent["id"]


def _delivered(api: Client, mid: str) -> bool:
    status, _, msg = api.request("GET", f"/v1/messages/{mid}")
    return status == 200 and msg["status"] == "delivered"


def _child(stats: dict, node: str) -> dict:
    return next(w for w in stats["workers"] if w["node"] == node)


def _hang_and_wait_for_restart(run: Running, ops: Client, node: str) -> None:
    """SIGSTOP ``node``; /readyz names it hung within the deadline, ``/v1/stats`` shows it; then it is
    killed and restarted (a new pid, ready again); one log line per transition."""
    _, _, stats = ops.request("GET", "/v1/stats")
    before = _child(stats, node)
    assert before["alive"] and not before["hung"] and before["silent_seconds"] < HUNG_AFTER_S
    os.kill(before["pid"], signal.SIGSTOP)
    try:
        def readyz_names_it() -> dict | None:
            status, headers, body = ops.request("GET", "/readyz")
            return body if status == 503 and f"worker:{node} (hung)" in str(body) else None

        body = wait_for(readyz_names_it, f"/readyz naming {node} hung", HUNG_AFTER_S + 3)
        assert body["error"]["code"] == "actors_down"
        _, _, stats = ops.request("GET", "/v1/stats")
        hung = _child(stats, node)
        assert hung["hung"] and hung["alive"] and hung["pid"] == before["pid"]
        assert hung["silent_seconds"] >= HUNG_AFTER_S

        def restarted() -> dict | None:
            _, _, stats = ops.request("GET", "/v1/stats")
            now = _child(stats, node)
            return now if now["pid"] != before["pid"] and now["ready"] else None

        after = wait_for(restarted, f"{node} killed and restarted", KILL_AFTER_S + 10)
    finally:
        if _alive(before["pid"]):
            os.kill(before["pid"], signal.SIGCONT)  # (a failed test leaves no stopped process)
    assert not _alive(before["pid"])  # killed, not left behind
    assert after["restarts"] == before["restarts"] + 1 and after["hung_kills"] == 1
    wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "/readyz 200 again", 15)
    _, _, metrics = ops.request("GET", "/metrics")
    text = metrics.decode()
    assert f'smsroute_worker_hung{{worker="{node}"}} 0.0' in text
    assert f'smsroute_worker_hung_kills_total{{worker="{node}"}} 1.0' in text
    hung_lines = [x for x in run.lines if f" {node} is hung: no heartbeat" in x]
    killed_lines = [x for x in run.lines if f" {node} killed (SIGKILL)" in x]
    assert len(hung_lines) == 1 and len(killed_lines) == 1, run.output
    assert f"node={node} pid={before['pid']}" in hung_lines[0] and "state=hung" in hung_lines[0]
    assert "state=killed" in killed_lines[0]


def test_a_hung_worker_is_reported_then_killed_and_restarted_and_its_messages_go_on(tmp_path):
    left: set[int] = set()
    try:
        with _run(tmp_path) as run:
            customer, control = _ports(run)
            left |= _children(run.proc.pid)
            ops = Client(control, (tmp_path / "data" / "operator.token").read_text().strip())
            api = _funded_api(ops, customer)
            accepted = _send(api)  # durable before the hang: it must not be lost with the process
            _hang_and_wait_for_restart(run, ops, "w0")
            left |= _children(run.proc.pid)
            wait_for(lambda: _delivered(api, accepted), "the message accepted before the hang delivered", 15)
            after = _send(api)  # the restarted worker takes new traffic
            wait_for(lambda: _delivered(api, after), "a message sent after the restart delivered", 15)
            assert run.stop(60) == 0
    finally:
        _kill_left(left)


def test_a_hung_edge_is_reported_then_killed_and_restarted_and_the_port_serves_again(tmp_path):
    left: set[int] = set()
    try:
        with _run(tmp_path, "--edges", "1") as run:
            customer, control = _ports(run)  # the edge's port
            left |= _children(run.proc.pid)
            ops = Client(control, (tmp_path / "data" / "operator.token").read_text().strip())
            api = _funded_api(ops, customer)
            _send(api)
            _hang_and_wait_for_restart(run, ops, "e0")
            left |= _children(run.proc.pid)
            mid = _send(api)  # the customer port is served again, by the new edge
            wait_for(lambda: _delivered(api, mid), "a message sent through the new edge delivered", 15)
            assert run.stop(60) == 0
    finally:
        _kill_left(left)
