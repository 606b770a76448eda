"""The mail outbox: durable across a reopen, sealed at rest, bounded, retried with a schedule, swept."""

from __future__ import annotations

import pytest

from engine.errors import StoreFull
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.outbox import NewMail, Outbox
from tests.storage.conftest import T0

DAY = 86400


def _open(tmp_path, max_mails: int = 100):
    keys = KeyRing(tmp_path / "keys", LocalKeyProvider(tmp_path / "keys"))
    env = open_env(tmp_path / "mail", map_size=16 << 20)
    return env, Outbox(env, keys.store_sealer("outbox"), max_mails=max_mails)


def _mail(i: int = 0) -> NewMail:
    return NewMail("security_alert", f"acc_{i:016x}", f"holder{i}@example.com",
                   f"subject number {i}", f"the text of mail {i}")


def test_a_queued_mail_survives_closing_and_reopening_the_store(tmp_path):
    env, outbox = _open(tmp_path)
    [mail_id] = outbox.enqueue([_mail(1)], now=T0)
    env.close()
    env, outbox = _open(tmp_path)
    [mail] = outbox.due(T0)
    assert (mail.mail_id, mail.to, mail.subject, mail.text) == (
        mail_id, "holder1@example.com", "subject number 1", "the text of mail 1")
    env.close()


def test_addresses_subjects_and_texts_are_not_readable_in_the_data_file(tmp_path):
    env, outbox = _open(tmp_path)
    outbox.enqueue([_mail(7)], now=T0)
    env.close()
    raw = (tmp_path / "mail" / "data.mdb").read_bytes()
    for plain in (b"holder7@example.com", b"subject number 7", b"the text of mail 7"):
        assert plain not in raw


def test_a_mailing_that_does_not_fit_is_refused_whole(tmp_path):
    env, outbox = _open(tmp_path, max_mails=3)
    outbox.enqueue([_mail(0), _mail(1)], now=T0)
    with pytest.raises(StoreFull):
        outbox.enqueue([_mail(2), _mail(3)], now=T0)
    assert len(outbox) == 2  # nothing of the refused mailing was queued
    outbox.enqueue([_mail(2)], now=T0)
    assert len(outbox) == 3
    env.close()


def test_a_failed_mail_waits_for_its_next_attempt_and_a_sent_one_is_gone(tmp_path):
    env, outbox = _open(tmp_path)
    first, second = outbox.enqueue([_mail(0), _mail(1)], now=T0)
    outbox.retry(first, T0 + 60, "SMTPServerDisconnected")
    assert [m.mail_id for m in outbox.due(T0 + 1)] == [second]
    outbox.sent(second)
    assert outbox.due(T0 + 59) == [] and outbox.next_due_at() == pytest.approx(T0 + 60)
    [again] = outbox.due(T0 + 60)
    assert (again.mail_id, again.attempts, again.last_error) == (first, 1,
                                                                 "SMTPServerDisconnected")
    env.close()


def test_mail_still_unsent_after_three_days_is_swept_and_newer_mail_kept(tmp_path):
    env, outbox = _open(tmp_path)
    outbox.enqueue([_mail(0)], now=T0)
    [young] = outbox.enqueue([_mail(1)], now=T0 + 2 * DAY)
    assert outbox.sweep(T0 + 3 * DAY + 1) == 1
    assert [m.mail_id for m in outbox.due(T0 + 4 * DAY)] == [young]
    env.close()
