"""The routes that mail a link say what became of the mail, through the real customer and control ports.

Before, ``POST /v1/email/confirmation`` and ``POST /v1/accounts/{id}/confirmation`` answered
``{"sent": true}`` and ``POST /v1/privacy/requests`` that "a verification link was sent" also when no
mail server is configured (no ``[email] host``): the mail was only logged and nobody received it. Now
without a mail server they answer ``sent`` false, ``delivery`` ``not_delivered`` and why; with one,
``sent`` true and ``delivery`` ``queued``, and the mail arrives.
"""

from __future__ import annotations

import time

from engine import Engine
from tests.engine.http.conftest import Client, overrides
from tests.mailbox import email_overrides

NOT_DELIVERED = {"sent": False, "delivery": "not_delivered",
                 "message": "no mail server is configured ([email] host): the mail was only logged, "
                            "nobody received it"}


def _ports(engine: Engine, email: str) -> tuple[Client, Client, str]:
    """(the account's customer client, an operator's control client, the account id)."""
    account = engine.create_account(email)
    operator = Client(engine.http.control_port,
                      engine.http.ctx.tokens.create("mail-operator", {"operator"}))
    return Client(engine.http.customer_port, account.api_key), operator, account.id


def test_without_a_mail_server_the_confirmation_and_verification_answers_say_not_delivered(
        tmp_path):
    engine = Engine.start(tmp_path / "data", http=True, overrides=overrides())  # no [email] host
    try:
        api, operator, account_id = _ports(engine, "nomail@example.com")
        status, _, answer = api.request("POST", "/v1/email/confirmation")
        assert (status, answer) == (202, NOT_DELIVERED)
        status, _, answer = operator.request("POST", f"/v1/accounts/{account_id}/confirmation")
        assert (status, answer) == (202, {"id": account_id, **NOT_DELIVERED})

        # the same answer for an address of an account and for one of nobody (no enumeration)
        anonymous = Client(engine.http.customer_port)
        answers = [anonymous.request("POST", "/v1/privacy/requests",
                                     {"type": "access", "email": email})
                   for email in ("nomail@example.com", "nobody@example.com")]
        assert answers[0][0] == answers[1][0] == 202 and answers[0][2] == answers[1][2]
        assert answers[0][2]["delivery"] == "not_delivered"
        assert "no mail server is configured" in answers[0][2]["status"]
    finally:
        engine.stop()


def test_with_a_mail_server_the_confirmation_is_queued_and_arrives(tmp_path, mailbox):
    engine = Engine.start(tmp_path / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    try:
        api, operator, account_id = _ports(engine, "mailed@example.com")
        mailbox.wait("mailed@example.com", "onfirm")  # the sign-up's own link
        status, _, answer = api.request("POST", "/v1/email/confirmation")
        assert (status, answer) == (202, {"sent": True, "delivery": "queued"})
        status, _, answer = operator.request("POST", f"/v1/accounts/{account_id}/confirmation")
        assert (status, answer) == (202, {"id": account_id, "sent": True, "delivery": "queued"})
        assert len(mailbox.wait("mailed@example.com", "onfirm", count=3)) == 3

        status, _, answer = Client(engine.http.customer_port).request(
            "POST", "/v1/privacy/requests", {"type": "access", "email": "nobody@example.com"})
        assert status == 202 and answer["delivery"] == "queued", answer
    finally:
        engine.stop()


# --- the other routes that mail account holders: data-subject request steps, policy and price notices ---

QUEUED = {"sent": True, "delivery": "queued"}


def _privacy_officer(engine: Engine) -> Client:
    return Client(engine.http.control_port,
                  engine.http.ctx.tokens.create("mail-privacy", {"privacy", "operator"}))


def _holder_mail_answers(engine: Engine, officer: Client, account_id: str) -> dict[str, object]:
    """The ``mail`` of each control-port step that mails the holder: a request registered (the
    verification link), extended, refused; another fulfilled; a policy change; a price change, and
    the same table again (no price changes: nothing mailed)."""
    mail: dict[str, object] = {}
    status, _, registered = officer.request("POST", "/v1/dsar", {"account_id": account_id,
                                                                 "type": "access"})
    assert status == 201, registered
    mail["register"] = registered["mail"]
    engine.privacy.requests.store.verify(registered["id"], "email_link")  # as its link would
    status, _, extended = officer.request("POST", f"/v1/dsar/{registered['id']}/extend",
                                          {"reason": "Several systems hold the data."})
    assert status == 200 and extended["extended"], extended
    mail["extend"] = extended["mail"]
    status, _, refused = officer.request("POST", f"/v1/dsar/{registered['id']}/refuse",
                                         {"reason": "Withdrawn by the holder."})
    assert status == 200 and refused["status"] == "refused", refused
    mail["refuse"] = refused["mail"]

    other = officer.request("POST", "/v1/dsar", {"account_id": account_id, "type": "objection"})[2]
    engine.privacy.requests.store.verify(other["id"], "email_link")  # as its link would
    status, _, fulfilled = officer.request("POST", f"/v1/dsar/{other['id']}/fulfil", {})
    assert status == 200 and fulfilled["request"]["status"] == "completed", fulfilled
    mail["fulfil"] = fulfilled["mail"]

    status, _, policy = officer.request("POST", "/v1/policy-changes", {
        "effective_at": time.time() + 31 * 86400, "summary": "Shorter log retention."})
    assert status == 201 and policy["notices_queued"] == 1, policy
    mail["policy"] = policy["mail"]

    table = engine.routing_table()
    table["rates"]["DE"] += 5000
    status, _, routing = officer.request("PUT", "/v1/routing", table)
    assert status == 200 and routing["price_notices_queued"] == 1, routing
    assert routing["rates"] == table["rates"]  # the table now
    mail["routing"] = routing["mail"]
    status, _, unchanged = officer.request("PUT", "/v1/routing", table)
    assert status == 200 and unchanged["price_notices_queued"] == 0, unchanged
    mail["routing unchanged"] = unchanged["mail"]
    return mail


STEPS = ("register", "extend", "refuse", "fulfil", "policy", "routing")


def test_without_a_mail_server_the_holder_mail_steps_say_not_delivered(tmp_path):
    engine = Engine.start(tmp_path / "data", http=True, overrides=overrides())  # no [email] host
    try:
        account_id = engine.create_account("steps@example.com").id
        mail = _holder_mail_answers(engine, _privacy_officer(engine), account_id)
        assert mail == {**{step: NOT_DELIVERED for step in STEPS}, "routing unchanged": None}
    finally:
        engine.stop()


def test_with_a_mail_server_the_holder_mail_steps_say_queued_and_the_mails_arrive(tmp_path,
                                                                                  mailbox):
    engine = Engine.start(tmp_path / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    try:
        account_id = engine.create_account("steps@example.com").id
        mailbox.wait("steps@example.com", "onfirm")
        mail = _holder_mail_answers(engine, _privacy_officer(engine), account_id)
        assert mail == {**{step: QUEUED for step in STEPS}, "routing unchanged": None}
        for subject, count in (("Confirm your data", 2), ("more time", 1), ("refused", 1), ("completed", 1),
                               ("privacy policy", 1), ("price change", 1)):
            assert len(mailbox.wait("steps@example.com", subject, count=count)) == count, subject
    finally:
        engine.stop()
