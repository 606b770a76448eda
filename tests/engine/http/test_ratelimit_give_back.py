"""``Gcra.lease_block``: HTTP edges give back the tokens they leased and did not spend in time.

What a user relies on: a token given back counts again for the key's requests (on any edge), but never
twice - the core credits only what its count still holds of that lease. The reference is the token bucket
as a queue of leases, drained from the front as time passes: giving back ``r`` tokens of a lease takes
out at most what is left of that lease there.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.http.ratelimit import Gcra

RATE, T = 4.0, 0.25  # binary fractions: the sums below are exact


def _used(g: Gcra, now: float) -> float:
    """Tokens the count holds (what the bucket misses), from its reset time."""
    return g.peek("k", now).reset_s / T


class Queue:
    """The reference: the bucket's used tokens as a queue of leases, oldest first."""

    def __init__(self) -> None:
        self.segments: list[list] = []  # [lease index, tokens left]

    def drain(self, seconds: float) -> None:
        left = seconds / T
        while self.segments and left > 0:
            took = min(left, self.segments[0][1])
            self.segments[0][1] -= took
            left -= took
            if self.segments[0][1] <= 1e-12:
                self.segments.pop(0)

    def give_back(self, index: int, tokens: int) -> None:
        for seg in self.segments:
            if seg[0] == index:
                seg[1] -= min(tokens, seg[1])

    @property
    def used(self) -> float:
        return sum(s[1] for s in self.segments)


def test_tokens_given_back_at_once_count_again_in_full():
    g = Gcra(RATE, 100, clock=lambda: 0.0)
    a = g.lease_block("k", 30, now=10.0)
    g.lease_block("k", 20, now=10.0)
    assert _used(g, 10.0) == 50
    g.lease_block("k", 0, give_back=[(30, a.end, a.shift)], now=10.0)
    assert _used(g, 10.0) == 20  # all 30 back: a key's requests elsewhere may have them


def test_a_give_back_credits_only_what_the_count_still_holds_of_that_lease():
    """A (10) and B (10) leased at 0; A gives all back at once, C leases 10 at 2 s (8 tokens later);
    then B gives its 10 back: 8 of them had been drained from the count already (A's give-back moved
    B's lease to the front), so only 2 count again - the count is then exactly C's 10, as if A and B
    had never leased. Crediting B's 10 by its lease's end (as if A's give-back had not moved it)
    would have left the count 8 tokens short: 8 requests more than the limit."""
    g = Gcra(RATE, 100, clock=lambda: 0.0)
    a = g.lease_block("k", 10, now=0.0)
    b = g.lease_block("k", 10, now=0.0)
    g.lease_block("k", 0, give_back=[(10, a.end, a.shift)], now=0.0)
    g.lease_block("k", 10, now=2.0)
    g.lease_block("k", 0, give_back=[(10, b.end, b.shift)], now=2.0)
    assert _used(g, 2.0) == 10  # C's 10 tokens, and nothing of A's or B's


def test_near_its_limit_a_keys_room_is_shared_by_the_edges_that_ask():
    g = Gcra(RATE, 40, clock=lambda: 0.0)
    g.lease_block("k", 30, now=0.0)
    assert g.lease_block("k", 20, split=2, held=0, now=0.0).granted == 5  # half of the 10 left
    assert g.lease_block("k", 20, split=2, held=3, now=0.0).granted == 1  # (5 + 3) / 2, less its 3
    assert g.lease_block("k", 20, split=2, held=9, now=0.0).granted == 0  # it holds its part already
    assert g.lease_block("k", 20, split=1, now=0.0).granted == 4  # one edge: all that is left


@settings(max_examples=300, deadline=None)
@given(st.integers(4, 40), st.lists(st.tuples(st.sampled_from(["lease", "back", "tick"]),
                                              st.integers(0, 12), st.integers(0, 12)),
                                    min_size=1, max_size=60))
def test_given_back_tokens_are_never_counted_back_twice(burst, ops):
    """Over random leases, give-backs in any order and time passing, the count never holds fewer
    tokens than the reference (no request beyond the limit), and is the reference exactly while
    nothing was given back."""
    g = Gcra(RATE, burst, clock=lambda: 0.0)
    ref = Queue()
    now = 100.0
    leases: list = []  # (grant, tokens not yet given back)
    given_back = False
    for op, a, b in ops:
        if op == "tick":
            now += a / 8
            ref.drain(a / 8)
        elif op == "lease":
            grant = g.lease_block("k", a, now=now)
            if grant.granted:
                ref.segments.append([len(leases), grant.granted])
            leases.append([grant, grant.granted])
        elif leases:
            index = a % len(leases)
            grant, unspent = leases[index]
            tokens = min(unspent, b)  # the edge spent the others
            leases[index][1] = 0  # a lease's tokens are given back once
            g.lease_block("k", 0, give_back=[(tokens, grant.end, grant.shift)], now=now)
            ref.give_back(index, tokens)
            given_back = given_back or tokens > 0
        assert _used(g, now) >= ref.used - 1e-9
        if not given_back:
            assert abs(_used(g, now) - ref.used) < 1e-9
