"""An HTTP edge's leased tokens lapse after a lifetime and go back to the core (``LeasedLimiter``).

What a user relies on, with E edges serving one API key: requests are admitted within the bound the README
states against the one-process limit, in any window of time; a key's tokens an edge holds unspent come
back for its requests on another edge (no 429 below the limit for good); tokens leased long ago are not
spent on top of a bucket the core has filled again since. And an edge still works with a core of the
previous version (no give-back there).
"""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import messages as m
from engine.cluster.edge_engine import EdgeEngine, LeasedLimiter, lease_lifetime
from engine.cluster.placement import Placement
from engine.config import load_settings
from engine.http.ratelimit import Gcra, Grant, Lease
from tests.engine.cluster.support import Later


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _core(gcra: Gcra, burst: int, rate: float) -> object:
    """The core's count as an edge's engine sees it (``EdgeEngine.lease_block``)."""
    http = type("H", (), {"rate_limit_burst": burst, "rate_limit_per_second": rate})

    class _Engine:
        settings = type("S", (), {"http": http})

        def lease_block(self, key: str, n: int, give_back: list, split: int, held: int) -> Grant:
            return gcra.lease_block(key, n, give_back=give_back, split=split, held=held)

    return _Engine()


def _edges(n: int, rate: float, burst: int, clock: Clock, **kw) -> tuple[Gcra, list, list[Later]]:
    gcra = Gcra(rate, burst, clock=clock)
    pools = [Later() for _ in range(n)]
    edges = [LeasedLimiter(_core(gcra, burst, rate), pools[i], edges=n, clock=clock, **kw)
             for i in range(n)]
    return gcra, edges, pools


RATE = 16.0  # a binary fraction: the clock's sums are exact


@settings(max_examples=500, deadline=None)
@given(st.integers(2, 3), st.integers(4, 64), st.integers(1, 20),
       st.lists(st.tuples(st.sampled_from(["reqs", "served", "run", "tick", "sweep"]),
                          st.integers(0, 2), st.integers(1, 40)), min_size=1, max_size=40))
def test_admissions_in_any_window_stay_within_the_stated_bound(n, burst, lease, ops):
    """README: with E edges, at most burst + floor(w * rate) + min(burst, ceil(lifetime * rate)) + E
    requests of a key in any window of w seconds (one process: burst + floor(w * rate)), plus those an
    edge let through on its first block's credit (before its first lease for the key came back); over
    any interleaving of requests (``reqs``: k at once on an edge, its leases still on their way;
    ``served``: k with each lease back before the next), leases and give-backs coming back late,
    lapses and time passing."""
    clock = Clock()
    _, edges, pools = _edges(n, RATE, burst, clock, lease=lease)
    admitted: dict[float, int] = {}  # per moment, the requests admitted (but on a first block's credit)
    for op, i, k in ops:
        i %= n
        if op == "tick":
            clock.t += k * k / 64  # from 1/64 s to 25 s: within a lifetime, or long after
        elif op == "run":
            pools[i].run()
        elif op == "sweep":
            edges[i].sweep()
        else:
            for _ in range(k):
                first_block = "k" not in edges[i]._leased
                if edges[i].check("k").allowed and not first_block:
                    admitted[clock.t] = admitted.get(clock.t, 0) + 1
                if op == "served":
                    pools[i].run()
    lifetime = lease_lifetime(burst, RATE)
    late = min(burst, math.ceil(lifetime * RATE))
    moments = sorted(admitted)  # (the most requests in a window: from one moment's first to another's last)
    for a, start in enumerate(moments):
        count = 0
        for end in moments[a:]:
            count += admitted[end]
            assert count <= burst + math.floor((end - start) * RATE) + late + n, (start, end)


