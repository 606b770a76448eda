"""The routes that mail a link say what became of the mail, through the real customer and control ports.

Before, ``POST /v1/email/confirmation`` and ``POST /v1/accounts/{id}/confirmation`` answered
``{"sent": true}`` and ``POST /v1/privacy/requests`` that "a verification link was sent" also when no
mail server is configured (no ``[email] host``): the mail was only logged and nobody received it. Now
without a mail server they answer ``sent`` false, ``delivery`` ``not_delivered`` and why; with one,
``sent`` true and ``delivery`` ``queued``, and the mail arrives.
"""

from __future__ import annotations

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
