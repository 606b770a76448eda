"""Metrics: engine stats flatten into labelled gauges; status changes count and time corridors."""

from __future__ import annotations

from engine.http.metrics import HttpMetrics
from engine.messages import StatusItem


def _item(mid: str, status: str, at: float) -> StatusItem:
    return StatusItem(mid, "acc", status, at, "fra", "fra-telekom", "DE", 1, 75000, "", None)


def test_engine_stats_become_gauges_labelled_by_entity():
    stats = {"in_flight": 3, "pops": [{"pop": "fra", "queued": 2}, {"pop": "sin", "queued": 5}],
             "carriers": {"fra-telekom": {"window": 7}}, "note": "text is skipped"}
    text = HttpMetrics(stats=lambda: stats).exposition().decode()
    assert 'smsroute_engine_in_flight{key=""} 3.0' in text
    assert 'smsroute_engine_pops_queued{key="sin"} 5.0' in text
    assert 'smsroute_engine_carriers_window{key="fra-telekom"} 7.0' in text
    assert "text is skipped" not in text


def test_status_changes_are_counted_and_final_ones_timed_per_corridor():
    m = HttpMetrics()
    m.observe_status(_item("m1", "accepted", 100.0))
    m.observe_status(_item("m1", "delivered", 100.5))
    text = m.exposition().decode()
    assert 'smsroute_messages_total{carrier="fra-telekom",pop="fra",status="delivered"} 1.0' in text
    assert 'smsroute_delivery_latency_seconds_count{country="DE",pop="fra"} 1.0' in text
    assert 'smsroute_delivery_latency_seconds_bucket{country="DE",le="0.5",pop="fra"} 1.0' in text


def test_the_http_layers_own_gauges_are_exposed():
    m = HttpMetrics(extra=lambda: {"smsroute_webhook_backlog": 4.0})
    assert "smsroute_webhook_backlog 4.0" in m.exposition().decode()
