"""Policy 5: "where legally permitted we notify the affected account holder before disclosure".

Through the real control port and a loopback SMTP server: a lawful order's held body is disclosed only
once the holder's notice was accepted by the mail server (refused with 409 ``notice_pending`` while the
server stalls), and the notice carries the authority type and the reference but no body, number or reason.
With ``notice_not_permitted`` no mail is queued, disclosure is allowed at once, and the waiver is in the
audit log and on the hold.
"""

from __future__ import annotations

import time

import pytest

from engine import Engine
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, overrides, wait_for
from tests.mailbox import email_overrides, text_of

BODY = "meet at the usual place BODYMARK"
REASON = "REASONMARK investigation of Jane Roe"


@pytest.fixture(scope="module")
def running(tmp_path_factory, mailbox):
    engine = Engine.start(tmp_path_factory.mktemp("order") / "data", http=True,
                          overrides={**overrides(), "email": email_overrides(mailbox)})
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def privacy(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("legal-officer", {"privacy"}))


def _account(running, email: str) -> tuple[str, Client]:
    account = funded_account(running, email=email)
    return account.id, Client(running.http.customer_port, account.api_key)


def _send(running, api: Client) -> str:
    """A message sent under the order: its body is kept for the order (the transient one goes at
    delivery)."""
    status, _, sent = api.request("POST", "/v1/messages",
                                  {"to": DE_NUMBER, "from": "ACME", "body": BODY})
    assert status == 202, sent
    wait_for(lambda: running.status(sent["id"]).status == "delivered", what="delivery")
    return sent["id"]


def _order(privacy, account_id: str, **extra) -> dict:
    status, _, placed = privacy.request("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": REASON, "reference": "CASE-ABC-7", "until": time.time() + 3600,
        "account_id": account_id, "authority": "court_order", **extra})
    assert status == 201, placed
    return placed


def _hold_with(running, placed: dict, message_id: str) -> str:
    """The order's hold at the POP that kept the message (an account order is one hold per POP)."""
    pop = running.status(message_id).pop
    return next(h["hold_id"] for h in placed["holds"] if h["pop"] == pop)


def _disclose(privacy, hold_id: str, message_id: str) -> tuple[int, dict]:
    status, _, answer = privacy.request("POST", f"/v1/holds/{hold_id}/disclosures",
                                        {"message_id": message_id})
    return status, answer


def _notices_to(mailbox, address: str) -> list:
    return [m for m in mailbox.to(address) if "lawful request" in m["Subject"]]


def _notice_of(privacy, hold_id: str) -> dict:
    status, _, listed = privacy.request("GET", "/v1/holds")
    assert status == 200
    return next(h for h in listed["holds"] if h["hold_id"] == hold_id)["notice"]


def test_a_lawful_order_is_disclosed_only_after_the_holder_was_mailed_its_notice(running, privacy,
                                                                                 mailbox):
    account_id, api = _account(running, "holder@example.com")
    mailbox.hold()  # the SMTP server stalls: the notice stays queued
    try:
        placed = _order(privacy, account_id)
        assert placed["notice"] == {"state": "queued", "mails": 1}
        message_id = _send(running, api)
        hold_id = _hold_with(running, placed, message_id)

        status, refused = _disclose(privacy, hold_id, message_id)
        assert status == 409 and refused["error"]["code"] == "notice_pending", refused
        assert BODY not in str(refused)
        assert _notice_of(privacy, hold_id)["state"] == "queued"
        assert _notices_to(mailbox, "holder@example.com") == []
    finally:
        mailbox.release()

    mail = mailbox.wait("holder@example.com", "lawful request")[0]
    text = text_of(mail)
    assert "a court order" in text and "CASE-ABC-7" in text and account_id in text
    for secret in ("BODYMARK", "REASONMARK", DE_NUMBER, DE_NUMBER[1:], "Jane Roe"):
        assert secret not in text and secret not in mail["Subject"]

    answers = []
    wait_for(lambda: answers.append(_disclose(privacy, hold_id, message_id)) or
             answers[-1][0] != 409, what="disclosure once the notice was sent")
    status, disclosed = answers[-1]
    assert status == 200 and disclosed["body"] == BODY
    assert _notice_of(privacy, hold_id)["state"] == "sent"


