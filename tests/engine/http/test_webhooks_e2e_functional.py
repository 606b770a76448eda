"""Submit → carrier → receipt → signed webhook, received by a test server that verifies the signature."""

from __future__ import annotations

import json
import time

import pytest

from engine.http.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, verify
from tests.engine.http.conftest import DE_NUMBER, Client, Receiver, funded_account, wait_for

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "hello"}


@pytest.fixture
def receiver():
    rx = Receiver()
    yield rx
    rx.close()


def _events_for(rx: Receiver, message_id: str, want: str, timeout: float = 15.0) -> list[tuple]:
    """Collect deliveries until one for ``message_id`` with status ``want`` arrives."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        headers, body, path = rx.next(timeout=max(0.1, deadline - time.monotonic()))
        event = json.loads(body)
        if event["data"]["id"] == message_id:
            seen.append((headers, body, event, path))
            if event["data"]["status"] == want:
                return seen
    raise AssertionError(f"no {want} event for {message_id}")


def test_a_delivery_receipt_reaches_the_webhook_signed_with_the_account_secret(running, receiver):
    acc = funded_account(running, "hook@example.com")
    api = Client(running.http.customer_port, acc.api_key)
    status, _, _ = api.request("PUT", "/v1/webhook", {"url": receiver.url + "/hook"})
    assert status == 200
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    events = _events_for(receiver, accepted["id"], "delivered")
    headers, body, event, path = events[-1]
    assert path == "/hook" and headers["Content-Type"] == "application/json"
    secret = running.account(acc.id).webhook_secrets[0]
    assert verify(headers[SIGNATURE_HEADER], [secret], body, now=time.time())
    assert headers[EVENT_ID_HEADER] == event["id"] and event["type"] == "message.status"
    assert MSG["body"] not in body.decode() and DE_NUMBER not in body.decode()


def test_during_rotation_both_secrets_sign_and_only_wanted_statuses_are_sent(running, receiver):
    acc = funded_account(running, "rotate@example.com")
    api = Client(running.http.customer_port, acc.api_key)
    old = running.account(acc.id).webhook_secrets[0]
    api.request("PUT", "/v1/webhook", {"url": receiver.url, "receipt_statuses": ["delivered"]})
    status, _, rotated = api.request("POST", "/v1/webhook/secret")
    assert status == 201 and rotated["secret"] != old
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    events = _events_for(receiver, accepted["id"], "delivered")
    assert [e[2]["data"]["status"] for e in events] == ["delivered"]  # "accepted" not wanted
    headers, body = events[-1][0], events[-1][1]
    assert headers[SIGNATURE_HEADER].count("v1=") == 2
    assert verify(headers[SIGNATURE_HEADER], [old], body, now=time.time())
    assert verify(headers[SIGNATURE_HEADER], [rotated["secret"]], body, now=time.time())


def test_a_message_callback_url_wins_over_the_account_webhook(running, receiver):
    other = Receiver()
    try:
        acc = funded_account(running, "cb@example.com")
        api = Client(running.http.customer_port, acc.api_key)
        api.request("PUT", "/v1/webhook", {"url": other.url})
        _, _, accepted = api.request("POST", "/v1/messages",
                                     {**MSG, "callback_url": receiver.url + "/cb"})
        events = _events_for(receiver, accepted["id"], "delivered")
        assert {e[3] for e in events} == {"/cb"}
        assert other.got.empty()
    finally:
        other.close()


def test_a_410_answer_disables_the_account_webhook(running):
    gone = Receiver(answers=[410] * 10)
    try:
        acc = funded_account(running, "gone@example.com")
        api = Client(running.http.customer_port, acc.api_key)
        api.request("PUT", "/v1/webhook", {"url": gone.url})
        api.request("POST", "/v1/messages", MSG)
        gone.next()
        wait_for(lambda: running.account(acc.id).webhook_url is None, what="webhook disabled")
    finally:
        gone.close()


def test_webhook_settings_are_validated(running):
    acc = funded_account(running, "bad@example.com")
    api = Client(running.http.customer_port, acc.api_key)
    assert api.request("PUT", "/v1/webhook", {"url": "javascript:alert(1)"})[0] == 422
    assert api.request("PUT", "/v1/webhook", {"url": None, "receipt_statuses": ["nope"]})[0] == 422
    status, _, body = api.request("PUT", "/v1/webhook", {"url": None, "receipt_statuses": None})
    assert status == 200 and (body["url"], body["receipt_statuses"], body["state"]) == (
        None, None, "none")


def test_a_batching_endpoint_gets_json_arrays_of_bounded_size_with_one_signature(running, receiver):
    acc = funded_account(running, "batched@example.com")
    api = Client(running.http.customer_port, acc.api_key)
    api.request("PUT", "/v1/webhook", {"url": receiver.url, "batching": {"max_events": 5,
                                                                         "max_wait_ms": 300}})
    _, _, answer = api.request("POST", "/v1/messages/batch", {"messages": [MSG] * 12})
    ids = {r["id"] for r in answer["results"]}
    secret = running.account(acc.id).webhook_secrets[0]
    got: dict[tuple[str, str], str] = {}
    deadline = time.monotonic() + 20
    while len(got) < 24 and time.monotonic() < deadline:
        headers, body, _ = receiver.next(timeout=max(0.1, deadline - time.monotonic()))
        events = json.loads(body)
        assert isinstance(events, list) and 1 <= len(events) <= 5
        assert verify(headers[SIGNATURE_HEADER], [secret], body, now=time.time())
        for event in events:
            got[(event["data"]["id"], event["data"]["status"])] = event["id"]
    assert set(got) == {(mid, s) for mid in ids for s in ("accepted", "delivered")}


def test_an_endpoint_that_answers_410_is_disabled_and_shown_so(running):
    gone = Receiver(answers=[410])
    try:
        acc = funded_account(running, "gone@example.com")
        api = Client(running.http.customer_port, acc.api_key)
        api.request("PUT", "/v1/webhook", {"url": gone.url})
        api.request("POST", "/v1/messages", MSG)
        gone.next()
        wait_for(lambda: api.request("GET", "/v1/webhook")[2]["state"] == "disabled", timeout=10)
        view = api.request("GET", "/v1/webhook")[2]
        assert view["url"] == gone.url and view["disabled_at"] > 0
        assert "410" in view["disabled_reason"]
        assert api.request("PUT", "/v1/webhook", {"url": gone.url})[2]["state"] == "active"
    finally:
        gone.close()


def test_a_callback_url_gone_for_one_account_still_gets_another_accounts_events(running, receiver):
    """410 disables an endpoint for the account whose delivery got it, not for everyone who names that
    URL: another account's webhook there (shown ``active``) must not be emptied silently."""
    url = receiver.url + "/shared"
    receiver.answers.append(410)  # the first POST: to account A's callback_url
    a = Client(running.http.customer_port, funded_account(running, "gone-a@example.com").api_key)
    first = a.request("POST", "/v1/messages", {**MSG, "callback_url": url})[2]["id"]
    _events_for(receiver, first, "accepted")  # answered 410: A's callback URL is disabled
    b = Client(running.http.customer_port, funded_account(running, "gone-b@example.com").api_key)
    assert b.request("PUT", "/v1/webhook", {"url": url})[2]["state"] == "active"
    second = b.request("POST", "/v1/messages", MSG)[2]["id"]
    _events_for(receiver, second, "accepted", timeout=5.0)


