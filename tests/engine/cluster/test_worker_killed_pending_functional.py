"""Requests already sent to a worker that is then killed (kill -9) are answered as soon as the core
knows the worker is gone - not after their time-out.

Before, the core refused NEW submits for a dead worker at once (``engine.cluster.presence``), but a
submit sent to it just before it died waited 10-20 s for ``_ExpireUnanswered``, and a status read the
core's 30 s query time-out. Real nats-server and worker process; the worker is SIGSTOPped first, so the
submit and the read are delivered into its socket and certainly pending when it is SIGKILLed (the
heartbeat deadlines are far out of reach: only the kill can explain a quick answer).

The same for a core whose workers run on other hosts (``--role core``: it knows them only by what they
announce): a worker killed and started again by its own host's supervisor asks as it starts, and what
the core had sent to the killed one fails then - before, only the 10-20 s expiry did; one killed and
not started again once its beat is late and the core's probe finds nobody subscribed to its subject
(before: only at its silence verdict). And for an HTTP
edge, which hears the core announce a supervised worker down (before: 15-30 s).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.nats_server import free_port
from engine.config import load_settings
from tests.engine.cluster.support import Cluster, funded_accounts, stop_process
from tests.engine.crash_support import webhook_engine_overrides
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

AT_ONCE_S = 3.0  # generous on a loaded host (the supervisor sees the exit within 0.2 s); before: 10-30 s


def _overrides() -> dict:
    out = webhook_engine_overrides()
    out["engine"] = {**out["engine"], "child_hung_after_seconds": 60.0,
                     "child_kill_after_seconds": 120.0}
    return out


def _call(port: int, token: str, method: str, path: str, body: dict | None = None,
          headers: dict | None = None, timeout: float = AT_ONCE_S + 3) -> tuple[float, int, dict]:
    """``(seconds it took, status, body)``; gives up (the test fails) well before the old time-outs."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                              **(headers or {})})
        resp = conn.getresponse()
        answer = json.loads(resp.read() or b"{}")
    finally:
        conn.close()
    return time.monotonic() - started, resp.status, answer


@contextlib.contextmanager
def _remote_core(tmp_path: Path):
    """A core of ``--role core`` (it knows w0 only by its announcements) and w0 under "another host's"
    supervisor, w0 heard ready: ``(engine, workers, a funded account)``; both stopped at the end."""
    overrides = _overrides()
    workers = LocalCluster(tmp_path / "cluster", 1, overrides=overrides)
    engine = None
    try:
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=workers.core_placement(), http=True)
        workers.start_workers()
        wait_for(lambda: engine.runtime.presence.refusal("w0") is None, "the core hearing w0 ready", 10)
        yield engine, workers, funded_accounts(engine, 1)[0]
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        workers.stop()


def _submit_in_background(engine: Engine, api_key: str, message: dict, idempotency_key: str,
                          **kwargs: object) -> tuple[threading.Thread, list[tuple[float, int, dict]]]:
    """POST ``message`` on a thread of its own, once the core has sent it (pending on the bridge): the
    thread and the list its answer lands in."""
    answers: list[tuple[float, int, dict]] = []
    thread = threading.Thread(target=lambda: answers.append(_call(
        engine.http.customer_port, api_key, "POST", "/v1/messages", message,
        {"Idempotency-Key": idempotency_key}, **kwargs)), daemon=True)
    thread.start()
    wait_for(lambda: engine.bridge.pending_requests(), "the submit sent to w0")
    return thread, answers


def test_requests_pending_on_a_killed_worker_fail_at_once_and_honestly(tmp_path):
    c = Cluster(tmp_path, 1, overrides=_overrides(), http=True)
    try:
        port = c.engine.http.customer_port
        account = c.accounts(1)[0]
        first = c.engine.submit(account.api_key, "+4915112345678", "ACME", "hi")
        wait_for(lambda: c.engine.status(first.message_id) is not None, "the message's record")
        message = {"to": "+4915112345678", "from": "ACME", "body": "hello"}
        key = {"Idempotency-Key": "order-1"}
        answers: dict[str, tuple[float, int, dict]] = {}

        def call(name: str, *args: object, **kwargs: object) -> threading.Thread:
            def run() -> None:
                answers[name] = _call(port, account.api_key, *args, **kwargs)

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
            return thread

        worker = c.cluster.workers[0].proc
        assert worker is not None
        stop_process(worker.pid)  # connected: what the core sends lands in its socket, unanswered
        pending_before = c.engine.bridge.pending_requests()
        threads = [call("submit", "POST", "/v1/messages", message, key),
                   call("read", "GET", f"/v1/messages/{first.message_id}")]
        transport = c.engine.runtime.transport
        wait_for(lambda: c.engine.bridge.pending_requests() > pending_before
                 and transport._asking.get("w0"), "the submit and the read sent to w0")
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        for thread in threads:
            thread.join(AT_ONCE_S + 4)
        took = time.monotonic() - killed_at
        assert set(answers) == {"submit", "read"}, f"no answer within {took:.1f} s of the kill"

        _, status, body = answers["submit"]  # sent: it may have been accepted - never "nothing sent"
        assert status == 503 and body["error"]["code"] == "cluster_unavailable", body
        assert "may or may not have been accepted" in body["error"]["message"], body
        _, status, body = answers["read"]
        assert status == 503 and body["error"]["code"] == "cluster_unavailable", body
        assert took < AT_ONCE_S, took

        # the key stays pending: a retry cannot send (and bill) the message a second time
        _, status, body = _call(port, account.api_key, "POST", "/v1/messages", message, key)
        assert status == 409 and body["error"]["code"] == "idempotency_outcome_unknown", body
    finally:
        c.stop()


