"""An incident's customer notice goes to each affected holder once (policy 9), through the real control port.

Before, every ``POST /v1/incidents/{id}/notify-customers`` mailed every affected holder again, so a
retried call (a client time-out, an operator clicking twice) sent duplicate breach notices, and the
counts were per mail: two calls for two holders read four. Now a call mails only holders who have no
notice yet and says how many it mailed (``notices_queued``) and how many already had theirs
(``already_notified``); the counts are per holder; ``resend_failed`` mails again those whose notice failed.
"""

from __future__ import annotations

import threading
import time

from engine import Engine
from tests.engine.http.conftest import Client, overrides, wait_for
from tests.mailbox import email_overrides

OUTCOMES = ("customers_notified", "customers_queued", "customers_not_delivered", "customers_unsent")
NOT_DELIVERED = {"sent": False, "delivery": "not_delivered",
                 "message": "no mail server is configured ([email] host): the mail was only logged, "
                            "nobody received it"}


def _officer(engine: Engine) -> Client:
    return Client(engine.http.control_port,
                  engine.http.ctx.tokens.create("incident-officer", {"privacy", "viewer"}))


def _open(officer: Client, accounts: list[str] | str) -> str:
    status, _, incident = officer.request("POST", "/v1/incidents", {
        "summary": "Delivery receipts of one day were exposed.", "detected_at": time.time() - 60,
        "accounts": accounts})
    assert status == 201, incident
    return incident["id"]


def _notify(officer: Client, incident_id: str, body: dict | None = None) -> dict:
    status, _, answer = officer.request("POST", f"/v1/incidents/{incident_id}/notify-customers",
                                        body)
    assert status == 200, answer
    return answer


def _settled(officer: Client, incident_id: str) -> dict[str, int] | None:
    """The incident's notice counts once no mail is waiting any more, else None."""
    status, _, listed = officer.request("GET", "/v1/incidents")
    assert status == 200, listed
    incident = next(i for i in listed["incidents"] if i["id"] == incident_id)
    return None if incident["customers_queued"] else {k: incident[k] for k in OUTCOMES}


def _mails_handled(officer: Client) -> dict[str, int] | None:
    """The mail worker's counts once the outbox is empty, else None."""
    status, _, stats = officer.request("GET", "/v1/stats")
    assert status == 200, stats
    mail = stats["mail"]
    return None if mail["outbox"] else mail


def test_without_a_mail_server_a_second_call_mails_nobody_and_resend_failed_mails_again(tmp_path):
    engine = Engine.start(tmp_path / "data", http=True, overrides=overrides())  # no [email] host
    try:
        officer = _officer(engine)
        for i in range(2):
            engine.create_account(f"exposed{i}@example.com")
        incident_id = _open(officer, "all")
        engine.create_account("later@example.com")  # created after the incident: not affected
        before = wait_for(lambda: _mails_handled(officer), what="the confirmation links handled")

        first = _notify(officer, incident_id)
        assert (first["notices_queued"], first["already_notified"], first["mail"]) == \
            (2, 0, NOT_DELIVERED), first
        again = _notify(officer, incident_id)  # the retry: nobody is mailed twice
        assert (again["notices_queued"], again["already_notified"], again["mail"]) == (0, 2, None)
        assert again["customers_notified_at"] == first["customers_notified_at"]
        assert wait_for(lambda: _settled(officer, incident_id), what="the notices handled") == {
            "customers_notified": 0, "customers_queued": 0, "customers_not_delivered": 2,
            "customers_unsent": 0}  # per holder (before: 4, one per mail)
        after = wait_for(lambda: _mails_handled(officer), what="the notices handled")
        assert after["not_delivered"] - before["not_delivered"] == 2  # two mails, not four

        # the holders whose notice was only logged are mailed again when asked (a server configured
        # since, say), and still counted once each
        resent = _notify(officer, incident_id, {"resend_failed": True})
        assert (resent["notices_queued"], resent["already_notified"]) == (2, 0), resent
        assert wait_for(lambda: _settled(officer, incident_id), what="the notices handled") == {
            "customers_notified": 0, "customers_queued": 0, "customers_not_delivered": 2,
            "customers_unsent": 0}
        resent_after = wait_for(lambda: _mails_handled(officer), what="the notices handled")
        assert resent_after["not_delivered"] - before["not_delivered"] == 4
    finally:
        engine.stop()


def test_with_a_mail_server_each_holder_gets_one_notice_and_only_the_refused_one_is_sent_again(
        tmp_path, mailbox):
    engine = Engine.start(tmp_path / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    try:
        officer = _officer(engine)
        addresses = [f"once{i}@example.com" for i in range(2)]
        accounts = [engine.create_account(a).id for a in addresses]
        for address in addresses:  # their confirmation links are out: the next mails are the notices
            mailbox.wait(address, "onfirm")
        incident_id = _open(officer, accounts)
        mailbox.reject_next = 1  # one of the two notices is refused for good (550)

        # an operator clicking twice: two calls at once mail each holder once between them
        answers: list[dict] = []
        calls = [threading.Thread(target=lambda: answers.append(_notify(officer, incident_id)))
                 for _ in range(2)]
        for call in calls:
            call.start()
        for call in calls:
            call.join(30)
        assert sorted(a["notices_queued"] for a in answers) == [0, 2], answers
        assert sorted(a["already_notified"] for a in answers) == [0, 2], answers
        assert [a["mail"] for a in answers if a["notices_queued"]] == [
            {"sent": True, "delivery": "queued"}]
        assert wait_for(lambda: _settled(officer, incident_id), what="both notices handled") == {
            "customers_notified": 1, "customers_queued": 0, "customers_not_delivered": 0,
            "customers_unsent": 1}
        retry = _notify(officer, incident_id)
        assert (retry["notices_queued"], retry["already_notified"], retry["mail"]) == (0, 2, None)

        resent = _notify(officer, incident_id, {"resend_failed": True})  # only the refused one
        assert (resent["notices_queued"], resent["already_notified"], resent["mail"]) == \
            (1, 1, {"sent": True, "delivery": "queued"}), resent
        assert wait_for(lambda: _settled(officer, incident_id), what="the resent notice handled") == {
            "customers_notified": 2, "customers_queued": 0, "customers_not_delivered": 0,
            "customers_unsent": 0}
        assert _notify(officer, incident_id, {"resend_failed": True})["notices_queued"] == 0
        wait_for(lambda: _mails_handled(officer), what="the outbox empty")
        assert [len([m for m in mailbox.to(a) if "incident" in m["Subject"]]) for a in addresses] \
            == [1, 1]  # each holder received exactly one notice
    finally:
        engine.stop()