def test_an_edges_unspent_tokens_come_back_for_the_keys_requests_on_another_edge():
    """Burst 40 over two edges, no refill to speak of: edge B served one request and holds the rest
    of its block; the client's connections now all land on edge A. Before, A was refused from its
    21st request on for as long as B held its 19 tokens (for ever here: B never spent them); now they
    lapse after B's lease's lifetime, go back to the core, and A is admitted up to the limit."""
    clock = Clock()
    _, (a, b), (pa, pb) = _edges(2, 1e-6, 40, clock)
    assert b.check("k").allowed
    pb.run()
    assert b._tokens["k"] == 19

    def on_a(requests: int) -> int:
        allowed = 0
        for _ in range(requests):
            allowed += a.check("k").allowed
            pa.run()
        return allowed

    assert on_a(30) == 20  # all the core had left: B holds the rest
    clock.t += b.lifetime
    b.sweep()  # (the edge's own timer: B has no request for the key any more)
    pb.run()  # B's 19 tokens go back with a lease of nothing
    assert b._tokens["k"] == 0
    clock.t += a.lifetime  # A's retry after its refusal
    assert on_a(30) == 19  # the limit: 40 requests in all, B's 1 and A's 39


def test_tokens_leased_long_ago_are_not_spent_on_top_of_a_refilled_bucket():
    """Edge A leased a block 20 s ago and spent one token; the core's bucket has long been full again.
    A client's burst now gets what one process allows (40) and the requests on credit (one per edge),
    no more: before, A's 19 old tokens came on top (59 at once)."""
    clock = Clock()
    _, (a, b), (pa, pb) = _edges(2, 4.0, 40, clock)
    assert a.check("k").allowed
    pa.run()
    assert b.check("k").allowed
    pb.run()
    clock.t += 20.0
    allowed = 0
    for i in range(100):  # all at once (no time passes), alternating between the edges
        edge, pool = (a, pa) if i % 2 else (b, pb)
        allowed += edge.check("k").allowed
        pool.run()
    assert 40 <= allowed <= 40 + 2


def _old_core_edge(gcra: Gcra) -> tuple[EdgeEngine, list[str]]:
    """An ``EdgeEngine`` whose core answers like the previous version: no ``lease_block`` query
    (``internal_error``, "ValueError", as its ``EdgeQueries`` answers an unknown kind), ``lease`` as
    ``[granted, retry_after_s, reset_s]``."""
    settings_ = load_settings(None, {"http": {"rate_limit_burst": 100, "rate_limit_per_second": 1e-6}})
    engine = EdgeEngine(settings_, Placement(node="e0", runs_core=False, runs_pops=False,
                                             workers=("w0",), nats=("nats://127.0.0.1:1",)),
                        Path("/nonexistent"))
    asked: list[str] = []

    class _Transport:
        def request(self, node: str, payload: bytes, timeout: float) -> bytes:
            q = m.decode(payload)
            asked.append(q.kind)
            if q.kind != "lease":
                return m.encode(m.ShardReply(False, "ValueError", "internal_error"))
            key, n = q.args
            return m.encode(m.ShardReply(True, list(gcra.lease(key, n)), ""))

    engine.transport = _Transport()
    return engine, asked


def test_a_new_edge_works_with_a_core_of_the_previous_version():
    clock = Clock()
    gcra = Gcra(1e-6, 100, clock=clock)
    engine, asked = _old_core_edge(gcra)
    answer = engine.lease_block("k", 20, [], 2, 0)
    assert type(answer) is Lease and answer.granted == 20
    assert asked == ["lease_block", "lease"]
    engine.lease_block("k", 5, [], 2, 0)
    assert asked[2:] == ["lease"]  # not asked again for a while (it would fail the same way)
    pool = Later()
    edge = LeasedLimiter(engine, pool, edges=2, clock=clock)
    assert edge.check("k").allowed
    pool.run()
    assert edge._tokens["k"] == 19
    clock.t += edge.lifetime
    assert edge.check("k").allowed  # its tokens lapsed: on credit, a new block asked
    pool.run()
    assert edge._tokens["k"] == 19 and not edge._give_back  # that core's answers have no stamp:
    assert gcra.peek("k").remaining == 100 - 25 - 40  # the lapsed 19 stay counted until it refills


