"""The edge token of ``smsroute run --workers 1 --edges 1``, through real processes and sockets.

The core believes the client address an HTTP edge forwards (``X-Smsroute-Forwarded-For``) only with the
edge token it gave its edges. That secret must reach the edges and nobody else: not the environment of
any child (the worker, the edge, nats-server - readable in ``/proc/<pid>/environ``, copied into crash
reports), and a restarted edge must still have it.

One cluster serves the module's cluster tests (starting one costs seconds); the restart test runs last
of them.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.cluster.edge import EDGE_TOKEN_HEADER, FORWARDED_FOR
from engine.http.requestlog import RequestLog
from engine.http.store import open_http_env
from tests.door import lag_never_sheds_config
from tests.engine.cli_support import Running
from tests.engine.cluster.test_edges_functional import _account
from tests.engine.cluster.test_run_workers_functional import _alive, _children, _kill_left
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

TOKEN_VARIABLE = b"SMSROUTE_EDGE_TOKEN"
MARK = {"SMSROUTE_TEST_ENV_MARK": "inherited"}  # proves we read the children's real environments
BALANCE = "GET /v1/balance"


@dataclass
class EdgeCluster:
    run: Running
    data: Path
    api: Client  # the public customer port: the edge
    ops: Client  # the control port (the core)
    api_key: str
    children: set[int]
    environment: set[bytes]  # the one the core was started with, ``NAME=value`` each

    def child(self, kind: str) -> int:
        """The pid of the running child whose command line names ``kind`` (worker, edge, nats)."""
        for pid in _children(self.run.proc.pid):
            if _alive(pid) and kind.encode() in _cmdline(pid):
                self.children.add(pid)
                return pid
        raise AssertionError(f"no {kind} child of the core")

    def core_port(self) -> int:
        """The core's own (loopback) customer port: the edge is told it with ``--core-url``."""
        argv = _cmdline(self.child("engine.cluster.edge")).split(b"\0")
        url = argv[argv.index(b"--core-url") + 1].decode()
        return int(url.rsplit(":", 1)[1])

    def logged_sources(self) -> list[str]:
        """The source addresses the core's request log holds for ``GET /v1/balance`` (read from
        this process: LMDB allows readers beside the core's writer)."""
        env = open_http_env(self.data)
        try:
            return [e.source_ip for e in RequestLog(env).entries() if e.endpoint == BALANCE]
        finally:
            env.close()


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read()


def _environ(pid: int) -> set[bytes]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return {entry for entry in fh.read().split(b"\0") if entry}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeCluster]:
    data = tmp_path_factory.mktemp("edge-token") / "data"
    environment = {f"{k}={v}".encode() for k, v in {**os.environ, **MARK}.items()}  # as Running gives it
    run = Running("run", "--workers", "1", "--edges", "1", "--data-dir", str(data),
                  "--customer-port", "0", "--control-port", "0",
                  "--config", lag_never_sheds_config(data.parent), env=MARK)
    children: set[int] = set()
    try:
        with run:
            run.wait_for_line("smsroute running:", 90)
            customer = int(re.search(r":(\d+)/v1", run.wait_for_line("customer API:")).group(1))
            control = int(re.search(r":(\d+)/$", run.wait_for_line("control port:")).group(1))
            children |= _children(run.proc.pid)
            ops = Client(control, (data / "operator.token").read_text().strip())
            acct = _account(ops)
            yield EdgeCluster(run, data, Client(customer, acct["api_key"]), ops, acct["api_key"],
                              children, environment)
            assert run.stop(60) == 0
    finally:
        _kill_left(children | (_children(run.proc.pid) if run.proc.poll() is None else set()))


def _assert_no_token_in_environment(cluster: EdgeCluster, pid: int) -> None:
    """Neither the variable nor its value: everything in the child's environment came from the one
    the core was started with (the token is made inside the core, so it cannot be among them)."""
    environ, given = _environ(pid), cluster.environment
    assert b"SMSROUTE_TEST_ENV_MARK=inherited" in environ  # really the child's inherited environment
    # the messages name variables, never values: a failure must not print the secret either
    assert not any(e.startswith(TOKEN_VARIABLE + b"=") for e in environ), f"{TOKEN_VARIABLE!r} in {pid}"
    assert environ <= given, sorted(e.split(b"=", 1)[0] for e in environ - given)


def test_no_child_carries_the_edge_token_in_its_environment(cluster: EdgeCluster) -> None:
    kinds = ("engine.cluster.worker", "engine.cluster.edge", "nats-server")
    pids = {kind: cluster.child(kind) for kind in kinds}
    assert len(set(pids.values())) == 3
    for pid in pids.values():
        _assert_no_token_in_environment(cluster, pid)