def test_an_account_that_sets_a_gone_callback_url_as_its_webhook_gets_its_events_there(running, receiver):
    """A callback URL that answered 410 is disabled for its account; the account then naming that URL as
    its webhook (shown ``active``) is the customer saying it is back, not a silent black hole."""
    url = receiver.url + "/revived"
    receiver.answers.append(410)  # the first POST: to the account's callback_url
    acc = Client(running.http.customer_port, funded_account(running, "revived@example.com").api_key)
    first = acc.request("POST", "/v1/messages", {**MSG, "callback_url": url})[2]["id"]
    _events_for(receiver, first, "accepted")  # answered 410: that callback URL is disabled
    assert acc.request("PUT", "/v1/webhook", {"url": url})[2]["state"] == "active"
    second = acc.request("POST", "/v1/messages", MSG)[2]["id"]
    _events_for(receiver, second, "accepted", timeout=5.0)


def test_the_webhook_backlog_counts_its_own_events_apart_from_those_for_callback_urls(running):
    """``backlog`` is the events waiting for the account's webhook endpoint; those waiting for its
    messages' own ``callback_url``s are ``callback_backlog`` (before: all in ``backlog``, so a dead
    callback receiver looked like a backlog at the account's healthy endpoint)."""
    own, callbacks = Receiver(answers=[503] * 100), Receiver(answers=[503] * 100)
    try:
        acc = funded_account(running, "backlog@example.com")
        api = Client(running.http.customer_port, acc.api_key)
        api.request("PUT", "/v1/webhook", {"url": own.url, "receipt_statuses": ["delivered"]})
        api.request("POST", "/v1/messages", MSG)
        for _ in range(2):
            api.request("POST", "/v1/messages", {**MSG, "callback_url": callbacks.url})
        view = wait_for(lambda: (v := api.request("GET", "/v1/webhook")[2])["callback_backlog"] == 2
                        and v["backlog"] == 1 and v, "the events counted where they wait")
        assert (view["backlog"], view["callback_backlog"]) == (1, 2)
        api.request("PUT", "/v1/webhook", {"url": None})  # (the endpoint gone: its event is dropped)
    finally:
        own.close()
        callbacks.close()
