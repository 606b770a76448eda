"""A single-value query parameter given twice is ambiguous (``?limit=1&limit=500``: which page size?), as
a key twice in a JSON body is: both ports refuse it with 400 duplicate_parameter naming it, instead of
silently reading the first. Parameters that repeat by design (``status``, ``kind``) still do."""

from __future__ import annotations

import pytest

from tests.engine.http.conftest import Client, funded_account


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, email="dupq@example.com", usd="10.00", sender="DUPQ")


@pytest.fixture(scope="module")
def control(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("dupq-ops", {"operator", "privacy"}))


def _refused(answer: tuple, name: str) -> None:
    status, _, body = answer
    assert status == 400 and body["error"]["code"] == "duplicate_parameter", body
    assert name in body["error"]["message"]


@pytest.mark.parametrize("query,name", [
    ("limit=1&limit=500", "limit"), ("cursor=a&cursor=b", "cursor"), ("since=0&since=1", "since"),
    ("until=1&limit=5&until=2", "until"),
])
def test_the_customer_message_list_refuses_a_single_value_parameter_twice(running, account, query, name):
    customer = Client(running.http.customer_port, account.api_key)
    _refused(customer.request("GET", f"/v1/messages?{query}"), name)
    status, _, page = customer.request("GET", "/v1/messages?limit=1&status=delivered&status=failed")
    assert status == 200 and "messages" in page, page  # status repeats by design


def test_the_customer_usage_export_and_verification_link_refuse_a_parameter_twice(running, account):
    customer = Client(running.http.customer_port, account.api_key)
    _refused(customer.request("GET", "/v1/usage?format=json&format=csv"), "format")
    _refused(customer.request("GET", "/v1/usage?since=0&until=1&since=5"), "since")
    assert customer.request("GET", "/v1/usage?format=json&since=0")[0] == 200
    _refused(Client(running.http.customer_port).request("GET", "/v1/privacy/verify?token=a&token=b"),
             "token")


def test_the_control_port_refuses_a_single_value_parameter_twice(running, account, control):
    _refused(control.request("GET", "/v1/audit?limit=1&limit=1000"), "limit")
    _refused(control.request("GET", "/v1/audit?since=0&since=1"), "since")
    _refused(control.request("GET", f"/v1/audit?account={account.id}&account={account.id}"), "account")
    assert control.request("GET", "/v1/audit?limit=1&kind=control&kind=data_subject")[0] == 200
    _refused(control.request("GET", "/v1/ledger/reconciliation?run=false&run=true"), "run")
    _refused(control.request("GET", f"/v1/accounts/{account.id}/usage?until=1&until=2"), "until")
    _refused(control.request("GET", "/v1/dsar?overdue=1&overdue=0"), "overdue")