def test_notice_recorded_as_not_permitted_sends_no_mail_and_is_audited(running, privacy, mailbox):
    account_id, api = _account(running, "gagged@example.com")
    wait_for(lambda: len(running.mail.outbox) == 0, what="the confirmation mail sent")
    sent_before = running.mail.worker.counts["sent"]
    placed = _order(privacy, account_id, notice_not_permitted={
        "reason": "non-disclosure order attached to the warrant", "reference": "NDO-77"})
    assert placed["notice"] == {"state": "not_permitted", "mails": 0}
    assert running.mail.worker.counts["sent"] == sent_before and len(running.mail.outbox) == 0
    message_id = _send(running, api)
    hold_id = _hold_with(running, placed, message_id)

    status, disclosed = _disclose(privacy, hold_id, message_id)
    assert status == 200 and disclosed["body"] == BODY
    notice = _notice_of(privacy, hold_id)
    assert notice["state"] == "not_permitted" and notice["reference"] == "NDO-77"
    assert notice["reason"] == "non-disclosure order attached to the warrant"
    assert notice["by"] == "legal-officer"

    status, _, trail = privacy.request("GET", f"/v1/audit?kind=data_subject&account={account_id}")
    assert status == 200
    waived = [e for e in trail["entries"] if e["action"] == "lawful_order_notice_not_permitted"]
    assert [(e["actor"], e["target"]) for e in waived] == [
        ("legal-officer", ",".join(h["hold_id"] for h in placed["holds"]))]
    assert _notices_to(mailbox, "gagged@example.com") == []


@pytest.mark.parametrize("change", [
    {"authority": None},  # an order states its authority
    {"authority": "rumour"},
    {"notice_not_permitted": {"reason": "gag", "reference": ""}},  # a waiver names its basis
    {"notice_not_permitted": {"reason": "", "reference": "NDO-1"}},
])
def test_an_order_without_its_authority_or_with_a_waiver_without_basis_is_refused(running, privacy,
                                                                                   change):
    account = funded_account(running, email="refused@example.com")
    status, _, err = privacy.request("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": "r", "reference": "REF-1", "until": time.time() + 60,
        "account_id": account.id, "authority": "subpoena", **change})
    assert status == 400, err
    assert [h for h in running.active_holds() if h["account_id"] == account.id] == []


def test_a_court_reference_with_a_long_digit_run_is_registered_and_mailed_as_given(running, privacy,
                                                                                   mailbox):
    account_id, _ = _account(running, "docket@example.com")
    placed = _order(privacy, account_id, reference="2026-CV-123456789")
    assert placed["notice"] == {"state": "queued", "mails": 1}
    text = text_of(mailbox.wait("docket@example.com", "lawful request")[0])
    assert "(reference 2026-CV-123456789)" in text


@pytest.mark.parametrize("reference", [
    f"CASE {DE_NUMBER[1:]}",  # a destination number pasted into the reference, with or without +
    f"CASE {DE_NUMBER}",
    "CASE-7\nsecond line",  # one line only: the reference is not free text
    "C" * 101,  # bounded
    "CASE sk_live_abc",  # never a secret
])
def test_a_reference_that_could_carry_a_number_or_other_text_is_refused(running, privacy, mailbox,
                                                                        reference):
    account = funded_account(running, email="badref@example.com")
    status, _, err = privacy.request("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": "r", "reference": reference, "until": time.time() + 60,
        "account_id": account.id, "authority": "court_order"})
    assert status == 400 and "reference" in err["error"]["message"], err
    assert [h for h in running.active_holds() if h["account_id"] == account.id] == []


