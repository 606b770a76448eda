"""The HTTP loop's own histograms (request durations, submit latencies) scrape exactly as the
``prometheus_client`` histograms they replaced: same series, same buckets, counts and sums, for any
observations (only the ``_created`` timestamps differ, being taken at different moments)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from engine.http.loop_histogram import LoopHistogram
from engine.http.metrics import LATENCY_BUCKETS, HttpMetrics

LABELS = st.tuples(st.sampled_from(["customer", "control"]),
                   st.sampled_from(["POST /v1/messages", "GET /v1/messages/{id}", 'GET "odd"\\path']),
                   st.sampled_from(["200", "202", "429", "503"]))
AMOUNTS = st.one_of(st.sampled_from([0.0, *LATENCY_BUCKETS, 301.0]),
                    st.floats(min_value=0.0, max_value=1000.0, allow_nan=False))


def _scrape(registry: CollectorRegistry) -> str:
    return re.sub(r"(_created\{.*\}) \S+", r"\1 T", generate_latest(registry).decode())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(LABELS, AMOUNTS), max_size=40))
def test_a_loop_histogram_scrapes_as_the_library_histogram(observations):
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    library = Histogram("h_seconds", "help", ["app", "endpoint", "code"], buckets=LATENCY_BUCKETS,
                        registry=theirs)
    loop = LoopHistogram("h_seconds", "help", ["app", "endpoint", "code"], LATENCY_BUCKETS)
    ours.register(loop)
    for labels, amount in observations:
        library.labels(*labels).observe(amount)
        loop.observe(loop.series(*labels), amount)
    assert _scrape(ours) == _scrape(theirs)


def test_the_request_and_submit_metrics_count_each_observation_in_its_bucket():
    m = HttpMetrics()
    for seconds in (0.0004, 0.001, 0.0011, 2.0):
        m.observe_request("customer", "POST /v1/messages", 202, seconds)
        m.observe_submit("fra", "DE", seconds)
    labels = {"app": "customer", "endpoint": "POST /v1/messages", "code": "202"}
    value = m.registry.get_sample_value
    assert value("smsroute_http_request_duration_seconds_bucket", {**labels, "le": "0.001"}) == 2
    assert value("smsroute_http_request_duration_seconds_bucket", {**labels, "le": "0.0025"}) == 3
    assert value("smsroute_http_request_duration_seconds_count", labels) == 4
    assert abs(value("smsroute_http_request_duration_seconds_sum", labels) - 2.0025) < 1e-9
    assert value("smsroute_submit_latency_seconds_bucket",
                 {"pop": "fra", "country": "DE", "le": "+Inf"}) == 4
