"""The pure judgements of the bench's modes: saturation search, step verdicts, memory and linearity."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bench.histogram import LatencyHistogram
from bench.modes import linearity_verdict, memory_verdict, saturation_search, step_verdict
from bench.recorder import CorridorStats


def _step(rate=1000.0, mps=1000.0, p99_us=1000, errors=0, unfinished=0, stalled=False):
    c = CorridorStats("fra", "DE")
    for _ in range(100):
        c.final.record_us(p99_us)
    if errors:
        c.errors["overloaded"] = errors
    return SimpleNamespace(
        offered_rate=rate,
        sent=int(rate * 2),
        duration_s=2.0,
        messages_per_second=mps,
        corridors={("fra", "DE"): c},
        errors=errors,
        unfinished=unfinished,
        stalled=stalled,
    )


def test_the_search_finds_the_capacity_within_the_bisection_resolution():
    capacity = 37_000
    best, tried = saturation_search(lambda r: (r <= capacity, None), 2000, 200_000, bisect_steps=6)
    assert best is not None and best <= capacity
    assert capacity - best <= (64_000 - 32_000) / 2**6 + 1
    rates = [r for r, _, _ in tried]
    assert rates[:6] == [2000, 4000, 8000, 16000, 32000, 64000]


def test_the_search_stops_doubling_at_the_maximum_rate():
    best, tried = saturation_search(lambda r: (True, None), 1000, 10_000, bisect_steps=3)
    assert best == 8000
    assert max(r for r, _, _ in tried) == 8000


def test_when_the_start_rate_fails_the_search_halves_downwards():
    best, tried = saturation_search(lambda r: (r <= 300, None), 2000, 10_000, bisect_steps=2)
    assert best is not None and 250 <= best <= 300
    assert [r for r, _, _ in tried][:4] == [2000, 1000, 500, 250]


def test_nothing_passing_gives_no_best_rate():
    best, _ = saturation_search(lambda r: (False, None), 1000, 10_000, bisect_steps=2, min_rate=100)
    assert best is None


def test_a_step_passes_only_when_complete_error_free_fast_enough_and_under_the_bound():
    assert step_verdict(_step(), 5.0, 0.97) == (True, "sustained")
    assert not step_verdict(_step(p99_us=6000), 5.0, 0.97)[0]
    assert "final p99" in step_verdict(_step(p99_us=6000), 5.0, 0.97)[1]
    assert "throughput" in step_verdict(_step(mps=900.0), 5.0, 0.97)[1]
    assert "errors" in step_verdict(_step(errors=1), 5.0, 0.97)[1]
    assert "final status" in step_verdict(_step(unfinished=3), 5.0, 0.97)[1]
    assert "in-flight" in step_verdict(_step(stalled=True), 5.0, 0.97)[1]


def test_flat_memory_is_judged_flat_and_a_leak_is_not():
    flat = [(t, 200.0 + (t % 3)) for t in range(0, 600, 5)]
    leak = [(t, 200.0 + t * 0.2) for t in range(0, 600, 5)]
    v = memory_verdict(flat, warmup_s=60)
    assert v["flat"] is True and abs(v["slope_mb_per_min"]) < 1
    v = memory_verdict(leak, warmup_s=60)
    assert v["flat"] is False
    assert v["slope_mb_per_min"] == pytest.approx(12.0, rel=1e-6)
    assert v["growth_mb"] > v["tolerance_mb"]


def test_too_few_samples_give_no_memory_verdict():
    assert memory_verdict([(0, 1.0), (100, 2.0)], warmup_s=50)["flat"] is None


def test_linearity_compares_cpu_of_ten_times_the_messages():
    assert linearity_verdict(1000, 1.0, 10.4) | {} == {
        "messages": [1000, 10000],
        "cpu_s": [1.0, 10.4],
        "ratio": 10.4,
        "limit": 10.5,
        "linear": True,
    }
    assert linearity_verdict(1000, 1.0, 11.0)["linear"] is False
    assert linearity_verdict(1000, 0.0, 1.0)["linear"] is False


def test_hdr_percentile_used_by_the_verdict_is_the_corridor_final_p99():
    h = LatencyHistogram()
    for us in range(1, 101):
        h.record_us(us * 100)
    c = CorridorStats("sin", "SG", final=h)
    step = SimpleNamespace(
        offered_rate=None,
        sent=1,
        duration_s=0.0,
        messages_per_second=1.0,
        corridors={1: c},
        errors=0,
        unfinished=0,
        stalled=False,
    )
    assert step_verdict(step, 9.95, 0.97)[0]
    assert not step_verdict(step, 9.85, 0.97)[0]
