"""Data-subject requests (policy 7.5) end to end, over real sockets, with a real SMTP server.

A request opened by a wallet signature (EVM ``personal_sign`` made by eth-account, Tron
``signMessageV2``) — and refused for a wrong signature, a wallet that never deposited, a replayed
signature and an expired challenge; a request by e-mail verified by its link; rate limiting of unverified
requests; the deadline, its one extension (with a notice mail), overdue listing, and fulfilment through the
existing rights.
"""

from __future__ import annotations

import dataclasses
import re
import time
from urllib.parse import urlsplit

import pytest
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import encode_defunct

from engine import Engine
from engine.privacy import wallets
from tests.engine.http.conftest import Client, overrides, wait_for
from tests.mailbox import email_overrides, text_of

DAY = 86400
LIMIT = 40  # unverified requests per hour per source (the tests before the last stay under it)


@pytest.fixture(scope="module")
def running(tmp_path_factory, mailbox):
    settings = overrides()
    settings["email"] = email_overrides(mailbox)
    settings["privacy"] = {"unverified_requests_per_hour": LIMIT, "challenge_ttl_seconds": 60}
    engine = Engine.start(tmp_path_factory.mktemp("dsar") / "data", http=True, overrides=settings)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def privacy(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("dsar-officer", {"privacy"}))


def _account(running, email: str, from_address: str) -> str:
    account = running.create_account(email)
    running.deposit(account.id, "5", "ethereum", f"tx-{account.id}", from_address)
    return account.id


def _challenge(customer: Client, account_id: str, request_type: str = "access") -> dict:
    status, _, issued = customer.request("POST", "/v1/privacy/challenges",
                                         {"account_id": account_id, "type": request_type})
    assert status == 201, issued
    return issued


def _evm_sign(wallet, message: str) -> str:
    return "0x" + bytes(wallet.sign_message(encode_defunct(text=message)).signature).hex()


def _tron_sign(key: PrivateKey, message: str) -> str:
    sig = key.sign_recoverable(wallets.message_hash("tron", message), hasher=None)
    return (sig[:64] + bytes([sig[64] + 27])).hex()


def test_a_wallet_that_deposited_opens_a_verified_request_with_a_30_day_deadline(
        running, mailbox):
    wallet = Account.create()
    account_id = _account(running, "evm@example.com", wallet.address.lower())  # case ignored
    customer = Client(running.http.customer_port)
    issued = _challenge(customer, account_id, "erasure")
    assert account_id in issued["message"] and "nonce:" in issued["message"]

    before = time.time()
    status, _, opened = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": _evm_sign(wallet, issued["message"])})
    assert status == 201, opened
    assert opened["status"] == "open" and opened["verification"] == "wallet:evm"
    assert before + 30 * DAY <= opened["deadline"] <= time.time() + 30 * DAY
    assert opened["id"] in text_of(mailbox.wait("evm@example.com", opened["id"])[0])


def test_a_tron_wallet_signature_opens_a_request_too(running):
    key = PrivateKey()
    address = wallets.tron_address(wallets.keccak256(key.public_key.format(False)[1:])[-20:])
    account_id = _account(running, "tron@example.com", address)
    customer = Client(running.http.customer_port)
    issued = _challenge(customer, account_id, "access")
    status, _, opened = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "tron",
        "signature": _tron_sign(key, issued["message"])})
    assert status == 201 and opened["verification"] == "wallet:tron"


@pytest.mark.parametrize("how", ["wrong_signature", "never_deposited", "replayed", "expired"])
def test_a_signed_request_is_refused(running, how):
    wallet = Account.create()
    account_id = _account(running, f"{how}@example.com", wallet.address)
    customer = Client(running.http.customer_port)
    issued = _challenge(customer, account_id)
    signature = _evm_sign(wallet, issued["message"])
    expected = {"wrong_signature": "wallet_not_recognised", "never_deposited":
                "wallet_not_recognised", "replayed": "challenge_invalid",
                "expired": "challenge_invalid"}[how]
    if how == "wrong_signature":  # signed over another message: recovers some other address
        signature = _evm_sign(wallet, issued["message"] + " (edited)")
    elif how == "never_deposited":
        signature = _evm_sign(Account.create(), issued["message"])
    elif how == "replayed":
        first = customer.request("POST", "/v1/privacy/signed-requests", {
            "challenge_id": issued["challenge_id"], "scheme": "evm", "signature": signature})
        assert first[0] == 201
    else:  # a challenge whose lifetime ran out, signed correctly
        expired = _expired_challenge(running, account_id)
        issued = {"challenge_id": expired.challenge_id}
        signature = _evm_sign(wallet, expired.message)
    before = len(list(running.privacy.requests.store.all()))
    status, _, err = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm", "signature": signature})
    assert status == 401 and err["error"]["code"] == expected
    assert len(list(running.privacy.requests.store.all())) == before  # nothing opened


def _expired_challenge(running, account_id: str):
    """A challenge issued (as the desk issues them) with a lifetime that has already run out."""
    issued = running.privacy.challenges.issue(account_id, "access", ttl_seconds=0.05)
    wait_for(lambda: time.time() > issued.expires_at, what="the challenge to expire")
    return issued


def test_a_malformed_signature_is_refused_and_the_challenge_is_used_up(running):
    wallet = Account.create()
    account_id = _account(running, "malformed@example.com", wallet.address)
    customer = Client(running.http.customer_port)
    issued = _challenge(customer, account_id)
    status, _, err = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm", "signature": "0xdeadbeef"})
    assert status == 401 and err["error"]["code"] == "invalid_signature"
    status, _, err = customer.request("POST", "/v1/privacy/signed-requests", {
        "challenge_id": issued["challenge_id"], "scheme": "evm",
        "signature": _evm_sign(wallet, issued["message"])})
    assert status == 401 and err["error"]["code"] == "challenge_invalid"


