"""Rectification and queued mail, against a real SMTP server on loopback: mail already waiting when the
holder corrects their address goes to the new address only, across a restart and when a send to the old
address is under way."""

from __future__ import annotations

from engine import Engine
from tests.mailbox import email_overrides
from tests.waiting import wait_for

OLD, NEW = "old-holder@example.com", "new-holder@example.com"


def _outbox_empty(engine: Engine) -> dict:
    return wait_for(lambda: (s := engine.stats()["mail"])["outbox"] == 0 and s,
                    what="the outbox to empty")


def test_mail_waiting_for_a_retry_goes_to_the_rectified_address_after_a_restart(tmp_path, mailbox):
    mailbox.refuse_next = 10**9  # the server refuses every mail for now (451)
    overrides = {"email": email_overrides(mailbox)}
    engine = Engine.start(tmp_path / "data", overrides=overrides)
    try:
        account_id = engine.create_account(OLD).id
        engine.notices.security_alert(account_id, "api_key_created")
        wait_for(lambda: engine.stats()["mail"]["retried"] >= 2, what="both mails to fail once")
        engine.rectify_account(account_id, email=NEW)
    finally:
        engine.stop()
    mailbox.refuse_next = 0
    engine = Engine.start(tmp_path / "data", overrides=overrides)
    try:
        mailbox.wait(NEW, "security alert: api key created")
        mailbox.wait(NEW, "Confirm")  # the link for the new address
        stats = _outbox_empty(engine)
        assert stats["superseded"] == 1  # the link for the old address was not sent
        assert mailbox.to(OLD) == []
    finally:
        engine.stop()


def test_a_send_to_the_old_address_under_way_is_made_again_to_the_new_one(tmp_path, mailbox):
    engine = Engine.start(tmp_path / "data", overrides={"email": email_overrides(mailbox)})
    try:
        account_id = engine.create_account(OLD).id
        mailbox.wait(OLD, "Confirm")
        mailbox.hold()  # the next send stalls at its recipient: under way, nothing accepted yet
        engine.notices.security_alert(account_id, "api_key_created")
        wait_for(lambda: mailbox.stalled >= 1, what="the alert's send to stall")
        engine.rectify_account(account_id, email=NEW)
        mailbox.release()
        mailbox.wait(NEW, "security alert: api key created")
        _outbox_empty(engine)
        assert [m["Subject"] for m in mailbox.to(OLD)] == ["Confirm your smsroute e-mail address"]
    finally:
        engine.stop()
