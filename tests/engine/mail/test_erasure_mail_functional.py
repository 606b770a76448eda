"""Erasure reaches the mail outbox (policy 7.1): mail queued for an account when it is erased is never sent,
and no copy of it opens afterwards, even to the holder of the master key; the one mail that confirms the
erasure is sent, names only the request, and does not open either once it is gone. The SMTP side is a real
server on loopback that refuses (451) while the test holds delivery back."""

from __future__ import annotations

import threading
import time

import pytest

from engine import Engine
from engine.errors import KeyUnavailable
from tests.engine.test_erasure_disk_image_functional import attacker_keys, lmdb_values, readable
from tests.mailbox import email_overrides, text_of
from tests.waiting import wait_for

ERASED, BYSTANDER = "erased.mail.m4@example.com", "bystander.mail.m4@example.com"


def _image(engine: Engine, target) -> list[tuple[bytes, bytes]]:
    """Every value of the mail store at this moment (a disk image: LMDB never wipes freed pages)."""
    target.mkdir()
    engine.mail.env.copy(str(target))
    return lmdb_values(target)


def test_an_erased_accounts_queued_mail_is_never_sent_and_only_the_erasure_confirmation_goes(
        tmp_path, mailbox):
    mailbox.refuse_next = 10**9  # delivery held back: every attempt is answered 451
    data = tmp_path / "data"
    engine = Engine.start(data, overrides={"email": email_overrides(mailbox)})
    try:
        gone = engine.create_account(ERASED)  # a confirmation link
        engine.create_api_key(gone.id)  # and a security alert
        kept = engine.create_account(BYSTANDER)
        wait_for(lambda: engine.stats()["mail"]["retried"] >= 3, what="held-back attempts")
        assert engine.stats()["mail"]["outbox"] == 3
        images = _image(engine, tmp_path / "queued")
        assert any(ERASED.encode() in p for p in readable(images, attacker_keys(data / "keys")))

        desk = engine.privacy.requests
        request = desk.store.create(gone.id, "erasure", channel="wallet", verified_by="wallet:evm",
                                    opened_by="customer")
        result = desk.fulfil(request.id, actor="privacy:test")
        confirming = _image(engine, tmp_path / "confirming")  # the confirmation waits too
        assert any(ERASED.encode() in p for p in readable(confirming, attacker_keys(data / "keys")))
        images += confirming

        mailbox.refuse_next = 0
        mailbox.wait(BYSTANDER, "Confirm")
        [confirmation] = mailbox.wait(ERASED, ": completed")
        wait_for(lambda: engine.stats()["mail"]["outbox"] == 0, what="the outbox to empty")
        # nothing of what was queued for the erased account went out: only the confirmation
        assert [m["Subject"] for m in mailbox.to(ERASED)] == [confirmation["Subject"]]
        assert result["result"]["queued_mails_deleted"] == 2
        with pytest.raises(KeyUnavailable):  # nothing more can be queued for the erased account
            engine.notices.send("security_alert", gone.id, ERASED, kind="api_key_created",
                                at=time.time())
        assert engine.notices.security_alert(gone.id, "api_key_created") is None
        assert engine.stats()["mail"]["outbox"] == 0
        images += _image(engine, tmp_path / "sent")
    finally:
        engine.stop()
    assert request.id in confirmation["Subject"] and "erasure" in text_of(confirmation)
    assert gone.id not in text_of(confirmation) + confirmation["Subject"]
    assert kept.id in text_of(mailbox.to(BYSTANDER)[0])
    # no copy of any of it opens now: not the erased account's mail, not the sent confirmation
    keys = attacker_keys(data / "keys")
    assert [p for p in readable(images + lmdb_values(data), keys) if ERASED.encode() in p] == []
    mail_store = images + lmdb_values(data / "mail")
    assert [p for p in readable(mail_store, keys) if gone.id.encode() in p] == []
    assert list((data / "keys" / "mail").glob("*.key")) == []
    raw = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert ERASED.encode() not in raw


def test_an_erasure_returns_at_once_while_a_send_to_the_account_stalls_and_that_mail_never_goes(
        tmp_path, mailbox):
    """The erasure waited for the send under way to finish, i.e. up to the SMTP timeout when the server
    hangs (here 120 s). It now drops that connection instead: the mail was not accepted by the server, is
    no longer queued, and is never sent."""
    mailbox.hold()  # the server stops answering at RCPT TO
    engine = Engine.start(tmp_path / "data",
                          overrides={"email": email_overrides(mailbox, timeout_seconds=120)})
    try:
        gone = engine.create_account(ERASED)  # its confirmation link goes out and stalls
        wait_for(lambda: mailbox.stalled >= 1, what="the confirmation's send to stall")
        erasure = threading.Thread(target=engine.erase_account, args=(gone.id,), daemon=True)
        erasure.start()
        erasure.join(timeout=20)
        assert not erasure.is_alive(), "the erasure waited on the stalled SMTP server"
        mailbox.release()
        engine.create_account(BYSTANDER)
        mailbox.wait(BYSTANDER, "Confirm")
        wait_for(lambda: engine.stats()["mail"]["outbox"] == 0, what="the outbox to empty")
        assert mailbox.to(ERASED) == []
        assert engine.stats()["mail"]["erased"] == 1  # cancelled, not retried
    finally:
        mailbox.release()
        engine.stop()