def test_a_request_by_e_mail_is_verified_by_the_link_sent_to_the_address_of_record(
        running, mailbox):
    account_id = _account(running, "Mailer@Example.com", "0x" + "11" * 20)
    customer = Client(running.http.customer_port)
    status, _, answer = customer.request("POST", "/v1/privacy/requests",
                                         {"type": "access", "email": "mailer@example.com"})
    assert status == 202
    nobody = customer.request("POST", "/v1/privacy/requests",
                              {"type": "access", "email": "nobody@example.com"})
    assert nobody[0] == 202 and nobody[2] == answer  # the same answer: no enumeration
    mail = mailbox.wait("Mailer@Example.com", "Confirm your data-subject request")[0]
    url = urlsplit(re.search(r"https?://\S+", text_of(mail)).group(0))
    status, _, verified = customer.request("GET", f"{url.path}?{url.query}")
    assert status == 200 and verified["status"] == "open"
    assert running.privacy.requests.get(verified["id"])["account_id"] == account_id
    assert customer.request("GET", f"{url.path}?{url.query}")[0] == 401  # once
    assert not mailbox.to("nobody@example.com")


def test_the_deadline_is_extended_once_by_60_days_with_a_notice_and_overdue_requests_show(
        running, privacy, mailbox):
    account_id = _account(running, "slow@example.com", "0x" + "22" * 20)
    status, _, registered = privacy.request("POST", "/v1/dsar",
                                            {"account_id": account_id, "type": "portability"})
    assert status == 201 and registered["status"] == "awaiting_verification"
    record = running.privacy.requests.store.verify(registered["id"], "email_link")
    status, _, extended = privacy.request("POST", f"/v1/dsar/{record.id}/extend",
                                          {"reason": "Three years of records to assemble."})
    assert status == 200 and extended["extended"] is True
    assert extended["deadline"] == pytest.approx(record.deadline + 60 * DAY)
    notice = text_of(mailbox.wait("slow@example.com", "more time needed")[0])
    assert "Three years of records to assemble." in notice
    assert time.strftime("%Y-%m-%d", time.gmtime(extended["deadline"])) in notice
    again = privacy.request("POST", f"/v1/dsar/{record.id}/extend", {"reason": "more"})
    assert again[0] == 409 and again[2]["error"]["code"] == "invalid_transition"

    late = dataclasses.replace(running.privacy.requests.store.get(record.id),
                               deadline=time.time() - 1)
    running.privacy.requests.store._records.put(late)  # as if 90 days had passed
    status, _, overdue = privacy.request("GET", "/v1/dsar?overdue=true")
    assert status == 200 and record.id in {r["id"] for r in overdue["requests"]}
    assert all(r["overdue"] for r in overdue["requests"])
    status, _, stats = privacy.request("GET", "/v1/stats", token=_viewer(running))
    assert stats["privacy"]["dsar_overdue"] >= 1


def _viewer(running) -> str:
    return running.http.ctx.tokens.create("dsar-viewer", {"viewer"})


def test_requests_are_fulfilled_through_the_existing_rights(running, privacy, mailbox):
    wallet = Account.create()
    account_id = _account(running, "fulfil@example.com", wallet.address)
    customer = Client(running.http.customer_port)
    ids = {}
    for kind in ("access", "objection", "erasure"):
        issued = _challenge(customer, account_id, kind)
        ids[kind] = customer.request("POST", "/v1/privacy/signed-requests", {
            "challenge_id": issued["challenge_id"], "scheme": "evm",
            "signature": _evm_sign(wallet, issued["message"])})[2]["id"]

    status, _, access = privacy.request("POST", f"/v1/dsar/{ids['access']}/fulfil", {})
    assert status == 200 and access["request"]["status"] == "completed"
    assert access["result"]["account"]["email"] == "fulfil@example.com"
    assert privacy.request("POST", f"/v1/dsar/{ids['objection']}/fulfil", {})[0] == 200
    assert running.account(account_id).objections == ["analytics"]
    # the holder hears of each; an erasure withdraws the account's mails still queued (policy 7.1), so
    # the two are awaited before it (on a loaded machine they may not have left yet)
    mailbox.wait("fulfil@example.com", ": completed", count=2)
    status, _, erased = privacy.request("POST", f"/v1/dsar/{ids['erasure']}/fulfil", {})
    assert status == 200 and erased["result"]["ledger_entries_pseudonymised"] == 1
    assert privacy.request("GET", f"/v1/accounts/{account_id}/export")[0] == 404
    mailbox.wait("fulfil@example.com", ": completed", count=3)  # and of the erasure, after it
    again = privacy.request("POST", f"/v1/dsar/{ids['erasure']}/fulfil", {})
    assert again[0] == 409
    actions = {(e.actor, e.action) for e in running.runtime.audit_entries()}
    assert ("dsar-officer", "erase_account") in actions


# last: it uses up this source's allowance of unverified requests
def test_unverified_requests_are_rate_limited(running):
    customer = Client(running.http.customer_port)
    answers = [customer.request("POST", "/v1/privacy/requests",
                                {"type": "erasure", "email": "flood@example.com"})[0]
               for _ in range(LIMIT + 1)]
    assert answers[-1] == 429 and answers.count(202) <= LIMIT
    status, headers, err = customer.request("POST", "/v1/privacy/challenges",
                                            {"account_id": "acc_0000000000000000", "type": "access"})
    assert status == 429 and err["error"]["code"] == "rate_limited" and "Retry-After" in headers