def test_an_order_whose_notices_do_not_all_fit_queues_none_of_them(running, privacy, mailbox):
    first_id, first = _account(running, "first@example.com")
    second_id, second = _account(running, "second@example.com")
    messages = [_send(running, first), _send(running, second)]
    outbox = running.mail.outbox
    wait_for(lambda: len(outbox) == 0, what="earlier mail sent")
    bound = outbox.max_mails
    mailbox.hold()
    outbox.max_mails = 1  # the [email] max_outbox bound: room for one of the two notices
    try:
        status, _, err = privacy.request("POST", "/v1/holds", {
            "kind": "lawful_order", "reason": REASON, "reference": "CASE-TWO-1",
            "until": time.time() + 3600, "message_ids": messages, "authority": "subpoena"})
        assert status == 503 and err["error"]["code"] == "store_full", err
        assert len(outbox) == 0  # the first holder is not told of an order that does not stand
        assert [h for h in running.active_holds() if set(h["message_ids"]) & set(messages)] == []
    finally:
        outbox.max_mails = bound
        mailbox.release()
    for account_id in (first_id, second_id):
        status, _, trail = privacy.request("GET", f"/v1/audit?kind=data_subject&account={account_id}")
        assert "lawful_order_notice_queued" not in [e["action"] for e in trail["entries"]]


def _stuck_order(running, privacy, mailbox, email: str) -> tuple[dict, str, str]:
    """A lawful order whose notice the mail server refused for good: (placement, hold id, message)."""
    account_id, api = _account(running, email)
    wait_for(lambda: len(running.mail.outbox) == 0, what="earlier mail sent")
    mailbox.reject_next = 1
    placed = _order(privacy, account_id)
    message_id = _send(running, api)
    hold_id = _hold_with(running, placed, message_id)
    wait_for(lambda: _notice_of(privacy, hold_id)["state"] == "unsent", what="the notice refused")
    status, refused = _disclose(privacy, hold_id, message_id)
    assert status == 409 and refused["error"]["code"] == "holder_not_notified", refused
    return placed, hold_id, message_id


def _audit_actions(privacy, account_id: str) -> list[str]:
    status, _, trail = privacy.request("GET", f"/v1/audit?kind=data_subject&account={account_id}")
    assert status == 200
    return [e["action"] for e in trail["entries"]]


def test_a_stuck_order_is_noticed_again_and_then_disclosed(running, privacy, mailbox):
    placed, hold_id, message_id = _stuck_order(running, privacy, mailbox, "stuck@example.com")
    account_id = placed["holds"][0]["account_id"]
    status, _, again = privacy.request("POST", f"/v1/holds/{hold_id}/notice",
                                       {"authority": "court_order"})
    assert status == 200, again
    assert again["notice"] == {"state": "queued", "mails": 1}
    assert sorted(again["hold_ids"]) == sorted(h["hold_id"] for h in placed["holds"])
    text = text_of(mailbox.wait("stuck@example.com", "lawful request")[0])
    assert "a court order" in text and "CASE-ABC-7" in text and "REASONMARK" not in text

    answers = []
    wait_for(lambda: answers.append(_disclose(privacy, hold_id, message_id)) or
             answers[-1][0] != 409, what="disclosure once the new notice was sent")
    assert answers[-1][0] == 200 and answers[-1][1]["body"] == BODY
    assert all(_notice_of(privacy, h["hold_id"])["state"] == "sent" for h in placed["holds"])
    assert _audit_actions(privacy, account_id).count("lawful_order_notice_queued") == 2

    status, _, err = privacy.request("POST", f"/v1/holds/{hold_id}/notice", {"authority": "court_order"})
    assert status == 409 and "sent" in err["error"]["message"], err  # never told twice
    assert len(_notices_to(mailbox, "stuck@example.com")) == 1


def test_a_stuck_order_can_record_that_notice_is_not_permitted(running, privacy, mailbox):
    placed, hold_id, message_id = _stuck_order(running, privacy, mailbox, "stuck-gag@example.com")
    status, _, waived = privacy.request("POST", f"/v1/holds/{hold_id}/notice", {
        "authority": "court_order",
        "notice_not_permitted": {"reason": "gag order served after placement", "reference": "NDO-9"}})
    assert status == 200, waived
    assert waived["notice"] == {"state": "not_permitted", "mails": 0}
    notice = _notice_of(privacy, hold_id)
    assert (notice["state"], notice["reference"], notice["by"]) == ("not_permitted", "NDO-9",
                                                                    "legal-officer")
    status, disclosed = _disclose(privacy, hold_id, message_id)
    assert status == 200 and disclosed["body"] == BODY
    assert "lawful_order_notice_not_permitted" in _audit_actions(privacy,
                                                                 placed["holds"][0]["account_id"])


