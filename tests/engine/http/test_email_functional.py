"""Customer e-mail end to end: a real SMTP server on loopback receives what the engine sends.

Sign-up → confirmation mail → confirm → send (with ``require_confirmation``); every security alert; price
and policy-change notices (a policy change under 30 days is refused); no mail carries a body, a full
number or a secret.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest

from engine import Engine
from tests.engine.http.conftest import DE_NUMBER, Client, Receiver, overrides, wait_for
from tests.mailbox import email_overrides, text_of

BODY = "Your secret code is 424242 zebra-harmonica"


@pytest.fixture(scope="module")
def running(tmp_path_factory, mailbox):
    """An engine whose mail goes to ``mailbox`` and which refuses unconfirmed accounts' submits."""
    settings = overrides()
    settings["email"] = email_overrides(mailbox, require_confirmation=True)
    engine = Engine.start(tmp_path_factory.mktemp("mail") / "data", http=True, overrides=settings)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def ops(running):
    token = running.http.ctx.tokens.create("mail-ops", {"operator", "privacy"})
    return Client(running.http.control_port, token), token


def _link_path(msg) -> str:
    url = re.search(r"https?://\S+", text_of(msg)).group(0)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _signed_up(running, ops, mailbox, email: str) -> tuple[str, str]:
    """An account created on the control port, funded, with a sender; its id and API key."""
    client, _ = ops
    status, _, new = client.request("POST", "/v1/accounts", {"email": email})
    assert status == 201
    client.request("POST", f"/v1/accounts/{new['id']}/deposits",
                   {"usd": "5", "chain": "tron", "tx_hash": f"tx-{new['id']}", "from_address": "T"})
    client.request("POST", f"/v1/accounts/{new['id']}/senders", {"sender": "ACME"})
    return new["id"], new["api_key"]


def test_sign_up_mails_a_link_that_confirms_the_address_and_unlocks_sending(running, ops, mailbox):
    account_id, api_key = _signed_up(running, ops, mailbox, "signup@example.com")
    customer = Client(running.http.customer_port, api_key)
    message = {"to": DE_NUMBER, "from": "ACME", "body": "hello"}

    status, _, refused = customer.request("POST", "/v1/messages", message)
    assert status == 403 and refused["error"]["code"] == "account_unconfirmed"

    mail = mailbox.wait("signup@example.com", "Confirm your smsroute e-mail address")[0]
    assert account_id in text_of(mail)
    path = _link_path(mail)
    status, _, confirmed = Client(running.http.customer_port).request("GET", path)
    assert status == 200 and confirmed == {"account_id": account_id, "email_confirmed": True}
    assert running.account(account_id).email_confirmed_at > 0

    status, _, again = Client(running.http.customer_port).request("GET", path)
    assert status == 401 and again["error"]["code"] == "challenge_invalid"  # the link works once
    status, _, sent = wait_for(lambda: (r := customer.request("POST", "/v1/messages", message))[0]
                               == 202 and r, what="the session to learn of the confirmation")
    assert sent["status"] == "accepted"


def test_a_rectified_address_must_be_confirmed_again_and_an_old_link_does_not_confirm_it(
        running, ops, mailbox):
    account_id, _ = _signed_up(running, ops, mailbox, "before@example.com")
    old_link = _link_path(mailbox.wait("before@example.com", "Confirm")[0])
    running.rectify_account(account_id, email="after@example.com")
    status, _, err = Client(running.http.customer_port).request("GET", old_link)
    assert status == 401 and err["error"]["code"] == "challenge_invalid"
    new_link = _link_path(mailbox.wait("after@example.com", "Confirm")[0])
    assert Client(running.http.customer_port).request("GET", new_link)[0] == 200


