"""The mail outbox: durable across a reopen, sealed at rest under each account's data key, bounded,
retried with a schedule, swept; an account's erasure reaches its queued mail."""

from __future__ import annotations

import os
import time

import msgpack
import pytest

from engine.errors import CorruptRecord, KeyUnavailable, StoreFull
from storage.account_keys import DATA, AccountKeys
from storage.crypto import Sealer
from storage.env import open_env
from storage.keys import KeyRing, LocalKeyProvider
from storage.outbox import ORPHAN_KEY_GRACE_SECONDS, RECEIPT_SECONDS, NewMail, Outbox
from storage.pseudonyms import Pseudonyms
from tests.storage.conftest import T0

DAY = 86400


def _stores(tmp_path) -> tuple[KeyRing, AccountKeys, AccountKeys]:
    provider = LocalKeyProvider(tmp_path / "keys")
    ring = KeyRing(tmp_path / "keys", provider)
    pseudonyms = Pseudonyms(ring.secret("pseudonym"))
    return (ring, AccountKeys(tmp_path / "keys" / "accounts", provider, pseudonyms),
            AccountKeys(tmp_path / "keys" / "mail", provider, pseudonyms))


def _open(tmp_path, max_mails: int = 100, *, with_keys: bool = False):
    ring, accounts, mail_keys = _stores(tmp_path)
    for i in range(10):
        accounts.create(f"acc_{i:016x}")
    env = open_env(tmp_path / "mail", map_size=16 << 20)
    outbox = Outbox(env, accounts, mail_keys, max_mails=max_mails, legacy=ring.store_sealer("outbox"))
    return (env, outbox, accounts, mail_keys) if with_keys else (env, outbox)


def _mail(i: int = 0, **kw) -> NewMail:
    return NewMail("security_alert", f"acc_{i:016x}", f"holder{i}@example.com",
                   f"subject number {i}", f"the text of mail {i}", **kw)


def _opens_anywhere(env, sealers: list[Sealer]) -> list[bytes]:
    """Every plaintext any of ``sealers`` gets from any outbox value (header skipped or not)."""
    out = []
    with env.begin() as txn:
        for key, blob in txn.cursor(db=env.open_db(b"outbox")):
            for sealed in (bytes(blob), bytes(blob)[26:]):
                for sealer in sealers:
                    try:
                        out.append(sealer.open(sealed, bytes(key)))
                    except CorruptRecord:
                        pass
    return out


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


def test_each_mail_is_sealed_under_its_accounts_data_key_not_a_store_wide_key(tmp_path):
    env, outbox, accounts, _ = _open(tmp_path, with_keys=True)
    outbox.enqueue([_mail(1), _mail(2)], now=T0)
    ring = _stores(tmp_path)[0]
    assert _opens_anywhere(env, [ring.store_sealer("outbox")]) == []
    mine = _opens_anywhere(env, [accounts.sealer("acc_0000000000000001", DATA)])
    assert len(mine) == 1 and b"holder1@example.com" in mine[0]
    env.close()


def test_forget_account_removes_its_queued_mail_and_leaves_the_others(tmp_path):
    env, outbox, accounts, _ = _open(tmp_path, with_keys=True)
    mine = outbox.enqueue([_mail(1), _mail(1)], now=T0)
    [other] = outbox.enqueue([_mail(2)], now=T0)
    accounts.shred("acc_0000000000000001", (DATA,))  # what the erasure does first
    assert outbox.forget_account("acc_0000000000000001") == 2
    assert [m.mail_id for m in outbox.due(T0 + 1)] == [other] and len(outbox) == 1
    assert all(outbox.get(m) is None for m in mine)
    env.close()


def test_a_mail_whose_account_key_is_gone_is_dropped_unsent_and_none_can_be_queued(tmp_path):
    env, outbox, accounts, _ = _open(tmp_path, with_keys=True)
    [stale] = outbox.enqueue([_mail(3)], now=T0)  # e.g. queued in the instant of the erasure
    accounts.shred("acc_0000000000000003", (DATA,))
    assert outbox.get(stale) is None and outbox.due(T0 + 1) == []
    assert len(outbox) == 0 and outbox.erased == 1
    with pytest.raises(KeyUnavailable):
        outbox.enqueue([_mail(4), _mail(3)], now=T0)
    assert len(outbox) == 0  # refused whole
    env.close()


def test_a_mail_with_its_own_key_outlives_the_account_and_its_key_dies_with_the_mail(tmp_path):
    env, outbox, accounts, mail_keys = _open(tmp_path, with_keys=True)
    accounts.shred("acc_0000000000000005", (DATA,))
    [mail_id] = outbox.enqueue([NewMail("erasure_completed", "", "holder5@example.com", "s", "t",
                                        own_key=True)], now=T0)
    assert outbox.forget_account("acc_0000000000000005") == 0
    [key_file] = list((tmp_path / "keys" / "mail").glob("*.key"))
    sealer = mail_keys.sealer_for_token(bytes.fromhex(key_file.stem))
    assert any(b"holder5@example.com" in p for p in _opens_anywhere(env, [sealer]))
    [mail] = outbox.due(T0)
    assert (mail.mail_id, mail.to, mail.account_id) == (mail_id, "holder5@example.com", "")
    outbox.sent(mail_id)
    assert list((tmp_path / "keys" / "mail").glob("*.key")) == []
    with pytest.raises(KeyUnavailable):
        mail_keys.sealer_for_token(bytes.fromhex(key_file.stem))
    env.close()