def test_notice_again_is_refused_for_a_hold_that_is_not_a_stuck_order(running, privacy):
    account_id, api = _account(running, "notstuck@example.com")
    message_id = _send(running, api)
    status, _, legal = privacy.request("POST", "/v1/holds", {
        "kind": "legal_hold", "reason": "abuse", "reference": "AB-1", "until": time.time() + 600,
        "message_ids": [message_id]})
    assert status == 201
    status, _, err = privacy.request("POST", f"/v1/holds/{legal['holds'][0]['hold_id']}/notice",
                                     {"authority": "subpoena"})
    assert status == 409 and err["error"]["code"] == "invalid_transition", err
    status, _, err = privacy.request("POST", "/v1/holds/hold_0123456789abcdef/notice",
                                     {"authority": "subpoena"})
    assert status == 404, err
    operator = Client(running.http.control_port, running.http.ctx.tokens.create("ops-only",
                                                                                 {"operator"}))
    status, _, err = operator.request("POST", f"/v1/holds/{legal['holds'][0]['hold_id']}/notice",
                                      {"authority": "subpoena"})
    assert status == 403, err


def test_disclosure_under_an_ended_order_is_409_hold_ended_not_a_storage_error(running, privacy):
    account_id, api = _account(running, "ended@example.com")
    placed = _order(privacy, account_id, notice_not_permitted={"reason": "gag", "reference": "NDO-3"})
    message_id = _send(running, api)
    hold_id = _hold_with(running, placed, message_id)
    assert _disclose(privacy, hold_id, message_id)[0] == 200
    status, _, _ = privacy.request("POST", f"/v1/holds/{hold_id}/release", {"reason": "order lifted"})
    assert status == 200

    status, refused = _disclose(privacy, hold_id, message_id)
    assert status == 409 and refused["error"]["code"] == "hold_ended", refused
    assert BODY not in str(refused)
    status, unknown = _disclose(privacy, "hold_0123456789abcdef", message_id)
    assert status == 404, unknown


def test_notice_again_on_an_ended_order_is_409_hold_ended_and_an_unknown_hold_404(running, privacy,
                                                                                   mailbox):
    placed, hold_id, _ = _stuck_order(running, privacy, mailbox, "stuck-ended@example.com")
    status, _, _ = privacy.request("POST", f"/v1/holds/{hold_id}/release", {"reason": "order lifted"})
    assert status == 200
    status, _, err = privacy.request("POST", f"/v1/holds/{hold_id}/notice", {"authority": "court_order"})
    assert status == 409 and err["error"]["code"] == "hold_ended", err
    status, _, err = privacy.request("POST", "/v1/holds/hold_0123456789abcdef/notice",
                                     {"authority": "court_order"})
    assert status == 404, err
    assert len(_notices_to(mailbox, "stuck-ended@example.com")) == 0  # the refused one only


def test_an_orders_notice_records_are_written_together_or_not_at_all(running, privacy, monkeypatch):
    """An account order is one hold per POP sharing one notice record each: a store failing between
    two records must not leave some holds with a record and others without (all in one transaction)."""
    from engine.errors import StorageError

    records = running.privacy.order_notices.store._records
    assert len(running.runtime.holds) > 1  # an account order spans several holds
    real_put, puts = records._put, []

    def second_put_fails(txn, record):
        puts.append(record.id)
        if len(puts) == 2:
            raise StorageError("disk gave out between two records")
        real_put(txn, record)

    monkeypatch.setattr(records, "_put", second_put_fails)
    before = {r.id for r in records.all()}
    account_id, _ = _account(running, "half@example.com")
    status, _, err = privacy.request("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": REASON, "reference": "CASE-HALF-1",
        "until": time.time() + 3600, "account_id": account_id, "authority": "court_order",
        "notice_not_permitted": {"reason": "gag", "reference": "NDO-5"}})
    assert status == 503, err
    assert len(puts) == 2
    assert {r.id for r in records.all()} == before  # none of the order's holds has a record
    assert not [h for h in running.runtime.shards.active_holds() if h["reference"] == "CASE-HALF-1"]


