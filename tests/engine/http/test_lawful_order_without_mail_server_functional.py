"""Policy 5 without a mail server: a notice that was only logged is no notice.

With no ``[email] host`` (the embedded default) a lawful order's notice is only logged. Before, the outbox
recorded it ``sent`` and the disclosure went ahead although no holder was told anything. Through the real
control port: the notice reads ``not_delivered``, disclosure is refused 409 ``holder_not_notified`` with a
message that says why and what to do, giving the notice again is refused while there still is no mail
server, and ``/v1/stats`` says mail delivery is not configured. Restarted with a loopback SMTP server
(``tests.mailbox``) the notice is given again, reaches the holder, and only then is the body disclosed.
"""

from __future__ import annotations

import time

from engine import Engine
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, overrides, wait_for
from tests.mailbox import email_overrides, text_of

BODY = "held body MAILHONEST"


def _privacy(engine: Engine, name: str) -> Client:
    """A legal officer who may also read ``/v1/stats`` (role ``viewer``)."""
    return Client(engine.http.control_port, engine.http.ctx.tokens.create(name, {"privacy", "viewer"}))


def _notice_state(privacy: Client, hold_id: str) -> str:
    status, _, listed = privacy.request("GET", "/v1/holds")
    assert status == 200, listed
    return next(h for h in listed["holds"] if h["hold_id"] == hold_id)["notice"]["state"]


def _disclose(privacy: Client, hold_id: str, message_id: str) -> tuple[int, dict]:
    status, _, answer = privacy.request("POST", f"/v1/holds/{hold_id}/disclosures",
                                        {"message_id": message_id})
    return status, answer


def test_an_order_noticed_without_a_mail_server_is_not_disclosed_until_noticed_with_one(tmp_path,
                                                                                      mailbox):
    data_dir = tmp_path / "data"
    engine = Engine.start(data_dir, http=True, overrides=overrides())  # no [email] host
    try:
        privacy = _privacy(engine, "legal-officer")
        account = funded_account(engine, email="unreached@example.com")
        api = Client(engine.http.customer_port, account.api_key)
        status, _, placed = privacy.request("POST", "/v1/holds", {
            "kind": "lawful_order", "reason": "investigation", "reference": "CASE-NOMAIL-1",
            "until": time.time() + 3600, "account_id": account.id, "authority": "subpoena"})
        assert status == 201, placed
        status, _, sent = api.request("POST", "/v1/messages",
                                      {"to": DE_NUMBER, "from": "ACME", "body": BODY})
        assert status == 202, sent
        message_id = sent["id"]
        wait_for(lambda: engine.status(message_id).status == "delivered", what="delivery")
        pop = engine.status(message_id).pop
        hold_id = next(h["hold_id"] for h in placed["holds"] if h["pop"] == pop)

        # the notice was handled (only logged) and says so: never "sent"
        wait_for(lambda: _notice_state(privacy, hold_id) != "queued", what="the notice handled")
        assert _notice_state(privacy, hold_id) == "not_delivered"
        status, _, stats = privacy.request("GET", "/v1/stats")
        assert status == 200, stats
        assert stats["mail"]["delivery"] == "not_configured", stats["mail"]
        assert stats["mail"]["sent"] == 0 and stats["mail"]["not_delivered"] >= 2  # + confirmation

        status, refused = _disclose(privacy, hold_id, message_id)
        assert status == 409 and refused["error"]["code"] == "holder_not_notified", refused
        message = refused["error"]["message"]
        for says in ("no mail server is configured", "[email]", "POST /v1/holds/{id}/notice",
                     "notice_not_permitted"):
            assert says in message, message
        assert BODY not in str(refused)

        # giving it again still without a mail server would only log it again: refused, said why
        status, _, again = privacy.request("POST", f"/v1/holds/{hold_id}/notice",
                                           {"authority": "subpoena"})
        assert status == 409 and again["error"]["code"] == "mail_not_configured", again
        assert "[email]" in again["error"]["message"]
        assert _notice_state(privacy, hold_id) == "not_delivered"
    finally:
        engine.stop()

    engine = Engine.start(data_dir, http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    try:
        privacy = _privacy(engine, "legal-officer-2")
        status, refused = _disclose(privacy, hold_id, message_id)  # still not told
        assert status == 409 and refused["error"]["code"] == "holder_not_notified", refused

        status, _, again = privacy.request("POST", f"/v1/holds/{hold_id}/notice",
                                           {"authority": "subpoena"})
        assert status == 200, again
        assert again["notice"] == {"state": "queued", "mails": 1}
        mail = mailbox.wait("unreached@example.com", "lawful request")[0]
        assert "CASE-NOMAIL-1" in text_of(mail)

        answers = []
        wait_for(lambda: answers.append(_disclose(privacy, hold_id, message_id)) or
                 answers[-1][0] != 409, what="disclosure once the notice was delivered")
        assert answers[-1][0] == 200 and answers[-1][1]["body"] == BODY, answers[-1]
        assert _notice_state(privacy, hold_id) == "sent"
        status, _, stats = privacy.request("GET", "/v1/stats")
        assert stats["mail"]["delivery"] == "smtp"
    finally:
        engine.stop()


def test_a_waiver_is_recorded_without_a_mail_server(tmp_path):
    """Notice that is legally not permitted needs no mail: recorded (and disclosure allowed) even
    while no mail server is configured, for an order whose notice was not delivered."""
    engine = Engine.start(tmp_path / "data", http=True, overrides=overrides())
    try:
        privacy = _privacy(engine, "legal-officer")
        account = funded_account(engine, email="gagged@example.com")
        status, _, placed = privacy.request("POST", "/v1/holds", {
            "kind": "lawful_order", "reason": "investigation", "reference": "CASE-NOMAIL-2",
            "until": time.time() + 3600, "account_id": account.id, "authority": "court_order"})
        assert status == 201, placed
        hold_id = placed["holds"][0]["hold_id"]
        wait_for(lambda: _notice_state(privacy, hold_id) == "not_delivered", what="the notice logged")
        status, _, waived = privacy.request("POST", f"/v1/holds/{hold_id}/notice", {
            "authority": "court_order",
            "notice_not_permitted": {"reason": "gag order", "reference": "NDO-9"}})
        assert status == 200 and waived["notice"]["state"] == "not_permitted", waived
        assert _notice_state(privacy, hold_id) == "not_permitted"
    finally:
        engine.stop()
