"""An incident's customer notice counts what the mail server did, not what was queued (policy 9).

Before, ``POST /v1/incidents/{id}/notify-customers`` set ``customers_notified`` to the number of mails
queued, also when no mail server is configured (the mails were only logged) or when the server then
refused one. Through the real control port: without a mail server the notice reads
``customers_not_delivered`` and ``customers_notified`` 0; with a loopback SMTP server that refuses one
of two mails for good, one is notified and one unsent once the outbox knows.
"""

from __future__ import annotations

import time

from engine import Engine
from tests.engine.http.conftest import Client, overrides, wait_for
from tests.mailbox import email_overrides

OUTCOMES = ("customers_notified", "customers_queued", "customers_not_delivered", "customers_unsent")


def _officer(engine: Engine) -> Client:
    return Client(engine.http.control_port,
                  engine.http.ctx.tokens.create("incident-officer", {"privacy"}))


def _notify(officer: Client, accounts: list[str]) -> tuple[str, dict]:
    status, _, incident = officer.request("POST", "/v1/incidents", {
        "summary": "Delivery receipts of one day were exposed.", "detected_at": time.time() - 60,
        "accounts": accounts})
    assert status == 201, incident
    status, _, answer = officer.request("POST", f"/v1/incidents/{incident['id']}/notify-customers",
                                        {})
    assert status == 200, answer
    assert answer["customers_notified_at"] > 0
    return incident["id"], answer


def _settled(officer: Client, incident_id: str) -> dict[str, int] | None:
    """The incident's notice outcomes once no mail is waiting any more, else None."""
    status, _, listed = officer.request("GET", "/v1/incidents")
    assert status == 200, listed
    incident = next(i for i in listed["incidents"] if i["id"] == incident_id)
    return None if incident["customers_queued"] else {k: incident[k] for k in OUTCOMES}


def test_without_a_mail_server_no_customer_counts_as_notified(tmp_path):
    engine = Engine.start(tmp_path / "data", http=True, overrides=overrides())  # no [email] host
    try:
        officer = _officer(engine)
        account = engine.create_account("exposed@example.com")
        incident_id, answer = _notify(officer, [account.id])
        assert answer["customers_notified"] == 0, answer
        assert sum(answer[k] for k in OUTCOMES) == 1, answer
        outcome = wait_for(lambda: _settled(officer, incident_id), what="the notice handled")
        assert outcome == {"customers_notified": 0, "customers_queued": 0,
                           "customers_not_delivered": 1, "customers_unsent": 0}
    finally:
        engine.stop()


def test_only_mails_the_server_accepted_count_as_customers_notified(tmp_path, mailbox):
    engine = Engine.start(tmp_path / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    try:
        officer = _officer(engine)
        accounts = [engine.create_account(f"exposed{i}@example.com") for i in range(2)]
        for i in range(2):  # their confirmation links are out: the next mails are the notices
            mailbox.wait(f"exposed{i}@example.com", "onfirm")
        mailbox.reject_next = 1  # one of the two notices is refused for good (550)
        incident_id, answer = _notify(officer, [a.id for a in accounts])
        assert sum(answer[k] for k in OUTCOMES) == 2, answer
        outcome = wait_for(lambda: _settled(officer, incident_id), what="both notices handled")
        assert outcome == {"customers_notified": 1, "customers_queued": 0,
                           "customers_not_delivered": 0, "customers_unsent": 1}
        assert len([m for a in range(2) for m in mailbox.to(f"exposed{a}@example.com")
                    if "incident" in m["Subject"]]) == 1  # what customers_notified says
    finally:
        engine.stop()