def test_an_order_whose_notice_records_cannot_be_written_queues_no_mail(running, privacy, mailbox,
                                                                        monkeypatch):
    """The notice records (``<data_dir>/privacy``) and the outbox (``<data_dir>/mail``) are two LMDB
    environments, so the records are written first and the mails queued after: a records store that
    fails leaves no mail for the worker to send of an order that was released. Before, the mail was
    queued first and sent although the order was released."""
    from engine.errors import StorageError

    account_id, _ = _account(running, "unrecorded@example.com")
    outbox = running.mail.outbox
    wait_for(lambda: len(outbox) == 0, what="the confirmation mail sent")

    def fails(txn, record):
        raise StorageError("disk gave out")

    monkeypatch.setattr(running.privacy.order_notices.store._records, "_put", fails)
    mailbox.hold()  # a notice queued all the same would wait here, still in the outbox
    try:
        status, _, err = privacy.request("POST", "/v1/holds", {
            "kind": "lawful_order", "reason": REASON, "reference": "CASE-UNREC-1",
            "until": time.time() + 3600, "account_id": account_id, "authority": "court_order"})
        assert status == 503, err
        assert len(outbox) == 0
        assert not [h for h in running.active_holds() if h["reference"] == "CASE-UNREC-1"]
    finally:
        mailbox.release()
    assert "lawful_order_notice_queued" not in _audit_actions(privacy, account_id)


def test_releasing_an_order_withdraws_its_notice_that_has_not_left(running, privacy, mailbox):
    """An order released while its notice waits (here: the mail server stalls it mid-send) is not
    told to its holder: the release of its last hold withdraws the mail and cancels the send. Before,
    the mail stayed queued and was sent once the server answered."""
    account_id, _ = _account(running, "withdrawn@example.com")
    outbox = running.mail.outbox
    wait_for(lambda: len(outbox) == 0, what="the confirmation mail sent")
    stalled = mailbox.stalled
    mailbox.hold()
    try:
        placed = _order(privacy, account_id, reference="CASE-WITHDRAWN-1")
        wait_for(lambda: mailbox.stalled > stalled, what="the notice's send under way")
        *first, last = placed["holds"]
        assert first  # an account order: one hold per POP
        for hold in first:
            status, _, _ = privacy.request("POST", f"/v1/holds/{hold['hold_id']}/release",
                                           {"reason": "order withdrawn"})
            assert status == 200
            assert len(outbox) == 1  # the order still stands on its other holds: its notice stays
        status, _, _ = privacy.request("POST", f"/v1/holds/{last['hold_id']}/release",
                                       {"reason": "order withdrawn"})
        assert status == 200
        assert len(outbox) == 0
    finally:
        mailbox.release()
    assert "lawful_order_notice_withdrawn" in _audit_actions(privacy, account_id)
    _account(running, "after-withdrawal@example.com")
    mailbox.wait("after-withdrawal@example.com")  # sent after the withdrawn notice would have been
    assert _notices_to(mailbox, "withdrawn@example.com") == []


def test_notice_again_covers_its_own_order_and_not_an_identical_one(running, privacy, mailbox,
                                                                    monkeypatch):
    """Two lawful orders with the same fields (same reason, reference and end; one per account's
    message) whose notices were never given (here: the notice step skipped, as when the process stops
    between placing and noticing). Giving the first one's notice again gives it for the first order
    only. Before, the holds were matched by their fields and the second order counted as the first."""
    first_id, first = _account(running, "twin-one@example.com")
    second_id, second = _account(running, "twin-two@example.com")
    messages = [_send(running, first), _send(running, second)]
    monkeypatch.setattr(running, "_give_notice", lambda *args, **kwargs: None)
    order = {"kind": "lawful_order", "reason": REASON, "reference": "CASE-TWIN-1",
             "until": time.time() + 3600, "authority": "subpoena"}
    orders = []
    for message_id in messages:
        status, _, placed = privacy.request("POST", "/v1/holds", {**order, "message_ids": [message_id]})
        assert status == 201 and placed["notice"] is None, placed
        orders.append(placed)
    monkeypatch.undo()

    status, _, again = privacy.request("POST", f"/v1/holds/{orders[0]['holds'][0]['hold_id']}/notice",
                                       {"authority": "subpoena"})
    assert status == 200, again
    assert again["hold_ids"] == [h["hold_id"] for h in orders[0]["holds"]]
    assert again["notice"] == {"state": "queued", "mails": 1}  # the first order's holder only
    assert "CASE-TWIN-1" in text_of(mailbox.wait("twin-one@example.com", "lawful request")[0])
    assert _notice_of(privacy, orders[1]["holds"][0]["hold_id"]) == {  # still its own to give
        "state": "placement_incomplete", "mails": 0}
    assert "lawful_order_notice_queued" not in _audit_actions(privacy, second_id)
    assert orders[0]["holds"][0]["order_id"] != orders[1]["holds"][0]["order_id"]