def test_a_refused_enqueue_leaves_no_key_of_its_own_behind(tmp_path):
    env, outbox = _open(tmp_path, max_mails=1)
    with pytest.raises(StoreFull):
        outbox.enqueue([NewMail("erasure_completed", "", f"h{i}@example.com", "s", "t", own_key=True)
                        for i in range(2)], now=T0)
    assert list((tmp_path / "keys" / "mail").glob("*.key")) == []
    env.close()


def test_mail_of_the_older_format_is_still_sent_and_erased(tmp_path):
    env, outbox = _open(tmp_path)
    legacy = _stores(tmp_path)[0].store_sealer("outbox")
    mails, due = env.open_db(b"outbox"), env.open_db(b"outbox_due")
    with env.begin(write=True) as txn:
        for i, (account, to) in enumerate((("acc_0000000000000001", "old1@example.com"),
                                           ("acc_0000000000000002", "old2@example.com"))):
            key = int(T0 * 1e9).to_bytes(8, "big") + bytes([i]) * 8
            fields = {"template": "security_alert", "account_id": account, "to": to,
                      "subject": "s", "text": "t", "created_at": T0, "attempts": 0,
                      "next_attempt_at": T0, "last_error": ""}
            txn.put(key, legacy.seal(msgpack.packb(fields), key), db=mails)
            txn.put(int(T0 * 1000).to_bytes(8, "big") + key, b"", db=due)
    assert outbox.forget_account("acc_0000000000000001") == 1
    [left] = outbox.due(T0)
    assert left.to == "old2@example.com"
    outbox.retry(left.mail_id, T0 + 5, "x")
    outbox.sent(outbox.due(T0 + 5)[0].mail_id)
    assert len(outbox) == 0
    env.close()


def test_a_key_of_its_own_left_by_a_crash_before_its_mail_was_queued_is_swept_after_a_grace(tmp_path):
    """``enqueue`` makes a mail's own key durable before the transaction that queues the mail: a crash
    in between left a key file that nothing referred to and nothing ever removed."""
    env, outbox, _accounts, mail_keys = _open(tmp_path, with_keys=True)
    now = time.time()
    outbox.enqueue([_mail(1, own_key=True)], now=now)  # its key is in use: kept
    orphan, fresh = os.urandom(16), os.urandom(16)
    for token in (orphan, fresh):
        mail_keys.create_token(token, (DATA,))  # what enqueue does first; then the crash
    for path in mail_keys.directory.glob("*.key"):
        if path.stem != fresh.hex():  # older than the grace (an enqueue takes milliseconds)
            os.utime(path, (now - ORPHAN_KEY_GRACE_SECONDS - 60,) * 2)
    outbox.sweep(now)
    left = {p.stem for p in mail_keys.directory.glob("*.key")}
    assert orphan.hex() not in left
    assert fresh.hex() in left  # it may belong to an enqueue under way
    [mail] = outbox.due(now)  # the queued mail still opens
    assert mail.to == "holder1@example.com"
    assert len(left) == 2


def test_withdrawn_mail_leaves_unsent_and_a_sent_one_keeps_its_receipt(tmp_path):
    """``withdraw`` calls off mail that has not left (a lawful order released): removed, no receipt, so
    its outcome reads unsent; one already sent is skipped and stays ``sent``. Mail queued with ids
    taken first (``new_ids``) is queued under exactly those ids."""
    env, outbox = _open(tmp_path)
    ids = outbox.new_ids(3)
    assert outbox.enqueue([_mail(1), _mail(2), _mail(3)], ids=ids) == ids
    outbox.sent(ids[0])
    assert outbox.withdraw(ids) == ["acc_0000000000000002", "acc_0000000000000003"]
    assert [outbox.outcome(i) for i in ids] == ["sent", "unsent", "unsent"]
    assert len(outbox) == 0 and outbox.due(time.time() + DAY) == []
    assert outbox.withdraw(ids) == []
    with pytest.raises(ValueError):
        outbox.enqueue([_mail(1)], ids=[])
    env.close()


def test_a_mail_only_logged_reads_not_delivered_never_sent_and_its_receipt_is_swept(tmp_path):
    """No mail server configured: the worker logs the mail and ``logged`` records it. It leaves the
    outbox (the bounded outbox must not fill up waiting for a server that may never come) and its
    outcome is ``not_delivered``, distinct from a mail the server accepted — across a reopen, and
    until its receipt is swept like a sent one's."""
    env, outbox = _open(tmp_path)
    ids = outbox.enqueue([_mail(1), _mail(2)], now=T0)
    outbox.logged(ids[0], T0)
    outbox.sent(ids[1], T0)
    assert [outbox.outcome(i) for i in ids] == ["not_delivered", "sent"]
    assert len(outbox) == 0 and outbox.due(T0 + DAY) == []
    env.close()
    env, outbox = _open(tmp_path)
    assert [outbox.outcome(i) for i in ids] == ["not_delivered", "sent"]
    outbox.sweep(T0 + RECEIPT_SECONDS + DAY)
    assert [outbox.outcome(i) for i in ids] == ["unsent", "unsent"]
    env.close()
