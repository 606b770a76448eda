"""GCRA: decides like a token bucket of ``burst`` refilled at ``rate``; headers follow the decision."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.http.ratelimit import Gcra


def test_a_burst_is_allowed_at_once_and_the_next_request_is_refused():
    g = Gcra(rate=2.0, burst=5)
    decisions = [g.check("k", now=100.0) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]


def test_a_refused_request_says_when_to_retry_and_retrying_then_succeeds():
    g = Gcra(rate=2.0, burst=1)
    assert g.check("k", now=0.0).allowed
    refused = g.check("k", now=0.1)
    assert not refused.allowed
    assert abs(refused.retry_after_s - 0.4) < 1e-9
    assert refused.headers()["Retry-After"] == "1"
    assert g.check("k", now=0.1 + refused.retry_after_s).allowed


def test_keys_are_limited_independently():
    g = Gcra(rate=1.0, burst=1)
    assert g.check("a", now=0.0).allowed
    assert g.check("b", now=0.0).allowed
    assert not g.check("a", now=0.0).allowed


def test_headers_are_present_on_allowed_answers_without_retry_after():
    h = Gcra(rate=10.0, burst=10).check("k", now=0.0).headers()
    assert h["RateLimit-Limit"] == "10" and h["RateLimit-Remaining"] == "9"
    assert "Retry-After" not in h


def test_the_key_table_stays_bounded():
    g = Gcra(rate=1.0, burst=1, max_keys=10)
    for i in range(100):
        g.check(f"k{i}", now=float(i) / 1000)
    assert len(g) <= 10


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=60),
       st.integers(min_value=1, max_value=8), st.floats(min_value=0.5, max_value=20))
def test_gcra_decides_exactly_like_a_token_bucket(gaps, burst, rate):
    g = Gcra(rate=rate, burst=burst)
    tokens, last, now = float(burst), 0.0, 0.0
    for gap in gaps:
        now += gap
        tokens = min(float(burst), tokens + (now - last) * rate)
        last = now
        d = g.check("k", now=now)
        if abs(tokens - 1.0) > 1e-6:  # exactly on the float boundary either answer is right
            assert d.allowed == (tokens >= 1.0)
        if d.allowed:  # follow the limiter's answer so the two stay in step
            tokens -= 1.0


def test_a_lease_answers_the_keys_count_after_it_and_a_lease_of_nothing_only_reads_it():
    g = Gcra(rate=2.0, burst=10)
    first = g.lease("k", 4, now=0.0)
    assert (first.granted, first.retry_after_s, first.reset_s) == (4, 0.0, 2.0)  # 4 tokens, T = 0.5 s
    assert g.lease("k", 0, now=1.0) == (0, 0.0, 1.0)  # a second later: 2 tokens back, none taken
    assert g.peek("k", now=1.0).remaining == 8
    rest = g.lease("k", 100, now=1.0)
    assert (rest.granted, rest.reset_s) == (8, 5.0)  # what was left; the bucket full again in 5 s
    refused = g.lease("k", 1, now=1.0)
    assert refused.granted == 0 and refused.retry_after_s == 0.5 and refused.reset_s == 5.0
