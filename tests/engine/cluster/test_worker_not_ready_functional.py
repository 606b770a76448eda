"""A submit whose account's worker is not ready is refused at once: 503 ``cluster_unavailable`` with
``Retry-After``, nothing sent, nothing billed - through the customer API's real socket, with real worker
processes and a real nats-server.

Before, the core published it into NATS, where nobody received it (a worker that was not subscribed yet:
starting, or started again after a kill) or nobody acted on it (a stopped worker): the client waited
10-20 s for a 503 saying the message may or may not have been accepted, and a stopped worker that went
on later accepted and billed it all the same. Now the core asks its supervisor (``smsroute run
--workers N``) or, for workers on other hosts (``--role core``), what the workers announce on NATS
(``engine.cluster.presence``) first. The deadlines here are short (hung after 1 s).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.cluster.local import LocalCluster
from engine.cluster.nats_server import free_port
from engine.config import load_settings
from tests.door import LAG_NEVER_SHEDS
from tests.engine.cluster.support import Cluster, funded_accounts
from tests.engine.crash_support import delivering_carriers
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

HUNG_AFTER_S = 1.0
FAST_S = 3.0  # a refusal comes well within this; before, it came after 10-20 s (the unanswered sweep)
MESSAGE = {"to": "+4915112345678", "from": "ACME", "body": "hi"}


def _overrides(hung_after: float = HUNG_AFTER_S) -> dict[str, Any]:
    overrides = delivering_carriers()
    overrides["engine"].update(child_hung_after_seconds=hung_after, child_kill_after_seconds=60.0)
    overrides["http"] = {"customer_port": 0, "control_port": 0, **LAG_NEVER_SHEDS}
    return overrides


def _clients(engine: Engine, api_key: str) -> tuple[Client, Client]:
    return Client(engine.http.customer_port, api_key), Client(engine.http.control_port)


def _balance(api: Client) -> int:
    status, _, body = api.request("GET", "/v1/balance")
    assert status == 200, body
    return body["balance_micro_usd"]


def _readyz_names(ops: Client, name: str) -> bool:
    status, _, body = ops.request("GET", "/readyz")
    return status == 503 and name in body["error"]["message"]


def _refused_at_once(api: Client, key: str) -> None:
    """A single submit and a batch are each refused within ``FAST_S``: 503 ``cluster_unavailable``
    with ``Retry-After``, saying nothing was sent; the account's balance does not move."""
    before = _balance(api)
    for path, body in (("/v1/messages", MESSAGE), ("/v1/messages/batch", {"messages": [MESSAGE] * 3})):
        started = time.monotonic()
        status, headers, answer = api.request("POST", path, body,
                                              headers={"Idempotency-Key": f"{key}{path}"})
        took = time.monotonic() - started
        assert status == 503, answer
        assert took < FAST_S, f"{path} refused after {took:.1f} s"
        assert answer["error"]["code"] == "cluster_unavailable"
        assert "worker holding this account is not ready" in answer["error"]["message"]
        assert "nothing was sent" in answer["error"]["message"]
        assert headers.get("Retry-After") == "1"
    assert _balance(api) == before  # nothing reserved or billed


def _accepted(api: Client, key: str) -> None:
    """Submits are taken again (with the Idempotency-Key of a refused one: it stored nothing)."""
    status, _, sent = api.request("POST", "/v1/messages", MESSAGE,
                                  headers={"Idempotency-Key": f"{key}/v1/messages"})
    assert status == 202, sent
    status, _, batch = api.request("POST", "/v1/messages/batch", {"messages": [MESSAGE] * 3})
    assert status == 200 and batch["accepted"] == 3, batch


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)  # (a failed test leaves no stopped process)


def test_a_submit_for_a_hung_then_killed_and_restarting_worker_is_refused_at_once(tmp_path):
    c = Cluster(tmp_path, workers=1, overrides=_overrides(), http=True)
    try:
        api, ops = _clients(c.engine, c.accounts(1)[0].api_key)
        w = c.cluster.workers[0]
        with _stopped(w.proc.pid):  # hung: connected and subscribed, but it does nothing
            wait_for(lambda: _readyz_names(ops, "worker:w0 (hung)"), "/readyz naming w0 hung", 5)
            _refused_at_once(api, "k1")
        wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "w0 answering again", 5)
        _accepted(api, "k1")

        with c.cluster._lock:  # killed, and the supervisor held off: not restarted yet
            w.proc.kill()
            w.proc.wait(10)
            assert _readyz_names(ops, "worker:w0")
            _refused_at_once(api, "k2")
            c.cluster._spawn(w)  # started again: not subscribed until it says it is ready
            _refused_at_once(api, "k3")
            c.cluster._wait_ready(w, time.monotonic() + 30)
        _accepted(api, "k3")
    finally:
        c.stop()


