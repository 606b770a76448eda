"""Rate limits of one API key across two HTTP edges (``smsroute run --workers 1 --edges 2``), through real
sockets, with a small burst (100) and a slow refill (1 request/s), so the key's counts are the test's.

The kernel spreads connections over the edges (``SO_REUSEPORT``); the test keeps connections alive and
learns which edge accepted each one (the edge process holding the server side of the socket, from
``/proc``), so it can talk to each edge on purpose.

* ``RateLimit-Remaining`` / ``RateLimit-Reset`` on an edge-served submit mean what the one-process engine's
  mean (requests still allowed now / seconds until the bucket is full again), counted over both edges:
  a fresh key says 99 and 1, not 0 and 1.
* Sequential submits well below the limit, alternating over both edges, are all accepted (one edge
  used to lease most of the burst and the other refused the 4th submit); the burst still holds: going
  on quickly gets 429 with ``Retry-After`` within about the burst.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator

import pytest

from tests.door import LAG_NEVER_SHEDS_TOML
from tests.engine.cluster.test_edges_functional import _start
from tests.engine.cluster.test_run_workers_functional import _alive, _children, _kill_left
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

BURST = 100
RATE = 1.0  # requests per second: T = 1 s
SUBMIT = {"to": "+4915112345678", "from": "ACME", "body": "limits"}


class EdgeLink:
    """One kept-alive connection to the customer port, and the edge (``e0``/``e1``) that accepted it."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.port = port
        self.edge = ""

    def request(self, method: str, path: str, body=None, token: str | None = None
                ) -> tuple[int, dict[str, str], object]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=None if body is None else json.dumps(body).encode(),
                          headers=headers)
        resp = self.conn.getresponse()
        payload = resp.read()
        got = dict(resp.getheaders())
        parsed = json.loads(payload) if payload and "json" in got.get("Content-Type", "") else payload
        return resp.status, got, parsed

    def submit(self, token: str) -> tuple[int, dict[str, str]]:
        status, headers, _ = self.request("POST", "/v1/messages", SUBMIT, token)
        return status, headers

    def close(self) -> None:
        self.conn.close()


def _server_socket_inode(port: int, client_port: int) -> str | None:
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
                return fields[9]
    return None


def _holder(port: int, client_port: int, edges: dict[str, int]) -> str | None:
    """The edge whose process holds the server side of the connection from ``client_port``."""
    inode = _server_socket_inode(port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for node, pid in edges.items():
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return node
            except OSError:
                continue
    return None


def _link_to_each_edge(port: int, edges: dict[str, int]) -> dict[str, EdgeLink]:
    links: dict[str, EdgeLink] = {}
    for _ in range(64):
        link = EdgeLink(port)
        status, _, _ = link.request("GET", "/v1/openapi.json")  # accepted by now; costs no key token
        assert status == 200
        client_port = link.conn.sock.getsockname()[1]
        node = wait_for(lambda cp=client_port: _holder(port, cp, edges), "the edge holding a connection",
                        5)
        if node in links:
            link.close()
        else:
            link.edge = node
            links[node] = link
        if len(links) == len(edges):
            return links
    raise AssertionError("the kernel sent 64 connections to one edge")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[Client, Client, dict[str, EdgeLink]]]:
    tmp = tmp_path_factory.mktemp("edge-limits")
    config = tmp / "limits.toml"
    config.write_text(f"[http]\nrate_limit_burst = {BURST}\nrate_limit_per_second = {RATE}\n"
                      + LAG_NEVER_SHEDS_TOML)
    run, api, ops, children = _start(tmp, ("--config", str(config)))
    links: dict[str, EdgeLink] = {}
    try:
        with run:
            workers = ops.request("GET", "/v1/stats")[2]["workers"]
            edges = {w["node"]: w["pid"] for w in workers if w["node"].startswith("e")}
            assert len(edges) == 2
            links = _link_to_each_edge(api.port, edges)
            yield api, ops, links
            for link in links.values():
                link.close()
            assert run.stop(60) == 0
        wait_for(lambda: not any(_alive(p) for p in children), "every process gone", 10)
    finally:
        for link in links.values():
            link.close()
        _kill_left(children | (_children(run.proc.pid) if run.proc.poll() is None else set()))


