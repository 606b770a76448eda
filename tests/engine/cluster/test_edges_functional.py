"""``smsroute run --workers 1 --edges 2``: the customer API served by two HTTP edge processes on one port.

Through real sockets: both edges take connections on the same port; a submit without an Idempotency-Key
is served by an edge (straight to the account's worker) and one with a key, like every other route, by
the core behind them - with the client's real address in the core's request log; the rate limit of an
API key is one count however many edges serve it; an edge killed with SIGKILL is restarted, and every
message it acknowledged is still delivered and billed once.
"""

from __future__ import annotations

import os
import re
import signal
import threading

import pytest

from engine.cluster.edge_engine import LeasedLimiter
from engine.http.ratelimit import Lease
from tests.door import lag_never_sheds_config
from tests.engine.cli_support import Running
from tests.engine.cluster.support import Later
from tests.engine.cluster.test_run_workers_functional import _alive, _children, _kill_left
from tests.engine.http.conftest import Client
from tests.waiting import wait_for

pytestmark = pytest.mark.functional

FINAL = ("delivered", "failed", "rejected", "expired")


def _start(tmp_path, extra: tuple[str, ...] = ()) -> tuple[Running, Client, Client, set[int]]:
    data = tmp_path / "data"
    if "--config" not in extra:  # (a test's own config carries LAG_NEVER_SHEDS_TOML itself)
        extra = ("--config", lag_never_sheds_config(tmp_path), *extra)
    run = Running("run", "--workers", "1", "--edges", "2", "--data-dir", str(data),
                  "--customer-port", "0", "--control-port", "0", *extra)
    run.wait_for_line("smsroute running:", 90)
    customer = int(re.search(r":(\d+)/v1", run.wait_for_line("customer API:")).group(1))
    control = int(re.search(r":(\d+)/$", run.wait_for_line("control port:")).group(1))
    token = (data / "operator.token").read_text().strip()
    return run, Client(customer), Client(control, token), _children(run.proc.pid)


def _account(ops: Client) -> dict:
    status, _, acct = ops.request("POST", "/v1/accounts", {"email": "edge@example.com"})
    assert status == 201, acct
    ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                {"usd": "100.00", "chain": "tron", "tx_hash": "0xedge", "from_address": "TXYZ"})
    ops.request("POST", f"/v1/accounts/{acct['id']}/senders", {"sender": "ACME"})
    return acct


def test_two_edges_share_the_port_serve_submits_and_forward_the_rest_to_the_core(tmp_path):
    run, api, ops, children = _start(tmp_path)
    try:
        with run:
            assert len(children) == 4  # a worker, two edges, nats-server
            acct = _account(ops)
            api.token = acct["api_key"]
            sent = []
            for i in range(20):  # a fresh connection each: the kernel spreads them over both edges
                status, headers, body = api.request(
                    "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME", "body": f"e{i}"})
                assert status == 202, body
                sent.append(body["id"])
            status, _, body = api.request(
                "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME", "body": "once"},
                headers={"Idempotency-Key": "edge-key-1"})
            assert status == 202, body
            status, headers, again = api.request(
                "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME", "body": "once"},
                headers={"Idempotency-Key": "edge-key-1"})
            assert (status, again["id"]) == (202, body["id"])  # replayed by the core, whatever edge
            assert headers.get("Idempotent-Replayed") == "true"

            def all_final() -> bool:
                return all(api.message_status(mid) in FINAL for mid in sent)

            wait_for(all_final, "every message final, read through the edges", 30)
            status, _, bal = api.request("GET", "/v1/balance")
            status, _, msgs = api.request("GET", "/v1/messages?limit=200")
            charged = sum(m["price_micro_usd"] - m.get("refunded_micro_usd", 0)
                          for m in msgs["messages"])
            assert bal["balance_micro_usd"] == 100_000_000 - charged
            # the core logged the forwarded requests with the client's address, not the edge's
            status, _, stats = ops.request("GET", "/v1/stats")
            assert {w["node"] for w in stats["workers"]} == {"w0", "e0", "e1"}
            other = Client(api.port, acct["api_key"], source="127.0.0.7")  # another client address
            assert other.request("GET", "/v1/balance")[0] == 200
            assert run.stop(60) == 0
        wait_for(lambda: not any(_alive(p) for p in children), "every process gone", 10)
        # the core logged the request it was forwarded with the client's address, not the edge's
        from engine.http.requestlog import RequestLog
        from engine.http.store import open_http_env

        env = open_http_env(tmp_path / "data")
        try:
            balance = [e for e in RequestLog(env).entries() if e.endpoint == "GET /v1/balance"]
        finally:
            env.close()
        assert "127.0.0.7" in {e.source_ip for e in balance}
    finally:
        _kill_left(children)