def test_each_security_alert_reaches_the_account_holder(running, ops, mailbox):
    account_id, api_key = _signed_up(running, ops, mailbox, "alerts@example.com")
    customer = Client(running.http.customer_port, api_key)

    leaked = running.create_api_key(account_id)
    mailbox.wait("alerts@example.com", "security alert: api key created")
    assert customer.request("POST", "/v1/webhook/secret", {})[0] == 201
    mailbox.wait("alerts@example.com", "security alert: webhook secret rotated")

    gone = Receiver(answers=[410])
    try:
        assert customer.request("PUT", "/v1/webhook", {"url": gone.url})[0] == 200
        running.revoke_api_key(account_id, leaked.id)
        thief = Client(running.http.customer_port, leaked.api_key)
        for _ in range(20):  # a revoked key still names its account: its use is counted there
            assert thief.request("GET", "/v1/balance")[0] in (401, 429)
        stranger = Client(running.http.customer_port, "sk_live_" + "x" * 43)
        assert stranger.request("GET", "/v1/balance")[0] in (401, 429)  # names no account
        confirm = _link_path(mailbox.wait("alerts@example.com", "Confirm")[0])
        Client(running.http.customer_port).request("GET", confirm)
        wait_for(lambda: customer.request("POST", "/v1/messages", {
            "to": DE_NUMBER, "from": "ACME", "body": "hi"})[0] == 202, what="a submit")
        gone.next()  # the receiver answered 410 Gone
        mailbox.wait("alerts@example.com", "security alert: webhook disabled")
    finally:
        gone.close()
    assert running.account(account_id).webhook_url is None
    mailbox.wait("alerts@example.com", "security alert: api key revoked")
    failed = mailbox.wait("alerts@example.com", "security alert: failed authentications")
    assert "Attempts counted: 20" in text_of(failed[0])
    assert thief.request("GET", "/v1/balance")[0] in (401, 429)  # within the quiet hour: no second alert
    assert len(mailbox.wait("alerts@example.com", "failed authentications")) == 1


def test_a_policy_change_under_30_days_is_refused_and_one_later_is_mailed_with_its_date(
        running, ops, mailbox):
    client, _ = ops
    _signed_up(running, ops, mailbox, "policy@example.com")
    soon = time.time() + 29 * 86400
    status, _, err = client.request("POST", "/v1/policy-changes",
                                    {"effective_at": soon, "summary": "Shorter log retention."})
    assert status == 422 and err["error"]["code"] == "notice_too_short"
    later = time.time() + 31 * 86400
    status, _, ok = client.request("POST", "/v1/policy-changes",
                                   {"effective_at": later, "summary": "Shorter log retention."})
    assert status == 201 and ok["notices_queued"] >= 1
    mail = mailbox.wait("policy@example.com", "privacy policy")
    assert len(mail) == 1  # the refused change sent nothing
    assert time.strftime("%Y-%m-%d", time.gmtime(later)) in text_of(mail[0])
    assert "Shorter log retention." in text_of(mail[0])


def test_a_rate_card_change_mails_each_account_the_prices_that_change(running, ops, mailbox):
    client, _ = ops
    _signed_up(running, ops, mailbox, "prices@example.com")
    table = running.routing_table()
    old = table["rates"]["DE"]
    table["rates"]["DE"] = old + 5000
    assert client.request("PUT", "/v1/routing", table)[0] == 200
    text = text_of(mailbox.wait("prices@example.com", "price change")[0])
    assert f"DE: USD 0.{old:06d} -> USD 0.{old + 5000:06d} per segment" in text
    assert "GB" not in text  # only what changed


def test_no_mail_ever_carries_a_message_body_a_full_number_or_a_secret(running, ops, mailbox):
    client, op_token = ops
    account_id, api_key = _signed_up(running, ops, mailbox, "leaks@example.com")
    customer = Client(running.http.customer_port, api_key)
    Client(running.http.customer_port).request(
        "GET", _link_path(mailbox.wait("leaks@example.com", "Confirm")[0]))
    wait_for(lambda: customer.request("POST", "/v1/messages", {
        "to": DE_NUMBER, "from": "ACME", "body": BODY})[0] == 202, what="a submit")
    new_key = running.add_api_key(account_id)
    secret = customer.request("POST", "/v1/webhook/secret", {})[2]["secret"]
    status, _, _ = client.request("POST", "/v1/incidents", {
        "summary": "A misconfigured log shipper.", "detected_at": time.time(),
        "accounts": [account_id]})
    status, _, refused = client.request("POST", "/v1/incidents", {
        "summary": f"Numbers like {DE_NUMBER} leaked", "detected_at": time.time(),
        "accounts": [account_id]})
    assert status == 400 and "phone number" in refused["error"]["message"]
    mailbox.wait("leaks@example.com", "security alert", count=2)

    everything = "\n".join(f"{m['Subject']}\n{text_of(m)}" for _, m in mailbox.mails)
    for forbidden in (BODY, "424242", DE_NUMBER, DE_NUMBER.lstrip("+"), api_key, new_key, secret,
                      op_token, "sk_live_", "whsec_"):
        assert forbidden not in everything, forbidden