def test_a_key_used_once_a_second_costs_one_lease_per_request_and_keeps_its_small_block():
    """The defaults (burst 2,000 at 1,000/s: a lifetime of 0.25 s): a key used once a second finds its
    block lapsed at every request. That lease is not a key running dry (its block grew fourfold at every
    request, 20 -> 80 -> 320, and the edge asked twice), and 19 lapsed tokens are not worth a round
    trip of their own: they go back with the next lease. One lease per request, in the background."""
    clock = Clock()
    gcra = Gcra(1000.0, 2000, clock=clock)
    asked: list[int] = []
    core = _core(gcra, 2000, 1000.0)
    lease_block = core.lease_block
    core.lease_block = lambda key, n, *rest: (asked.append(n), lease_block(key, n, *rest))[1]
    pool = Later()
    edge = LeasedLimiter(core, pool, edges=2, clock=clock)
    for _ in range(10):
        assert edge.check("k").allowed
        pool.run()
        for _ in range(4):
            clock.t += 0.25
            edge.sweep()
            pool.run()
    assert asked == [20] * 10


class _Slow:
    """An edge's leases, each back after a random number of the key's later requests (a lease slower
    than the next request), or at once when a refused request waits for it."""

    def __init__(self, delays) -> None:
        self.delays, self.tasks = delays, []

    def submit(self, fn, *args) -> None:
        self.tasks.append([self.delays.draw(st.integers(0, 6)), fn, args])

    def step(self) -> None:
        due = [t for t in self.tasks if t[0] <= 0]
        self.tasks = [t for t in self.tasks if t[0] > 0]
        for t in self.tasks:
            t[0] -= 1
        for _, fn, args in due:
            fn(*args)

    def run(self) -> None:
        tasks, self.tasks = self.tasks, []
        for _, fn, args in tasks:
            fn(*args)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 3), st.integers(4, 64), st.data())
def test_a_slow_lease_refuses_no_request_while_the_core_has_room(n, burst, data):
    """A burst of a key's requests on random edges, each edge's leases back only after a random number
    of later requests: a request refused while its edge's lease is on its way waits for it and is
    checked again (``recheck_after_lease``; the lease is back within the wait here). No request is
    refused while the core still has room (a 429 below the limit): only once every token is spent or
    held unspent by another edge (README: back within a lifetime). Before, up to 12 of a burst of 40
    were refused with the core's room left."""
    clock = Clock()
    gcra = Gcra(1e-6, burst, clock=clock)  # no refill, and no time passes: no lapse
    pools = [_Slow(data) for _ in range(n)]
    edges = [LeasedLimiter(_core(gcra, burst, 1e-6), pools[i], edges=n, clock=clock) for i in range(n)]
    admitted = 0
    for _ in range(data.draw(st.integers(1, 2 * burst))):
        i = data.draw(st.integers(0, n - 1))
        allowed = edges[i].check("k").allowed
        while not allowed and edges[i].lease_on_its_way("k"):
            pools[i].run()  # (the lease comes back while the request waits for it)
            allowed = edges[i].check("k").allowed
        admitted += allowed
        if not allowed:
            assert gcra.peek("k").remaining == 0, "refused while the core had room"
            assert edges[i]._tokens.get("k", 0) <= 0
            if admitted < burst:  # (refused early: the rest is held by other edges, unspent)
                assert sum(max(0, e._tokens.get("k", 0)) for e in edges) >= burst - admitted
        for pool in pools:
            pool.step()


def test_a_refused_flood_asks_the_core_once_per_retry_time_not_once_per_request():
    """A key over its limit on an edge, refused 200 times in 0.2 s, each lease back before the next
    request: the core is asked again only at the retry time it gave (at least 50 ms, at most a
    lifetime), not on each refused request - before, one lease per refused request (200)."""
    clock = Clock()
    gcra, (a, _), (pa, _) = _edges(2, 1.0, 40, clock)
    asked: list[int] = []
    lease_block = a.engine.lease_block
    a.engine.lease_block = lambda key, n, *rest: (asked.append(n), lease_block(key, n, *rest))[1]
    gcra.lease_block("k", 40)  # (the key's whole burst, spent on other edges)
    refused = 0
    for _ in range(200):
        refused += not a.check("k").allowed
        pa.run()
        clock.t += 0.001
    assert refused >= 198  # (one on credit)
    assert 1 <= len(asked) <= math.ceil(0.2 / 0.05) + 1, asked