def test_an_edge_killed_with_sigkill_is_restarted_and_what_it_acknowledged_is_delivered(tmp_path):
    run, api, ops, children = _start(tmp_path)
    try:
        with run:
            acct = _account(ops)
            api.token = acct["api_key"]
            acknowledged: list[str] = []
            stop = threading.Event()

            def load() -> None:
                while not stop.is_set():
                    try:
                        status, _, body = api.request(
                            "POST", "/v1/messages", {"to": "+4915112345678", "from": "ACME",
                                                     "body": "load"})
                    except OSError:  # the connection went with the edge: not acknowledged
                        continue
                    if status == 202:
                        acknowledged.append(body["id"])

            loader = threading.Thread(target=load)
            loader.start()
            wait_for(lambda: len(acknowledged) >= 30, "traffic before the kill", 30)
            status, _, stats = ops.request("GET", "/v1/stats")
            edge = next(w for w in stats["workers"] if w["node"] == "e0")
            os.kill(edge["pid"], signal.SIGKILL)
            n = len(acknowledged)
            wait_for(lambda: len(acknowledged) >= n + 30, "traffic after the kill", 30)

            def restarted() -> bool:
                workers = ops.request("GET", "/v1/stats")[2]["workers"]
                e0 = next(w for w in workers if w["node"] == "e0")
                return e0["alive"] and e0["restarts"] >= 1

            wait_for(restarted, "the edge restarted", 30)
            stop.set()
            loader.join(30)
            wait_for(lambda: all(api.message_status(mid) in FINAL for mid in acknowledged),
                     "every acknowledged message final", 60)
            assert run.stop(60) == 0
            # SIGTERM stopped the restarted edge too (not among the children seen at start-up)
            wait_for(lambda: not run.leftovers(), "every process of the run gone", 10)
    finally:
        _kill_left(children | _children(run.proc.pid) if run.proc.poll() is None else children)


class _FakeCore:
    """The core's count for ``LeasedLimiter``: grants ``budget`` tokens in all."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.settings = type("S", (), {"http": type("H", (), {"rate_limit_burst": budget,
                                                              "rate_limit_per_second": 1e-9})})()

    def lease_block(self, key: str, n: int, give_back: list, split: int, held: int) -> Lease:
        """(a core of the previous version: no stamp, so nothing is given back)"""
        granted = min(n, self.budget)
        self.budget -= granted
        return Lease(granted, 0.0 if granted or not n else 1.0, 0.0)


def test_edges_leasing_from_one_count_never_allow_much_more_than_it_grants():
    core, pool = _FakeCore(budget=100), Later()
    edges = [LeasedLimiter(core, pool, lease=10) for _ in range(3)]
    allowed = 0
    for _ in range(200):
        allowed += sum(e.check("k").allowed for e in edges)
        pool.run()
    # each edge may run a first block (lease=10) ahead of the count once; everything else was granted
    assert 100 <= allowed <= 100 + 10 * len(edges)
    assert not any(e.check("k").allowed for e in edges)


def test_requests_arriving_together_on_a_new_key_are_not_refused_while_its_first_lease_is_fetched():
    core, pool = _FakeCore(budget=1_000_000), Later()
    edge = LeasedLimiter(core, pool, lease=20)
    first = [edge.check("k").allowed for _ in range(32)]  # 32 connections at once, no lease back yet
    assert first[:20] == [True] * 20  # a whole first block on credit (before: only the first request)
    assert not any(first[20:])
    pool.run()
    assert edge.check("k").allowed
    for _ in range(5):  # once leased, a dry key runs only CREDIT requests ahead of the count
        while edge.check("k").allowed:
            pass
        assert edge._tokens["k"] == -LeasedLimiter.CREDIT
        pool.run()


def test_a_busy_key_far_below_its_limit_is_not_refused_once_its_edge_leases_bigger_blocks():
    # the requests of one lease round trip outrun a block of 10: without bigger blocks nearly two thirds
    # of them would be refused (429) although the key's limit is nowhere near
    core, pool = _FakeCore(budget=1_000_000), Later()
    edge = LeasedLimiter(core, pool, lease=10, max_lease=1000)
    refused_late = 0
    for i in range(3000):
        allowed = edge.check("k").allowed
        if i >= 1000:
            refused_late += not allowed
        if i % 30 == 29:  # a lease comes back after 30 requests
            pool.run()
    assert refused_late == 0
    assert core.budget >= 1_000_000 - 3000 - 1000  # it holds at most a block more than it spent


def test_an_edges_block_falls_back_to_what_the_core_granted_when_that_was_less_than_asked():
    core, pool = _FakeCore(budget=1_000_000), Later()
    asked: list[int] = []
    grant = core.lease_block
    core.lease_block = lambda key, n, *a: (asked.append(n), grant(key, n, *a))[1]
    edge = LeasedLimiter(core, pool, lease=10, max_lease=1000)
    for i in range(1000):  # busy: its blocks grow
        edge.check("k")
        if i % 30 == 29:
            pool.run()
    grown = len(asked)
    assert max(asked) > 10
    core.budget = 3  # the key is at its limit: the next lease is granted less than asked
    for i in range(300):
        edge.check("k")
        if i % 30 == 29:
            pool.run()
    assert len(asked) > grown + 1
    # no more than a first block, and no more than the core last granted: near its limit an edge
    # holds little, so the key's requests on another edge are not refused while this one holds tokens
    assert asked[grown + 1:] == [3] + [1] * (len(asked) - grown - 2)


def test_an_edge_remembers_a_bounded_number_of_keys_and_of_leases_in_flight():
    """Unauthenticated callers are limited per source address: a caller with many addresses (an IPv6
    range) must not grow an edge's tables, nor its queue of leases waiting for the core, without bound."""
    core, pool = _FakeCore(budget=1 << 40), Later()
    edge = LeasedLimiter(core, pool, lease=10, max_keys=1000, max_fetches=50)
    for i in range(20_000):
        edge.check(f"ip:2001:db8::{i:x}")
        if i % 100 == 99:
            assert len(pool.tasks) <= 50  # leases asked of the core, not yet back
            pool.run()
    tables = (edge._tokens, edge._leased, edge._retry_at, edge._block, edge._starved, edge._pending,
              edge._view)
    assert max(len(t) for t in tables) <= 1000
    # a key in use is still counted by the core's grants after all that churn
    spent_before = core.budget
    allowed = 0
    for _ in range(200):
        allowed += edge.check("busy").allowed
        pool.run()
    assert allowed == 200 and core.budget < spent_before
