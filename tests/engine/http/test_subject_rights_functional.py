"""Data-subject rights on the control port (privacy role): export, rectify, object, erase, analytics."""

from __future__ import annotations

import time

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, wait_for


@pytest.fixture(scope="module")
def tokens(running):
    store = running.http.ctx.tokens
    return {role: store.create(f"dsr-{role}", {role}) for role in ("viewer", "operator", "privacy")}


def _customer_with_a_message(running, tokens) -> tuple[str, Client, str]:
    ops = Client(running.http.control_port, tokens["operator"])
    _, _, new = ops.request("POST", "/v1/accounts", {"email": "subject@example.com"})
    acc = new["id"]
    ops.request("POST", f"/v1/accounts/{acc}/deposits", {
        "usd": "5", "chain": "tron", "tx_hash": f"0x{acc}", "from_address": "TSubjectWallet"})
    ops.request("POST", f"/v1/accounts/{acc}/senders", {"sender": "SUBJ"})
    customer = Client(running.http.customer_port, new["api_key"])
    status, _, sent = customer.request("POST", "/v1/messages",
                                       {"to": DE_NUMBER, "from": "SUBJ", "body": "hello"})
    assert status == 202
    wait_for(lambda: running.status(sent["id"]).status == "delivered", what="delivery")
    return acc, customer, sent["id"]


def test_export_rectify_object_and_erase_work_end_to_end_for_the_privacy_role(running, tokens):
    acc, customer, mid = _customer_with_a_message(running, tokens)
    privacy = Client(running.http.control_port, tokens["privacy"])

    status, _, export = privacy.request("GET", f"/v1/accounts/{acc}/export")
    assert status == 200 and export["account"]["email"] == "subject@example.com"
    assert [m["message_id"] for m in export["messages"]] == [mid]
    assert "key_digests" not in export["account"] and "body" not in export["messages"][0]

    assert privacy.request("POST", f"/v1/accounts/{acc}/rectify", {"email": "fixed@example.com"})[0] \
        == 200
    assert running.account(acc).email == "fixed@example.com"
    assert privacy.request("POST", f"/v1/accounts/{acc}/objections", {"purpose": "analytics"})[0] \
        == 200
    assert running.account(acc).objections == ["analytics"]
    status, _, err = privacy.request("POST", f"/v1/accounts/{acc}/objections", {"purpose": "billing"})
    assert status == 400 and err["error"]["code"] == "invalid_request"

    status, _, erased = privacy.request("POST", f"/v1/accounts/{acc}/erase", {})
    assert status == 200 and erased["message_records_deleted"] == 1
    assert erased["ledger_entries_pseudonymised"] == 2  # the deposit and the debit, kept 7 years
    assert customer.request("GET", "/v1/balance")[0] == 401  # the API key is gone with the account
    assert privacy.request("GET", f"/v1/accounts/{acc}/export")[0] == 404
    # every data-subject action is in the engine's audit trail, naming the operator who did it and,
    # the account erased, the account by its pseudonym only
    subject = running.runtime.pseudonyms.pseudonym(acc)
    actions = {(e.actor, e.action) for e in running.runtime.audit_entries()
               if e.target == subject == e.subject and e.account_id == ""}
    assert {("dsr-privacy", "export_account"), ("dsr-privacy", "rectify_account"),
            ("dsr-privacy", "object:analytics"), ("dsr-privacy", "erase_account")} <= actions


def test_an_operator_or_viewer_cannot_erase_or_export(running, tokens):
    acc, _, _ = _customer_with_a_message(running, tokens)
    for role in ("viewer", "operator"):
        client = Client(running.http.control_port, tokens[role])
        assert client.request("POST", f"/v1/accounts/{acc}/erase", {})[0] == 403
        assert client.request("GET", f"/v1/accounts/{acc}/export")[0] == 403
    assert running.account(acc).state == "active"


def test_analytics_for_operators_carry_no_identifiers(running, tokens):
    acc, _, _ = _customer_with_a_message(running, tokens)
    status, _, report = Client(running.http.control_port, tokens["viewer"]).request(
        "GET", "/v1/analytics")
    assert status == 200 and "corridors" in report and "carriers" in report
    assert acc not in repr(report) and DE_NUMBER.lstrip("+") not in repr(report)


def test_an_export_holds_the_accounts_own_settings_its_low_balance_threshold_and_debugging_windows(
        running, tokens):
    """Access and portability (policy 7.1) cover every account setting the holder made (2.1) and the
    debugging window they opted in to (2.3 b), not only the account record."""
    acc, customer, _ = _customer_with_a_message(running, tokens)
    assert customer.request("PUT", "/v1/balance/threshold", {"usd": "2"})[0] == 200
    status, _, window = customer.request("POST", "/v1/debug-window", {"hours": 2})
    assert status == 201
    privacy = Client(running.http.control_port, tokens["privacy"])

    status, _, export = privacy.request("GET", f"/v1/accounts/{acc}/export")
    assert status == 200
    assert export["low_balance_threshold_micro_usd"] == 2_000_000
    assert sorted(w["hold_id"] for w in export["debug_windows"]) == sorted(window["hold_ids"])
    assert {w["until"] for w in export["debug_windows"]} == {window["until"]}
    assert all(w["created_at"] <= window["until"] for w in export["debug_windows"])

    assert customer.request("DELETE", "/v1/debug-window")[0] == 200  # an ended window is not held
    assert privacy.request("GET", f"/v1/accounts/{acc}/export")[2]["debug_windows"] == []


def test_an_export_lists_the_security_incidents_that_affected_the_account_and_no_one_elses(
        running, tokens):
    """Access (policy 7.1) covers the incident records (policy 9) that name the account: what
    happened, when and where it stands, without the other accounts the incident affected."""
    acc, _, _ = _customer_with_a_message(running, tokens)
    ops = Client(running.http.control_port, tokens["operator"])
    other = ops.request("POST", "/v1/accounts", {"email": "bystander@example.com"})[2]["id"]
    privacy = Client(running.http.control_port, tokens["privacy"])

    def incident(summary: str, accounts: list[str] | str) -> dict:
        status, _, body = privacy.request("POST", "/v1/incidents", {
            "summary": summary, "detected_at": time.time() - 3600, "accounts": accounts})
        assert status == 201, body
        return body

    both = incident("Delivery receipts of one day were readable by another customer.", [acc, other])
    incident("A support export of one account was mailed to the wrong address.", [other])
    everyone = incident("A backup bucket was readable for two days.", "all")
    assert privacy.request("POST", f"/v1/incidents/{both['id']}/close", {})[0] == 200
    later = ops.request("POST", "/v1/accounts", {"email": "later@example.com"})[2]["id"]

    status, _, export = privacy.request("GET", f"/v1/accounts/{acc}/export")
    assert status == 200
    listed = {i["id"]: i for i in export["incidents"]}
    assert set(listed) == {both["id"], everyone["id"]}  # not the one that spared it
    mine = listed[both["id"]]
    assert mine["summary"] == "Delivery receipts of one day were readable by another customer."
    assert mine["status"] == "closed" and mine["closed_at"] > 0
    assert mine["detected_at"] == pytest.approx(both["detected_at"])
    assert listed[everyone["id"]]["status"] == "open" and listed[everyone["id"]]["all_accounts"]
    assert other not in repr(export)
    assert running.runtime.pseudonyms.pseudonym(other) not in repr(export)
    # an account opened after an all-accounts incident was not affected by it
    assert privacy.request("GET", f"/v1/accounts/{later}/export")[2]["incidents"] == []
