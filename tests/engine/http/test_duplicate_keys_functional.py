"""A JSON body with a key twice in one object is ambiguous ({"to": a, "to": b}: which number?): both ports
refuse it with 400 duplicate_key before anything is done, however the key is spelled."""

from __future__ import annotations

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account

OTHER = "+4915112345679"


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, email="dup@example.com", usd="10.00", sender="DUPS")


@pytest.mark.parametrize("raw", [
    f'{{"to":"{DE_NUMBER}","to":"{OTHER}","from":"DUPS","body":"x"}}',
    f'{{"to":"{DE_NUMBER}","\\u0074o":"{OTHER}","from":"DUPS","body":"x"}}',  # the same key, escaped
], ids=["plain", "escaped"])
def test_a_message_with_a_key_twice_is_refused_and_nothing_is_sent_or_billed(running, account, raw):
    customer = Client(running.http.customer_port, account.api_key)
    before = running.balance(account.id)
    status, _, answer = customer.request("POST", "/v1/messages", raw=raw.encode())
    assert status == 400 and answer["error"]["code"] == "duplicate_key", answer
    assert "`to`" in answer["error"]["message"]
    assert running.balance(account.id) == before


def test_a_batch_entry_with_a_key_twice_is_refused_alone(running, account):
    customer = Client(running.http.customer_port, account.api_key)
    raw = (f'{{"messages":[{{"to":"{DE_NUMBER}","from":"DUPS","body":"a"}},'
           f'{{"to":"{DE_NUMBER}","from":"DUPS","body":"b","body":"c"}}]}}').encode()
    status, _, answer = customer.request("POST", "/v1/messages/batch", raw=raw)
    assert status == 200 and answer["accepted"] == 1, answer  # each entry is judged on its own
    assert answer["results"][1]["error"]["code"] == "duplicate_key"
    one = f'[{{"to":"{DE_NUMBER}","from":"DUPS","body":"a"}}]'
    status, _, answer = customer.request("POST", "/v1/messages/batch",
                                         raw=f'{{"messages":{one},"messages":{one}}}'.encode())
    assert status == 400 and answer["error"]["code"] == "duplicate_key", answer  # the envelope itself


def test_a_body_that_merely_mentions_a_key_in_a_value_is_accepted(running, account):
    customer = Client(running.http.customer_port, account.api_key)
    status, _, answer = customer.request("POST", "/v1/messages", {
        "to": DE_NUMBER, "from": "DUPS", "body": 'say "to" and "from" and \\u0074o', "client_ref": '"to"'})
    assert status == 202, answer


def test_a_control_deposit_with_a_key_twice_is_refused_and_credits_nothing(running, account):
    control = Client(running.http.control_port, running.http.ctx.tokens.create("dup-ops", {"operator"}))
    before = running.balance(account.id)
    raw = b'{"usd":"1.00","usd":"1000.00","chain":"tron","tx_hash":"0xdup","from_address":"T"}'
    status, _, answer = control.request("POST", f"/v1/accounts/{account.id}/deposits", raw=raw)
    assert status == 400 and answer["error"]["code"] == "duplicate_key", answer
    assert running.balance(account.id) == before
