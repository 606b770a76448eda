"""``LeasedLimiter`` (an HTTP edge's rate limiter) against the core's real ``Gcra``, on a test clock.

What a user sees on an edge's answers: ``RateLimit-Remaining`` / ``RateLimit-Reset`` computed like the
one-process engine's, from the key's count at the core as of the edge's latest lease answer, with the
tokens this edge holds (or owes) taken into account. The README states the bound they keep; the property
test below checks it over random interleavings of requests on several edges, leases coming back late
and time passing (and unspent tokens lapsing and going back to the core). And how the burst is shared:
an edge never holds more than burst / edges of a key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.cluster.edge_engine import LeasedLimiter
from engine.http.ratelimit import Gcra, Grant
from tests.engine.cluster.support import Later


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Core:
    """The core's one count (a real ``Gcra``) and what it granted: ``total`` tokens in all, and, per
    edge, the total as of the edge's latest answer (what that edge's view already holds); likewise
    ``credited``, the seconds of count edges gave back (their unspent tokens lapse)."""

    gcra: Gcra
    total: int = 0
    seen_by: dict[int, int] = field(default_factory=dict)
    credited: float = 0.0
    credited_seen_by: dict[int, float] = field(default_factory=dict)
    asked: dict[int, list[int]] = field(default_factory=dict)

    def for_edge(self, index: int, rate: float, burst: int) -> object:
        core = self
        http = type("H", (), {"rate_limit_burst": burst, "rate_limit_per_second": rate})

        class _Engine:
            settings = type("S", (), {"http": http})

            def lease_block(self, key: str, n: int, give_back: list, split: int, held: int) -> Grant:
                before = core.gcra.peek(key).reset_s
                core.gcra.lease_block(key, 0, give_back=give_back)  # (as the core does: first)
                core.credited += before - core.gcra.peek(key).reset_s
                answer = core.gcra.lease_block(key, n, split=split, held=held)
                core.total += answer.granted
                core.seen_by[index] = core.total
                core.credited_seen_by[index] = core.credited
                core.asked.setdefault(index, []).append(n)
                return answer

        return _Engine()


def _edges(n: int, rate: float, burst: int, clock: Clock, **kw) -> tuple[Core, list, list[Later]]:
    core = Core(Gcra(rate, burst, clock=clock))
    pools = [Later() for _ in range(n)]
    edges = [LeasedLimiter(core.for_edge(i, rate, burst), pools[i], edges=n, clock=clock, **kw)
             for i in range(n)]
    return core, edges, pools


RATE, T = 4.0, 0.25  # binary fractions: the clock's sums are exact


@settings(max_examples=150, deadline=None)
@given(st.integers(2, 3), st.integers(4, 64), st.integers(1, 20),
       st.lists(st.tuples(st.sampled_from(["req", "req", "req", "lease", "tick"]), st.integers(0, 2),
                          st.integers(1, 16)), min_size=1, max_size=120))
def test_remaining_and_reset_on_an_edge_keep_their_stated_bound(n, burst, lease, ops):
    """For every answer of edge i: Reset is at most T per token the core granted after edge i's latest
    lease answer (G) shorter than the core's count now gives (with this edge's own unspent tokens taken
    off and its requests on credit added), and longer by at most what edges gave back to the core
    since (C seconds); Remaining likewise, larger by at most G and smaller by at most C / T."""
    clock = Clock()
    core, edges, pools = _edges(n, RATE, burst, clock, lease=lease)
    for op, i, k in ops:
        i %= n
        if op == "tick":
            clock.t += k / 8
            continue
        if op == "lease":
            pools[i].run()
            continue
        edge = edges[i]
        decision = edge.check("k")
        assert edge._tokens["k"] <= edge.share  # never more than its share of the burst held
        now = clock()
        core_reset = core.gcra.peek("k", now).reset_s  # the core's count now (max(TAT, now) - now)
        truth = max(0.0, core_reset - edge._tokens["k"] * T)  # ... as edge i would state it
        granted_since = core.total - core.seen_by.get(i, 0)
        credited_since = core.credited - core.credited_seen_by.get(i, 0.0)
        assert decision.reset_s <= truth + credited_since + 1e-9
        assert truth <= decision.reset_s + granted_since * T + 1e-9
        if decision.allowed:
            true_remaining = min(burst - 1, max(0, burst - math.ceil(truth / T - 1e-9)))
            fewer = math.ceil(credited_since / T - 1e-9)
            assert true_remaining - fewer <= decision.remaining <= true_remaining + granted_since
        else:
            assert decision.remaining == 0 and decision.retry_after_s > 0


def test_a_fresh_keys_first_answer_on_an_edge_is_the_one_process_answer():
    clock = Clock()
    _, [edge], _ = _edges(1, 1000.0, 2000, clock)
    one_process = Gcra(1000.0, 2000, clock=clock).check("k")
    mine = edge.check("k")  # before any lease came back
    assert mine.headers() == one_process.headers()
    assert (mine.remaining, mine.headers()["RateLimit-Remaining"]) == (1999, "1999")  # it said 0


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
    assert max(core.asked[0]) > 20  # its block grew (20 -> 80, up to its share, less what it holds)
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


def test_an_edge_reads_a_stale_count_again_and_then_counts_the_other_edges_requests():
    clock = Clock()
    core, (a, b), (pa, pb) = _edges(2, 1.0, 100, clock, lease=20, lifetime=10.0)
    a.check("k")
    pa.run()  # A holds 19: no lease needed for a while (nor do they lapse: a lifetime of 10 s)
    for _ in range(30):  # B serves 30
        b.check("k")
        pb.run()
    assert a.check("k").remaining == 98  # A's view is as of its lease: B's requests are not in it yet
    assert not pa.tasks  # a fresh view: no query
    clock.t += 1.5  # older than VIEW_MAX_AGE_S
    a.check("k")
    assert pa.tasks  # its count is read again in the background...
    pa.run()
    assert core.asked[0][-1] == 0  # ...taking no token
    seen = a.check("k")
    truth = max(0.0, core.gcra.peek("k").reset_s - a._tokens["k"] * 1.0)
    assert seen.reset_s == truth  # B's requests (and unspent tokens) are counted now
    assert seen.remaining <= 100 - 30 - 4 + 2  # A's 4 and B's 30, 1.5 s refilled