_accounts = iter(range(1_000))


def _fresh_key(ops: Client) -> str:
    """A new account's API key: a key no edge nor the core has counted anything for."""
    status, _, acct = ops.request("POST", "/v1/accounts", {"email": f"lim{next(_accounts)}@example.com"})
    assert status == 201, acct
    ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                {"usd": "100.00", "chain": "tron", "tx_hash": f"0x{acct['id']}", "from_address": "TXYZ"})
    ops.request("POST", f"/v1/accounts/{acct['id']}/senders", {"sender": "ACME"})
    return acct["api_key"]


def test_remaining_and_reset_on_an_edge_count_the_key_over_both_edges_like_one_process(cluster):
    api, ops, links = cluster
    a, b = links["e0"], links["e1"]
    key = _fresh_key(ops)
    started = time.monotonic()

    status, headers = a.submit(key)
    assert status == 202
    # what the one-process engine answers a key's first request (it said 0 and 1 on an edge)
    assert headers["RateLimit-Limit"] == str(BURST)
    assert headers["RateLimit-Remaining"] == str(BURST - 1)
    assert headers["RateLimit-Reset"] == "1"

    for _ in range(20):
        assert b.submit(key)[0] == 202
    served = 21

    # Once edge A's count has come back from the core (its next lease, started by these requests),
    # A's answer counts B's requests too: Remaining is at most what one process would say (the
    # burst less every request, refilled since) and less by no more than B's unspent tokens (at most
    # the burst / 2 edges); Reset is at least the one-process reset (every request back) and at most
    # the core's own count, which a forwarded request (a read, answered by the core) reports.
    def a_counts_b() -> tuple[int, int] | None:
        nonlocal served
        status, headers = a.submit(key)
        assert status == 202
        served += 1
        remaining, reset = int(headers["RateLimit-Remaining"]), int(headers["RateLimit-Reset"])
        elapsed = time.monotonic() - started
        one_process_reset = served / RATE - elapsed
        if reset >= one_process_reset - 1 and remaining <= BURST - served + RATE * elapsed + 1:
            return remaining, reset
        return None

    remaining, reset = wait_for(a_counts_b, "edge A's headers count edge B's requests", 5)
    elapsed = time.monotonic() - started
    assert remaining >= BURST - served - BURST // 2 - 1
    status, core_headers, _ = a.request("GET", "/v1/balance", token=key)  # forwarded: the core's count
    assert status == 200
    assert reset <= int(core_headers["RateLimit-Reset"])
    assert reset <= BURST / RATE
    assert elapsed < 10


def test_sequential_submits_alternating_over_both_edges_are_accepted_and_the_burst_still_holds(cluster):
    api, ops, links = cluster
    a, b = links["e0"], links["e1"]
    key = _fresh_key(ops)
    started = time.monotonic()
    answers = [(a if i % 2 == 0 else b).submit(key)[0] for i in range(60)]  # well below the burst
    assert answers == [202] * 60
    accepted, refused = 60, None
    for i in range(2 * BURST):  # on, quickly: the burst must still hold
        status, headers = (a if i % 2 == 0 else b).submit(key)
        if status == 429:
            refused = headers
            break
        assert status == 202
        accepted += 1
    assert refused is not None, "no 429 after twice the burst"
    assert int(refused["Retry-After"]) >= 1
    assert refused["RateLimit-Remaining"] == "0"
    # every accepted request was leased from the core's one count (burst + refill since), but for the
    # one request each edge may run ahead of it while a lease is on its way
    assert accepted <= BURST + RATE * (time.monotonic() - started) + 2
