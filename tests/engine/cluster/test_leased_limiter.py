"""``LeasedLimiter`` (an HTTP edge's rate limiter) against the core's real ``Gcra``, on a test clock.

How the burst is shared: an edge never holds more than burst / edges of a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.cluster.edge_engine import LeasedLimiter
from engine.http.ratelimit import Gcra


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Core:
    """The core's one count (a real ``Gcra``) and what it granted: ``total`` tokens in all, and, per
    edge, the total as of the edge's latest answer (what that edge's view already holds)."""

    gcra: Gcra
    total: int = 0
    seen_by: dict[int, int] = field(default_factory=dict)
    asked: dict[int, list[int]] = field(default_factory=dict)

    def for_edge(self, index: int, rate: float, burst: int) -> object:
        core = self
        http = type("H", (), {"rate_limit_burst": burst, "rate_limit_per_second": rate})

        class _Engine:
            settings = type("S", (), {"http": http})

            def lease(self, key: str, n: int) -> tuple[int, float]:
                answer = core.gcra.lease(key, n)
                core.total += answer[0]
                core.seen_by[index] = core.total
                core.asked.setdefault(index, []).append(n)
                return answer

        return _Engine()


class Later:
    """An executor whose leases run when the test says (a real one runs them on its threads)."""

    def __init__(self) -> None:
        self.tasks: list = []

    def submit(self, fn, *args):
        self.tasks.append((fn, args))

    def run(self) -> None:
        tasks, self.tasks = self.tasks, []
        for fn, args in tasks:
            fn(*args)


def _edges(n: int, rate: float, burst: int, clock: Clock, **kw) -> tuple[Core, list, list[Later]]:
    core = Core(Gcra(rate, burst, clock=clock))
    pools = [Later() for _ in range(n)]
    edges = [LeasedLimiter(core.for_edge(i, rate, burst), pools[i], edges=n, **kw)
             for i in range(n)]
    return core, edges, pools


def test_an_edge_holds_at_most_its_share_and_the_other_edge_keeps_the_rest():
    """Burst 100 over two edges: a busy edge's blocks grow, but it never holds more than 50 tokens; the
    other edge's sequential requests are still allowed (one edge used to lease almost the whole burst
    and the other refused the key's 4th request)."""
    clock = Clock()
    core, (a, b), (pa, pb) = _edges(2, 1e-6, 100, clock)  # no refill to speak of
    held = []
    for i in range(45):  # busy on A: each lease comes back only after 15 requests - it runs dry
        a.check("k")
        if i % 15 == 14:
            pa.run()
        held.append(a._tokens["k"])
    assert a._block.get("k") == 50  # its block grew (20 -> 80), up to its share
    assert max(held) <= 50
    allowed_on_a = 100 - core.gcra.peek("k").remaining - a._tokens["k"]  # what A let through
    allowed_on_b = 0
    for _ in range(100 - allowed_on_a - 50):  # sequential on B, each lease back before the next
        allowed_on_b += b.check("k").allowed
        pb.run()
    assert allowed_on_b == 100 - allowed_on_a - 50


def test_one_request_on_a_new_key_leases_one_block_not_the_edges_share():
    """A first request finds no token only because nothing was leased yet: that is not a key running
    dry, so its block must not grow (it made one request's edge take its whole share at once)."""
    clock = Clock()
    core, (a, _b), (pa, _pb) = _edges(2, 1000.0, 2000, clock, lease=20)
    a.check("k")
    pa.run()
    assert a._tokens["k"] == 19 and core.asked[0] == [20]
    assert a._block.get("k", a.lease) == 20