def test_the_core_believes_the_client_address_its_edge_forwards(cluster: EdgeCluster) -> None:
    client = Client(cluster.api.port, cluster.api_key, source="127.0.0.7")
    assert client.request("GET", "/v1/balance")[0] == 200  # served by the core, forwarded by the edge
    # a client's own forwarding header does not survive the edge: the edge writes the address it saw
    spoofer = Client(cluster.api.port, cluster.api_key, source="127.0.0.10")
    status = spoofer.request("GET", "/v1/balance", headers={FORWARDED_FOR: "10.9.9.9",
                                                            EDGE_TOKEN_HEADER: "0" * 32})[0]
    assert status == 200
    sources = wait_for(lambda: (s := cluster.logged_sources()) and
                       {"127.0.0.7", "127.0.0.10"} <= set(s) and s,
                       "both forwarded requests in the core's request log", 15)
    assert "10.9.9.9" not in sources


def _raw_get(port: int, path: str, headers: list[tuple[str, str]], source: str) -> int:
    """A GET with exactly these header lines (repeated names and any letter case kept)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.putrequest("GET", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_the_edge_forwards_repeated_headers_as_sent_and_its_own_replace_any_case(
        cluster: EdgeCluster) -> None:
    """The edge copied headers into a dict: of two Authorization headers the last silently won at the
    core (which refuses two with 400). The edge's own forwarding header must still replace a client's
    of any letter case (it did already; kept so the multidict does not change that)."""
    bearer = f"Bearer {cluster.api_key}"
    twice = [("Authorization", bearer), ("Authorization", "Bearer sk_live_nope")]
    # (statuses compared apart: a failing assert must not print the key)
    statuses = [_raw_get(cluster.api.port, "/v1/balance", headers, "127.0.0.1")
                for headers in (twice, twice[::-1])]  # GET /v1/balance is forwarded to the core
    assert statuses == [400, 400]
    spoofed = [(FORWARDED_FOR.lower(), "10.9.9.9"), ("Authorization", bearer)]
    status = _raw_get(cluster.api.port, "/v1/balance", spoofed, "127.0.0.11")
    assert status == 200
    sources = wait_for(lambda: (s := cluster.logged_sources()) and "127.0.0.11" in s and s,
                       "the forwarded request in the core's request log", 15)
    assert "10.9.9.9" not in sources


def test_a_forwarded_address_without_the_right_token_is_not_believed(cluster: EdgeCluster) -> None:
    direct = Client(cluster.core_port(), cluster.api_key, source="127.0.0.8")  # not via the edge
    attempts = ({FORWARDED_FOR: "10.9.9.1"},  # no token
                {FORWARDED_FOR: "10.9.9.2", EDGE_TOKEN_HEADER: ""},  # an empty one
                {FORWARDED_FOR: "10.9.9.3", EDGE_TOKEN_HEADER: "0" * 32})  # a wrong one
    for headers in attempts:
        assert direct.request("GET", "/v1/balance", headers=headers)[0] == 200
    sources = wait_for(lambda: (s := cluster.logged_sources()) and s.count("127.0.0.8") >= 3 and s,
                       "the three direct requests in the core's request log", 15)
    assert not [s for s in sources if s.startswith("10.9.9.")]  # logged as who really connected


def test_an_edge_restarted_after_sigkill_still_has_the_token_and_no_environment_copy(
        cluster: EdgeCluster) -> None:
    old = cluster.child("engine.cluster.edge")
    os.kill(old, signal.SIGKILL)

    def restarted() -> bool:
        e0 = next(w for w in cluster.ops.request("GET", "/v1/stats")[2]["workers"]
                  if w["node"] == "e0")
        return e0["alive"] and e0["restarts"] >= 1 and e0["pid"] != old

    wait_for(restarted, "the edge restarted", 30)
    client = Client(cluster.api.port, cluster.api_key, source="127.0.0.9")

    def served() -> bool:
        try:
            return client.request("GET", "/v1/balance")[0] == 200
        except OSError:  # the new edge does not listen yet
            return False

    wait_for(served, "a request through the restarted edge", 30)
    wait_for(lambda: "127.0.0.9" in cluster.logged_sources(),
             "the restarted edge's forwarded address believed by the core", 15)
    _assert_no_token_in_environment(cluster, cluster.child("engine.cluster.edge"))


def test_an_edge_given_no_token_on_its_stdin_refuses_to_start(tmp_path: Path) -> None:
    # it would forward requests the core cannot tell from a client's: better not to serve at all
    proc = subprocess.run([sys.executable, "-m", "engine.cluster.edge", "--index", "0", "--workers",
                           "1", "--nats", "nats://127.0.0.1:1", "--data-dir", str(tmp_path / "e0"),
                           "--port", "0", "--core-url", "http://127.0.0.1:1"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no edge token on stdin" in proc.stderr
