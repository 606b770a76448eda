"""Incident records (policy 9) end to end: the 72-hour authority deadline (visible, and alerting in
metrics when close), the authority's notification, and the customer notices by e-mail."""

from __future__ import annotations

import re
import time

import pytest

from engine import Engine
from tests.engine.http.conftest import Client, overrides
from tests.mailbox import email_overrides, text_of

HOUR = 3600


@pytest.fixture(scope="module")
def running(tmp_path_factory, mailbox):
    settings = overrides()
    settings["email"] = email_overrides(mailbox)
    engine = Engine.start(tmp_path_factory.mktemp("inc") / "data", http=True, overrides=settings)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def clients(running):
    tokens = running.http.ctx.tokens
    return (Client(running.http.control_port, tokens.create("inc-officer", {"privacy"})),
            Client(running.http.control_port, tokens.create("inc-viewer", {"viewer"})))


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_an_incident_tracks_the_72_hour_deadline_and_alerts_in_metrics_when_it_is_close(
        running, clients):
    privacy, viewer = clients
    detected = time.time() - 50 * HOUR  # 22 hours left
    status, _, incident = privacy.request("POST", "/v1/incidents", {
        "summary": "A backup bucket was readable for two days.", "detected_at": detected,
        "accounts": "all"})
    assert status == 201, incident
    assert incident["authority_deadline"] == pytest.approx(detected + 72 * HOUR)
    assert incident["authority_deadline_close"] is True and incident["authority_overdue"] is False
    assert 21 * HOUR < incident["seconds_to_authority_deadline"] <= 22 * HOUR

    metrics = viewer.request("GET", "/metrics")[2].decode()
    assert _metric(metrics, "smsroute_privacy_incidents_authority_deadline_close") >= 1

    status, _, notified = privacy.request(
        "POST", f"/v1/incidents/{incident['id']}/authority-notified", {"reference": "DPA-2026-17"})
    assert status == 200 and notified["authority_notified_at"] > 0
    assert notified["authority_reference"] == "DPA-2026-17"
    again = privacy.request("POST", f"/v1/incidents/{incident['id']}/authority-notified",
                            {"reference": "x"})
    assert again[0] == 409
    listed = {i["id"]: i for i in privacy.request("GET", "/v1/incidents")[2]["incidents"]}
    assert listed[incident["id"]]["authority_deadline_close"] is False  # notified: no alert
    assert privacy.request("POST", f"/v1/incidents/{incident['id']}/close", {})[0] == 200


def test_an_overdue_notification_shows_as_overdue(running, clients):
    privacy, viewer = clients
    status, _, incident = privacy.request("POST", "/v1/incidents", {
        "summary": "Found late.", "detected_at": time.time() - 80 * HOUR, "accounts": "all"})
    assert status == 201 and incident["authority_overdue"] is True
    metrics = viewer.request("GET", "/metrics")[2].decode()
    assert _metric(metrics, "smsroute_privacy_incidents_authority_overdue") >= 1
    privacy.request("POST", f"/v1/incidents/{incident['id']}/authority-notified", {"reference": "r"})


def test_the_affected_customers_and_only_they_get_the_incident_notice(running, clients, mailbox):
    privacy, _ = clients
    hit = running.create_account("hit@example.com")
    running.create_account("spared@example.com")
    detected = time.time() - HOUR
    status, _, incident = privacy.request("POST", "/v1/incidents", {
        "summary": "Delivery receipts of one day were exposed to another customer.",
        "detected_at": detected, "accounts": [hit.id]})
    assert status == 201
    status, _, notified = privacy.request(
        "POST", f"/v1/incidents/{incident['id']}/notify-customers", {})
    assert status == 200 and notified["customers_notified"] + notified["customers_queued"] == 1
    assert notified["customers_notified_at"] > 0
    text = text_of(mailbox.wait("hit@example.com", "security incident notice")[0])
    assert incident["id"] in text and "exposed to another customer" in text
    assert not [m for m in mailbox.to("spared@example.com") if "incident" in m["Subject"]]


def test_an_incident_refuses_a_future_detection_time_and_unknown_accounts(running, clients):
    privacy, _ = clients
    future = privacy.request("POST", "/v1/incidents", {
        "summary": "x", "detected_at": time.time() + 86400, "accounts": "all"})
    assert future[0] == 400
    unknown = privacy.request("POST", "/v1/incidents", {
        "summary": "x", "detected_at": time.time(), "accounts": ["acc_0000000000000000"]})
    assert unknown[0] == 404