def test_a_core_fails_what_it_sent_to_a_remote_worker_that_was_killed_once_it_restarts(tmp_path):
    with _remote_core(tmp_path) as (engine, workers, account):
        worker = workers.workers[0].proc
        assert worker is not None
        stop_process(worker.pid)
        message = {"to": "+4915112345678", "from": "ACME", "body": "hello"}
        thread, answers = _submit_in_background(engine, account.api_key, message, "order-2")
        os.kill(worker.pid, signal.SIGKILL)  # its host's supervisor starts it again in 0.5 s
        killed_at = time.monotonic()
        thread.join(AT_ONCE_S + 4)
        took = time.monotonic() - killed_at
        assert answers, f"no answer within {took:.1f} s of the kill"
        _, status, body = answers[0]
        assert status == 503 and "may or may not have been accepted" in body["error"]["message"], body
        assert took < AT_ONCE_S + 3, took  # a restart (~1-2 s) after the kill; before: 10-20 s


def test_a_core_fails_what_it_sent_to_a_remote_worker_killed_and_not_restarted_within_seconds(tmp_path):
    """A remote worker killed for good: the NATS server drops its subscription with its socket, and
    the core's probe of a worker whose beat is late (engine.cluster.late_probe) hears "no responders".
    While it is merely stopped (subscribed, silent) the probes time out and it stays ready: only the
    silence verdict (here 60 s) would judge it. Before: no answer before that silence."""
    with _remote_core(tmp_path) as (engine, workers, account):
        presence, probe = engine.runtime.presence, engine.runtime.late_probe
        w0 = workers.workers[0]
        w0.backoff = 3600.0  # its host's supervisor does not start it again
        stop_process(w0.proc.pid)
        message = {"to": "+4915112345678", "from": "ACME", "body": "hello"}
        thread, answers = _submit_in_background(engine, account.api_key, message, "order-3",
                                                timeout=15)  # (stopped a while first)
        wait_for(lambda: probe.counts["taken"], "a probe of the stopped w0 timed out", 8)
        assert presence.refusal("w0") is None and not answers  # stopped, subscribed: not judged
        os.kill(w0.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        thread.join(AT_ONCE_S + 4)
        took = time.monotonic() - killed_at
        assert answers, f"no answer within {took:.1f} s of the kill"
        _, status, body = answers[0]
        assert status == 503 and "may or may not have been accepted" in body["error"]["message"], body
        assert took < AT_ONCE_S, took  # the next probe (<= 2 s after the kill); before: 60 s
        assert presence.state_of("w0") == "down" and probe.counts["nobody"] >= 1
        _, status, body = _call(engine.http.customer_port, account.api_key, "POST", "/v1/messages",
                                message)
        assert status == 503 and "not ready (down)" in body["error"]["message"], body  # nothing sent


def _bytes_waiting(pid: int) -> int:
    """Bytes in the receive queues of ``pid``'s TCP sockets (``/proc/net/tcp``): what reached a
    stopped process that it has not read."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    waiting = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    waiting += int(fields[4].split(":")[1], 16)
    return waiting


def test_an_http_edge_fails_what_it_sent_to_a_worker_the_core_saw_killed(tmp_path):
    """An edge hands a submit without an Idempotency-Key straight to the account's worker; the core
    (which supervises the worker) announces it down when it exits, and the edge fails what it had sent
    to it then - before, after 15-30 s."""
    overrides = _overrides()
    workers = LocalCluster(tmp_path / "data", 1, overrides=overrides)
    engine = None
    try:
        token = "edge-token-for-the-test"
        engine = Engine.start(data_dir=tmp_path / "data", settings=load_settings(None, overrides),
                              placement=workers.core_placement(), http=True, edge_token=token,
                              cluster=workers)
        workers.start_workers()
        port = free_port()
        workers.start_edges(1, f"http://127.0.0.1:{engine.http.customer_port}", "127.0.0.1", port,
                            token=token)
        account = funded_accounts(engine, 1)[0]
        message = {"to": "+4915112345678", "from": "ACME", "body": "hello"}
        _, status, sent = _call(port, account.api_key, "POST", "/v1/messages", message)
        assert status == 202, sent  # (the edge hears w0 ready)
        worker = workers.workers[0].proc
        assert worker is not None
        stop_process(worker.pid)
        before = _bytes_waiting(worker.pid)
        answers: list[tuple[float, int, dict]] = []
        thread = threading.Thread(target=lambda: answers.append(_call(
            port, account.api_key, "POST", "/v1/messages", message)), daemon=True)
        thread.start()
        wait_for(lambda: _bytes_waiting(worker.pid) > before, "the submit in w0's socket")
        os.kill(worker.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        thread.join(AT_ONCE_S + 4)
        took = time.monotonic() - killed_at
        assert answers, f"no answer within {took:.1f} s of the kill"
        _, status, body = answers[0]
        assert status == 503 and "may or may not have been accepted" in body["error"]["message"], body
        assert took < AT_ONCE_S, took
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        workers.stop()