def test_a_message_order_whose_records_were_swept_is_noticed_again_from_its_holders(running, privacy,
                                                                                   mailbox):
    """A message record is kept 90 days, a lawful order up to a year: the order keeps its holders (each
    account and how many of its messages it names) with its holds, so a stuck notice is given again
    after the records were swept. Before, it was refused: no holder was left to tell."""
    account_id, api = _account(running, "swept-holder@example.com")
    message_id = _send(running, api)
    wait_for(lambda: len(running.mail.outbox) == 0, what="earlier mail sent")
    mailbox.reject_next = 1
    status, _, placed = privacy.request("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": REASON, "reference": "CASE-SWEPT-7",
        "until": time.time() + 3600, "message_ids": [message_id], "authority": "court_order"})
    assert status == 201, placed
    [hold] = placed["holds"]
    wait_for(lambda: _notice_of(privacy, hold["hold_id"])["state"] == "unsent",
             what="the notice refused")
    pop = running.status(message_id).pop
    assert running.runtime.pop_stores[pop].records.delete_many([message_id]) == 1  # as the sweep does
    assert running.runtime.shards.find_records([message_id]) == [None]

    status, _, again = privacy.request("POST", f"/v1/holds/{hold['hold_id']}/notice",
                                       {"authority": "court_order"})
    assert status == 200, again
    assert again["notice"] == {"state": "queued", "mails": 1}
    text = text_of(mailbox.wait("swept-holder@example.com", "lawful request")[0])
    assert "CASE-SWEPT-7" in text and account_id in text and "1 message(s) already sent" in text


def test_a_stuck_order_whose_holders_are_all_gone_says_so_and_is_disclosed_on_that_ground(
        running, privacy, mailbox):
    """The holder erased their account before the notice left: nobody is left to tell. The notice
    given again records that (``no_holders``, audited), never ``sent``; disclosure is allowed on that
    recorded ground. Before: 409 invalid_transition, so the order stayed undisclosable for good unless
    the operator recorded an untrue 'notice not permitted'."""
    placed, hold_id, message_id = _stuck_order(running, privacy, mailbox, "stuck-erased@example.com")
    account_id = placed["holds"][0]["account_id"]
    running.erase_account(account_id, actor="test")
    since = time.time()
    status, _, again = privacy.request("POST", f"/v1/holds/{hold_id}/notice",
                                       {"authority": "court_order"})
    assert status == 200, again
    assert again["notice"] == {"state": "no_holders", "mails": 0}
    assert all(_notice_of(privacy, h["hold_id"])["state"] == "no_holders" for h in placed["holds"])
    status, _, trail = privacy.request("GET", f"/v1/audit?kind=data_subject&since={since}")
    assert status == 200, trail
    assert "lawful_order_notice_no_holders" in [e["action"] for e in trail["entries"]]
    status, disclosed = _disclose(privacy, hold_id, message_id)
    assert status == 200 and disclosed["body"] == BODY, disclosed
    status, _, err = privacy.request("POST", f"/v1/holds/{hold_id}/notice", {"authority": "court_order"})
    assert status == 409 and "no_holders" in err["error"]["message"], err  # nothing to give again


def test_a_notice_record_without_any_mail_never_reads_sent(running):
    """Before: its mails' outcomes were the empty set, a subset of {"sent"}: it read ``sent``."""
    from storage.order_notices import OrderNotice

    desk = running.privacy.order_notices
    desk.store.put(OrderNotice("hold_nomail", "officer", time.time(), time.time() + 3600, []))
    assert desk.state("hold_nomail")["state"] == "no_holders"
