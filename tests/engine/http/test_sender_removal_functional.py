"""Rectification (policy 7.1) of a sender ID through the customer port: a wrong one (a person's name, say)
can be removed, submits from it are refused as from an unknown sender at once, the removal is in the audit
log without the sender itself, and the OpenAPI document the server publishes lists the route. Staff handle
the same request received by e-mail on the control port (``DELETE /v1/accounts/{id}/senders/{sender}``,
the privacy role, as ``rectify``)."""

from __future__ import annotations

import json

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account


@pytest.fixture(scope="module")
def auditor(running):
    return Client(running.http.control_port, running.http.ctx.tokens.create("sender-auditor",
                                                                            {"privacy"}))


def _submit(api: Client, sender: str) -> tuple[int, dict]:
    status, _, answer = api.request("POST", "/v1/messages",
                                    {"to": DE_NUMBER, "from": sender, "body": "hello"})
    return status, answer


def test_a_removed_sender_id_can_no_longer_submit_and_its_removal_is_audited(running, auditor):
    account = funded_account(running, email="senders@example.com")
    api = Client(running.http.customer_port, account.api_key)
    assert api.request("POST", "/v1/senders", {"sender": "JANE ROE"})[0] == 201
    assert _submit(api, "JANE ROE")[0] == 202  # the account's session now runs and knows it

    status, _, removed = api.request("DELETE", "/v1/senders/JANE%20ROE")
    assert status == 200 and removed == {"sender": "JANE ROE", "removed": True}

    status, refused = _submit(api, "JANE ROE")
    assert status == 403 and refused["error"]["code"] == "unknown_sender"
    assert _submit(api, "ACME")[0] == 202  # the others stay
    assert running.account(account.id).senders == ["ACME"]

    status, _, again = api.request("DELETE", "/v1/senders/JANE%20ROE")
    assert status == 404 and again["error"]["code"] == "unknown_sender"

    status, _, trail = auditor.request("GET", f"/v1/audit?kind=data_subject&account={account.id}")
    assert status == 200
    removals = [e for e in trail["entries"] if e["action"] == "remove_sender"]
    assert [e["actor"] for e in removals] == [f"customer:{account.id}"]
    assert "JANE" not in str(trail)


def test_a_restricted_account_may_still_remove_a_sender_id(running):
    account = funded_account(running, email="restricted-senders@example.com")
    running.restrict_account(account.id, True)
    api = Client(running.http.customer_port, account.api_key)
    status, _, removed = api.request("DELETE", "/v1/senders/ACME")
    assert status == 200 and removed["removed"] is True
    assert running.account(account.id).senders == []


def test_the_published_openapi_document_lists_sender_removal(running):
    status, _, doc = Client(running.http.customer_port).request("GET", "/v1/openapi.json")
    assert status == 200
    op = doc["paths"]["/v1/senders/{sender}"]["delete"]
    assert [p["name"] for p in op["parameters"] if p["in"] == "path"] == ["sender"]


def test_staff_remove_a_sender_id_on_the_control_port_audited_without_it(running, auditor):
    """An e-mailed rectification request: the privacy desk removes the sender ID; submits from it are
    refused at once, a second removal is 404, an operator-only token may not, and no audit trail —
    the control port's request entries included — holds the sender."""
    account = funded_account(running, email="staff-senders@example.com")
    api = Client(running.http.customer_port, account.api_key)
    assert api.request("POST", "/v1/senders", {"sender": "JOHN ROE"})[0] == 201
    assert _submit(api, "JOHN ROE")[0] == 202
    route = f"/v1/accounts/{account.id}/senders/JOHN%20ROE"

    operator = Client(running.http.control_port, running.http.ctx.tokens.create(
        "sender-operator", {"operator", "viewer"}))
    status, _, refused = operator.request("DELETE", route)
    assert status == 403 and refused["error"]["code"] == "forbidden"
    assert _submit(api, "JOHN ROE")[0] == 202  # not removed by the refused request

    status, _, removed = auditor.request("DELETE", route)
    assert status == 200 and removed == {"sender": "JOHN ROE", "removed": True}
    status, refused = _submit(api, "JOHN ROE")
    assert status == 403 and refused["error"]["code"] == "unknown_sender"
    assert running.account(account.id).senders == ["ACME"]
    status, _, again = auditor.request("DELETE", route)
    assert status == 404 and again["error"]["code"] == "unknown_sender"

    status, _, trail = auditor.request("GET", f"/v1/audit?account={account.id}")
    assert status == 200
    removals = [e for e in trail["entries"] if e["action"] == "remove_sender"]
    assert [(e["kind"], e["actor"]) for e in removals] == [("data_subject", "sender-auditor")]
    requests = [e for e in trail["entries"] if e["kind"] == "control"
                and e["action"] == "DELETE /v1/accounts/{id}/senders/{sender}"]
    assert {e["result"] for e in requests} >= {"started", "200", "403", "404"}
    status, _, everything = auditor.request("GET", "/v1/audit")
    assert status == 200
    assert "JOHN" not in json.dumps(trail) and "JOHN" not in json.dumps(everything)


def test_the_control_document_lists_staff_sender_removal(running):
    status, _, doc = Client(running.http.control_port).request("GET", "/v1/openapi.json")
    assert status == 200
    op = doc["paths"]["/v1/accounts/{id}/senders/{sender}"]["delete"]
    assert [p["name"] for p in op["parameters"] if p["in"] == "path"] == ["id", "sender"]