def test_a_core_refuses_at_once_for_a_worker_on_another_host_that_is_unseen_silent_or_stopping(
        tmp_path):
    """``--role core``: the workers are not this process's children; it knows them by what they
    announce on NATS, and ``/readyz`` names each that is not ready."""
    overrides = _overrides()
    workers = LocalCluster(tmp_path / "cluster", 1, overrides=overrides)  # "another host's" supervisor
    engine = None
    try:
        placement = workers.core_placement()  # (starts the nats-server)
        engine = Engine.start(data_dir=tmp_path / "core", settings=load_settings(None, overrides),
                              placement=placement, http=True)
        api, ops = _clients(engine, funded_accounts(engine, 1)[0].api_key)
        assert _readyz_names(ops, "worker:w0 (not seen)")
        _refused_at_once(api, "k4")

        workers.start_workers()
        wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "the core hearing of w0", 5)
        rows = ops.request("GET", "/v1/stats", token=_op_token(tmp_path / "core"))[2]["workers"]
        assert [(r["node"], r["remote"], r["ready"]) for r in rows] == [("w0", True, True)]
        _accepted(api, "k4")

        w = workers.workers[0]
        with _stopped(w.proc.pid):
            wait_for(lambda: _readyz_names(ops, "worker:w0 (silent)"), "/readyz naming w0 silent", 5)
            _refused_at_once(api, "k5")
        wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "w0 announcing again", 5)
        _accepted(api, "k5")

        with workers._lock:  # a worker told to stop says so: refused at once, not after a silence
            w.proc.send_signal(signal.SIGTERM)
            wait_for(lambda: _readyz_names(ops, "worker:w0 (stopping)"), "w0 saying it stops", 5)
            _refused_at_once(api, "k6")
            w.proc.wait(30)
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        workers.stop()


def _op_token(data: Path) -> str:
    return (data / "operator.token").read_text().strip()


def test_an_http_edge_refuses_at_once_a_submit_for_a_worker_that_was_killed_and_is_restarting(
        tmp_path):
    """An edge hands a submit without an Idempotency-Key straight to the account's worker; it knows the
    workers by their announcements, and the core announces a supervised worker that exited as down (a
    killed worker says nothing itself), so the edge does not wait for a silence either (the default
    10 s here)."""
    overrides = _overrides(hung_after=10.0)
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
        api = Client(port, funded_accounts(engine, 1)[0].api_key)
        ops = Client(engine.http.control_port)
        started = time.monotonic()
        status, _, sent = api.request("POST", "/v1/messages", MESSAGE)
        assert status == 202, sent
        assert time.monotonic() - started < FAST_S

        workers.kill_worker(0)  # the supervisor sees it exit, announces it down, starts it again
        wait_for(lambda: _readyz_names(ops, "worker:w0 (starting)"), "w0 being started again", 5)
        before = _balance(api)
        started = time.monotonic()
        status, headers, answer = api.request("POST", "/v1/messages", MESSAGE)
        assert time.monotonic() - started < FAST_S
        assert (status, answer["error"]["code"]) == (503, "cluster_unavailable"), answer
        assert "nothing was sent" in answer["error"]["message"] and headers.get("Retry-After") == "1"
        assert _balance(api) == before

        wait_for(lambda: ops.request("GET", "/readyz")[0] == 200, "w0 ready again", 30)
        # the edge knows w0 is ready from w0's own announcement, which follows the beat that made the core
        # ready by a NATS hop: until it arrives a submit is still refused at once, nothing sent
        answers = []

        def accepted_through_the_edge() -> bool:
            status, _, sent = api.request("POST", "/v1/messages", MESSAGE)
            answers.append((status, sent))
            return status == 202

        wait_for(accepted_through_the_edge, "a submit through the edge accepted once w0 is back", 10)
        assert all((s, a["error"]["code"]) == (503, "cluster_unavailable") for s, a in answers[:-1]), answers
    finally:
        if engine is not None:
            engine.stop(drain_seconds=0)
        workers.stop()
