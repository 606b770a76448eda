"""The bench's latency histogram: percentiles of known inputs, clamping, merging and encoding."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.histogram import HIGHEST_US, LatencyHistogram


def test_percentiles_of_one_to_a_thousand_microseconds_are_exact_within_a_tenth_of_a_percent():
    h = LatencyHistogram()
    for us in range(1, 1001):
        h.record_us(us)
    s = h.summary_ms()
    assert s["count"] == 1000
    assert s["p50_ms"] == 0.5
    assert s["p90_ms"] == 0.9
    assert s["p99_ms"] == 0.99
    assert s["p999_ms"] == 0.999
    assert s["max_ms"] == 1.0


def test_seconds_are_recorded_as_microseconds():
    h = LatencyHistogram()
    h.record_seconds(0.0025)
    assert abs(h.percentile_us(50) - 2500) <= 2500 * 0.001  # three significant figures
    assert abs(h.summary_ms()["max_ms"] - 2.5) <= 0.0025


def test_an_empty_histogram_summarises_to_zeros():
    s = LatencyHistogram().summary_ms()
    assert s == {
        "p50_ms": 0,
        "p90_ms": 0,
        "p99_ms": 0,
        "p999_ms": 0,
        "max_ms": 0,
        "mean_ms": 0,
        "count": 0,
    }


def test_a_stall_beyond_the_range_is_clamped_not_dropped():
    h = LatencyHistogram()
    h.record_us(HIGHEST_US * 10)
    h.record_us(-5)
    assert h.count == 2
    assert h.clamped == 1
    assert h.max_us() >= HIGHEST_US * 0.999


def test_merging_two_histograms_equals_recording_everything_in_one():
    a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in range(1, 500):
        a.record_us(v)
        both.record_us(v)
    for v in range(10_000, 10_100):
        b.record_us(v)
        both.record_us(v)
    a.merge(b)
    assert a.summary_ms() == both.summary_ms()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10_000_000), min_size=1, max_size=200))
def test_encode_then_decode_keeps_every_percentile(values):
    h = LatencyHistogram()
    for v in values:
        h.record_us(v)
    assert LatencyHistogram.decode(h.encode()).summary_ms() == h.summary_ms()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=10_000_000), min_size=1, max_size=300))
def test_percentiles_are_within_a_tenth_of_a_percent_of_the_sorted_list(values):
    h = LatencyHistogram()
    for v in values:
        h.record_us(v)
    ordered = sorted(values)
    for p in (50.0, 90.0, 99.0):
        rank = max(
            1, int(p / 100 * len(ordered) + 0.5)
        )  # HdrHistogram's rank: rounded, not ceiling
        exact = ordered[rank - 1]
        assert abs(h.percentile_us(p) - exact) <= exact * 0.001 + 1
    assert abs(h.max_us() - ordered[-1]) <= ordered[-1] * 0.001 + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=3_600_000_000), min_size=1, max_size=400))
def test_buffered_recording_folds_into_exactly_what_record_value_gives(values):
    from hdrh.histogram import HdrHistogram

    fast = LatencyHistogram()
    for v in values:
        fast.record_us(v)
    slow = HdrHistogram(1, 3_600_000_000, 3)
    for v in values:
        slow.record_value(v)
    folded = fast._h
    assert list(folded.counts) == list(slow.counts)
    assert (folded.total_count, folded.min_value, folded.max_value) == \
        (slow.total_count, slow.min_value, slow.max_value)


def test_a_released_histogram_is_freed_by_reference_counting_without_a_collection():
    import gc
    import weakref

    h = LatencyHistogram()
    h.record_us(5)
    inner = weakref.ref(h._hist)
    gc.disable()
    try:
        h.release()
        del h
        assert inner() is None  # freed at once: no reference cycle left waiting for the collector
    finally:
        gc.enable()
