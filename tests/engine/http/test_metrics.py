"""Metrics: engine numbers become conventional families (entities are labels); status changes count
and time corridors."""

from __future__ import annotations

from engine.http.metrics import HttpMetrics, Snapshot
from engine.messages import StatusItem


def _item(mid: str, status: str, at: float) -> StatusItem:
    return StatusItem(mid, "acc", status, at, "fra", "fra-telekom", "DE", 1, 75000, "", None)


def _text(snapshot: Snapshot) -> str:
    return HttpMetrics(lambda: snapshot).exposition().decode()


def test_pop_numbers_are_labelled_by_pop_and_carrier_and_its_counts_are_counters():
    text = _text(Snapshot(engine={"in_flight": 3, "pops": [
        {"pop": "fra", "in_flight": 2, "outstanding": {"fra-telekom": 4}, "retries": 7},
        {"pop": "sin", "in_flight": 1, "waiting": {"sin-singtel": 5}, "retries": 0}]}))
    assert "smsroute_in_flight 3.0" in text
    assert 'smsroute_pop_in_flight{pop="fra"} 2.0' in text
    assert 'smsroute_pop_outstanding{carrier="fra-telekom",pop="fra"} 4.0' in text
    assert 'smsroute_pop_waiting{carrier="sin-singtel",pop="sin"} 5.0' in text
    assert "# TYPE smsroute_pop_retries_total counter" in text
    assert 'smsroute_pop_retries_total{pop="fra"} 7.0' in text


def test_carriers_show_their_state_as_one_or_zero_and_smpp_binds_per_state():
    text = _text(Snapshot(carriers=[
        {"carrier": "fra-x", "pop": "fra", "kind": "smpp", "suspended": True, "connected": True,
         "available": False, "window": 20, "window_in_use": 3, "submitted": 9, "reconnects": 2,
         "errors": {"bind_refused": 1}, "bind_refusals": {"ESME_RINVPASWD": 3},
         "binds": [{"state": "bound"}, {"state": "bound"}, {"state": "refused"}]},
        {"carrier": "sin-y", "pop": "sin", "kind": "simulated", "suspended": False,
         "connected": True, "available": True, "binds": [], "submitted": 1}]))
    assert 'smsroute_carrier_suspended{carrier="fra-x",pop="fra"} 1.0' in text
    assert 'smsroute_carrier_available{carrier="fra-x",pop="fra"} 0.0' in text
    assert 'smsroute_carrier_available{carrier="sin-y",pop="sin"} 1.0' in text
    assert 'smsroute_carrier_binds{carrier="fra-x",pop="fra",state="bound"} 2.0' in text
    assert 'smsroute_carrier_binds{carrier="fra-x",pop="fra",state="refused"} 1.0' in text
    assert ('smsroute_carrier_bind_refusals_total{carrier="fra-x",pop="fra",status="ESME_RINVPASWD"} 3.0'
            in text)
    assert 'smsroute_carrier_reconnects_total{carrier="fra-x",pop="fra"} 2.0' in text
    assert 'smsroute_carrier_errors_total{carrier="fra-x",error="bind_refused",pop="fra"} 1.0' in text
    assert 'smsroute_carrier_submitted_total{carrier="sin-y",pop="sin"} 1.0' in text


def test_webhooks_and_retention_sweeps_are_counted_per_outcome_and_per_store():
    text = _text(Snapshot(engine={"sweeper": {"sweeps": 4, "failures": 1,
                                              "removed_by_store": {"records:fra": 3}}},
                          webhook_backlog=2, webhook_outcomes={"delivered": 5, "retried": 1},
                          removed_by_store={"request_log": 6, "records:fra": 1}))
    assert "smsroute_webhook_backlog 2.0" in text
    assert 'smsroute_webhook_deliveries_total{outcome="delivered"} 5.0' in text
    assert "smsroute_retention_sweeps_total 4.0" in text
    assert "smsroute_retention_sweep_failures_total 1.0" in text
    assert 'smsroute_retention_removed_total{store="records:fra"} 4.0' in text
    assert 'smsroute_retention_removed_total{store="request_log"} 6.0' in text


def test_status_changes_are_counted_and_final_ones_timed_per_corridor():
    m = HttpMetrics()
    m.observe_status(_item("m1", "accepted", 100.0))
    m.observe_status(_item("m1", "delivered", 100.5))
    m.observe_submit("fra", "DE", 0.004)
    text = m.exposition().decode()
    assert 'smsroute_messages_total{carrier="fra-telekom",pop="fra",status="delivered"} 1.0' in text
    assert 'smsroute_delivery_latency_seconds_count{country="DE",pop="fra"} 1.0' in text
    assert 'smsroute_delivery_latency_seconds_bucket{country="DE",le="0.5",pop="fra"} 1.0' in text
    assert 'smsroute_submit_latency_seconds_bucket{country="DE",le="0.005",pop="fra"} 1.0' in text


def test_a_snapshot_with_missing_parts_still_scrapes():
    assert "smsroute_in_flight" not in _text(Snapshot())


def test_mail_and_privacy_numbers_have_names_of_their_own():
    text = _text(Snapshot(engine={"mail": {"outbox": 2, "sent": 5, "retried": 1, "refused": 0},
                                  "privacy": {"dsar_open": 1, "dsar_overdue": 0,
                                              "incidents_authority_overdue": 1}}))
    assert "smsroute_mail_outbox 2.0" in text
    assert 'smsroute_mail_deliveries_total{outcome="sent"} 5.0' in text
    assert "smsroute_privacy_requests_open 1.0" in text
    assert "smsroute_privacy_incidents_authority_overdue 1.0" in text


def test_mail_only_logged_for_want_of_a_mail_server_is_not_counted_sent():
    text = _text(Snapshot(engine={"mail": {"outbox": 0, "sent": 0, "not_delivered": 3, "retried": 0,
                                           "refused": 0, "delivery": "not_configured"}}))
    assert 'smsroute_mail_deliveries_total{outcome="not_delivered"} 3.0' in text
    assert 'smsroute_mail_deliveries_total{outcome="sent"} 0.0' in text
    assert "smsroute_mail_delivery_configured 0.0" in text
    configured = _text(Snapshot(engine={"mail": {"outbox": 0, "sent": 1, "delivery": "smtp"}}))
    assert "smsroute_mail_delivery_configured 1.0" in configured
