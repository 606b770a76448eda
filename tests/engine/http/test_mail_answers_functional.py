"""The routes that mail a link say what became of the mail, through the real customer and control ports.

Before, ``POST /v1/email/confirmation`` and ``POST /v1/accounts/{id}/confirmation`` answered
``{"sent": true}`` and ``POST /v1/privacy/requests`` that "a verification link was sent" also when no
mail server is configured (no ``[email] host``): the mail was only logged and nobody received it. Now
without a mail server they answer ``sent`` false, ``delivery`` ``not_delivered`` and why; with one,
``sent`` true and ``delivery`` ``queued``, and the mail arrives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct

from engine import Engine
from engine.privacy.requests import VERIFY_PURPOSE
from tests.engine.http.conftest import Client, overrides
from tests.mailbox import Mailbox, email_overrides, text_of

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


# --- the rest: account creation and rectification (control), the holder's own request steps (customer) ---


CONFIRM = "Confirm your smsroute e-mail address"


def _account_and_request_mail_answers(engine: Engine, prefix: str, link: Callable[[str], str],
                                      mailbox: Mailbox | None = None) -> dict[str, object]:
    """The ``mail`` of: ``POST /v1/accounts``, ``…/rectify`` to a new address and to the same one
    again (nothing mailed), ``GET /v1/privacy/verify`` (``link(address)``: the path of the
    verification link mailed to ``address``), and ``POST /v1/privacy/signed-requests``. With a
    ``mailbox``, the new account's link has arrived before the address is rectified (a link still
    queued for an old address is dropped unsent)."""
    officer, customer = _privacy_officer(engine), Client(engine.http.customer_port)
    mail: dict[str, object] = {}
    status, _, created = officer.request("POST", "/v1/accounts", {"email": f"{prefix}@example.com"})
    assert status == 201 and created["api_key"], created
    mail["create"] = created["mail"]
    account_id = created["id"]
    if mailbox is not None:
        assert mailbox.wait(f"{prefix}@example.com", CONFIRM)

    new = f"{prefix}-new@example.com"
    status, _, rectified = officer.request("POST", f"/v1/accounts/{account_id}/rectify", {"email": new})
    assert status == 200 and rectified["rectified"] == ["email"], rectified
    mail["rectify"] = rectified["mail"]
    status, _, again = officer.request("POST", f"/v1/accounts/{account_id}/rectify", {"email": new})
    assert status == 200, again
    mail["rectify same address"] = again["mail"]

    status, _, registered = officer.request("POST", "/v1/dsar", {"account_id": account_id,
                                                                 "type": "access"})
    assert status == 201, registered
    status, _, verified = customer.request("GET", link(new), token="")
    assert status == 200 and verified["id"] == registered["id"] and verified["status"] == "open", \
        verified
    mail["verify"] = verified["mail"]

    wallet = Account.create()
    engine.deposit(account_id, "1", "ethereum", f"tx-{prefix}", wallet.address)
    status, _, issued = customer.request("POST", "/v1/privacy/challenges",
                                         {"account_id": account_id, "type": "erasure"})
    assert status == 201, issued
    signature = wallet.sign_message(encode_defunct(text=issued["message"])).signature
    status, _, signed = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": "0x" + bytes(signature).hex()})
    assert status == 201 and signed["status"] == "open", signed
    mail["signed request"] = signed["mail"]
    return mail


ACCOUNT_STEPS = ("create", "rectify", "verify", "signed request")


def test_without_a_mail_server_account_and_request_steps_say_not_delivered(tmp_path):
    engine = Engine.start(tmp_path / "data", http=True, overrides=overrides())  # no [email] host

    def link(address: str) -> str:
        """No mail carries the link: a link for the newest pending request, as its mail would have
        held (the holder received it while a mail server was still configured, say)."""
        [pending] = [r for r in engine.privacy.requests.store.all()
                     if r.status == "awaiting_verification"]
        token, _ = engine.privacy.links.issue(VERIFY_PURPOSE, pending.id, 3600,
                                              account_id=pending.account_id)
        return f"/v1/privacy/verify?token={token}"

    try:
        mail = _account_and_request_mail_answers(engine, "quiet", link)
        assert mail == {**{step: NOT_DELIVERED for step in ACCOUNT_STEPS},
                        "rectify same address": None}
    finally:
        engine.stop()


def test_with_a_mail_server_account_and_request_steps_say_queued_and_the_mails_arrive(tmp_path,
                                                                                      mailbox):
    engine = Engine.start(tmp_path / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})

    def link(address: str) -> str:
        mail = mailbox.wait(address, "Confirm your data-subject request")[-1]
        url = urlsplit(re.search(r"https?://\S+", text_of(mail)).group(0))
        return f"{url.path}?{url.query}"

    try:
        mail = _account_and_request_mail_answers(engine, "loud", link, mailbox)
        assert mail == {**{step: QUEUED for step in ACCOUNT_STEPS}, "rectify same address": None}
        new = "loud-new@example.com"
        # the deadline of each opened request: the one verified by the link, the one signed
        assert len(mailbox.wait(new, "Your data-subject request dsr_", count=2)) == 2
        assert len(mailbox.wait(new, CONFIRM)) == 1  # the rectified address's link (queued before)
    finally:
        engine.stop()
