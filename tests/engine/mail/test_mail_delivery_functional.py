"""The mail worker against a real SMTP server on loopback: retries, survival of kill -9, and the
embedded default that only logs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack

from engine import Engine
from tests.mailbox import Mailbox, email_overrides, text_of
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[3]


def test_a_mail_the_server_refuses_for_now_is_retried_until_it_is_accepted(tmp_path, mailbox):
    mailbox.refuse_next = 2
    engine = Engine.start(tmp_path / "data", overrides={"email": email_overrides(mailbox)})
    try:
        engine.create_account("retry@example.com")
        mailbox.wait("retry@example.com", "Confirm")
        assert mailbox.refuse_next == 0  # two refusals came first
        stats = wait_for(lambda: (s := engine.stats()["mail"])["sent"] == 1 and s,
                         what="the worker to record the send")
        assert stats["retried"] == 2 and stats["outbox"] == 0  # swept once sent
        assert stats["not_delivered"] == 0 and stats["delivery"] == "smtp"
    finally:
        engine.stop()


def test_a_mail_queued_while_the_server_is_down_is_sent_after_a_restart(tmp_path):
    down = Mailbox()
    port = down.port
    down.close()  # nothing listens there now: every attempt fails to connect
    overrides = {"email": {"host": "127.0.0.1", "port": port, "tls": "none",
                           "retry_base_seconds": 0.01, "retry_cap_seconds": 0.05}}
    engine = Engine.start(tmp_path / "data", overrides=overrides)
    engine.create_account("later@example.com")
    wait_for(lambda: engine.stats()["mail"]["retried"] >= 1, what="a failed attempt")
    engine.stop()
    box = Mailbox()
    try:
        overrides["email"]["port"] = box.port
        engine = Engine.start(tmp_path / "data", overrides=overrides)
        try:
            assert "Confirm" in box.wait("later@example.com", "Confirm")[0]["Subject"]
        finally:
            engine.stop()
    finally:
        box.close()


def test_a_queued_mail_survives_kill_minus_9_and_is_sent_after_the_restart(tmp_path, mailbox):
    mailbox.refuse_next = 10**9  # the server refuses everything while the child lives
    out = tmp_path / "child.out"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.engine.mail.mail_crash_child", str(tmp_path / "data"),
         str(mailbox.port), str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        line = wait_for(lambda: out.exists() and out.read_text().strip(), what="the child's account",
                        timeout=60)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    account_id = line.split()[1]
    assert not mailbox.mails
    mailbox.refuse_next = 0
    engine = Engine.start(tmp_path / "data", overrides={"email": email_overrides(mailbox)})
    try:
        mail = mailbox.wait("crash@example.com", "Confirm", timeout=30)[0]
        assert account_id in text_of(mail)
    finally:
        engine.stop()


def test_without_an_smtp_host_mail_is_only_logged_by_template_and_account_pseudonym(tmp_path, caplog):
    """A log line outlives an erasure: mail lines name the account by its pseudonym, never its id."""
    caplog.set_level(logging.INFO)
    engine = Engine.start(tmp_path / "data")
    try:
        account = engine.create_account("quiet@example.com")
        stats = wait_for(lambda: (s := engine.stats()["mail"])["not_delivered"] >= 1 and s,
                         what="the mail to be handled")
        pseudonym = engine.runtime.pseudonyms.pseudonym(account.id)
    finally:
        engine.stop()
    # only logged: counted and shown as not delivered, never as sent
    assert stats["sent"] == 0 and stats["outbox"] == 0 and stats["delivery"] == "not_configured"
    warned = [r.getMessage() for r in caplog.records
              if r.name == "engine.mail.service" and r.levelno == logging.WARNING]
    assert len(warned) == 1 and "no mail server is configured" in warned[0], warned
    assert "lawful-order notices" in warned[0] and "security alerts" in warned[0]
    logged = [r for r in caplog.records if r.name.startswith("engine.mail")]
    assert any(getattr(r, "template", None) == "account_confirmation"
               and getattr(r, "account", None) == pseudonym for r in logged)
    # one line per mail, and it does not claim a send (before: "mail not sent" and then "mail sent")
    lines = [r.getMessage() for r in logged if getattr(r, "template", None) == "account_confirmation"]
    assert lines == ["mail not sent (no [email] host configured)"], lines
    assert [r.getMessage() for r in logged if account.id in f"{r.getMessage()} {r.__dict__}"] == []
    everything = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "quiet@example.com" not in everything and "confirm?token" not in everything


def test_a_mail_key_a_crash_left_unused_is_removed_at_the_next_start(tmp_path):
    """An erasure confirmation's own key file is written before its mail is queued; a crash in between
    left ``keys/mail/<token>.key`` behind for good."""
    data = tmp_path / "data"
    Engine.start(data).stop()
    orphan = data / "keys" / "mail" / f"{os.urandom(16).hex()}.key"
    # a key file as enqueue writes it (its wrapped key does not matter: no mail refers to it)
    orphan.write_bytes(msgpack.packb({"v": 1, "data": os.urandom(60)}))
    old = time.time() - 2 * 86400
    os.utime(orphan, (old, old))
    engine = Engine.start(data)
    try:
        assert not orphan.exists()
    finally:
        engine.stop()
