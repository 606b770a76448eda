"""GET /v1/audit shows every audit trail, filterable by kind and time; ids of every shape are refused
cleanly on every route (never a 500)."""

from __future__ import annotations

import re
import time

import pytest

from engine.http.params import kind_of
from tests.engine.http.conftest import Client, funded_account


@pytest.fixture(scope="module")
def privacy(running):
    token = running.http.ctx.tokens.create("auditor", {"viewer", "operator", "privacy"})
    return Client(running.http.control_port, token)


def _audit(client, query=""):
    status, _, body = client.request("GET", f"/v1/audit{query}")
    assert status == 200, body
    return body


def test_the_audit_shows_control_data_subject_and_retention_exception_trails(running, privacy):
    started = time.time()
    account = funded_account(running, "audited@example.com")
    accepted = running.submit(account.api_key, "+4915112345678", "ACME", "hold me")
    privacy.request("POST", f"/v1/accounts/{account.id}/restrict", {"restricted": True})
    privacy.request("POST", "/v1/holds", {"kind": "legal_hold", "reason": "complaint",
                                          "reference": "case-1", "until": time.time() + 3600,
                                          "message_ids": [accepted.message_id]})
    entries = _audit(privacy, f"?since={started}")["entries"]
    kinds = {e["kind"] for e in entries}
    assert kinds == {"control", "data_subject", "retention_exception"}
    assert any(e["kind"] == "data_subject" and e["action"] == "restrict" and e["target"] == account.id
               for e in entries)
    placed = [e for e in entries if e["kind"] == "retention_exception"
              and e["action"] == "place_legal_hold"]
    assert placed and placed[0]["detail"]["notes"]["reason"] == "complaint"  # sealed, opened for the auditor
    assert [e["ts"] for e in entries] == sorted(e["ts"] for e in entries)

    only = _audit(privacy, f"?since={started}&kind=data_subject")["entries"]
    assert only and {e["kind"] for e in only} == {"data_subject"}
    two = _audit(privacy, f"?since={started}&kind=data_subject,retention_exception")["entries"]
    assert {e["kind"] for e in two} == {"data_subject", "retention_exception"}
    cut = entries[len(entries) // 2]["ts"]
    assert all(e["ts"] < cut for e in _audit(privacy, f"?since={started}&until={cut}")["entries"])
    assert all(e["ts"] >= cut for e in _audit(privacy, f"?since={cut}")["entries"])


def test_the_audit_pages_and_refuses_bad_filters(running, privacy):
    page = _audit(privacy, "?limit=2")
    assert len(page["entries"]) == 2 and page["next_since"] > page["entries"][-1]["ts"]
    following = _audit(privacy, f"?limit=2&since={page['next_since']!r}")  # starts where it said:
    assert following["entries"][0]["ts"] == page["next_since"]  # the first entry not shown, none again
    for query in ("?kind=nope", "?since=yesterday", "?limit=0", "?limit=5000", "?until=nan"):
        assert privacy.request("GET", f"/v1/audit{query}")[0] == 400, query


BAD_IDS = ["x", "%20", "acc_" + "0" * 600, "acc_ZZZZZZZZZZZZZZZZ", "msg_" + "g" * 32, "..%2F..%2Fetc"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_malformed_id_in_any_control_path_is_404(running, privacy, bad):
    for route in running.http.apps["control"].router.routes():
        template = route.resource.canonical
        if "{" not in template or route.method == "HEAD":
            continue
        path = re.sub(r"\{[^}]+\}", bad, template)
        body = {} if route.method in ("POST", "PUT") else None
        status, _, answer = privacy.request(route.method, path, body)
        assert status == 404, (route.method, template, answer)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_malformed_id_in_any_customer_path_is_404(running, bad):
    api = Client(running.http.customer_port, funded_account(running, f"ids{len(bad)}@example.com",
                                                             usd="").api_key)
    for route in running.http.apps["customer"].router.routes():
        template = route.resource.canonical
        if "{" not in template or route.method == "HEAD":
            continue
        status, _, answer = api.request(route.method, re.sub(r"\{[^}]+\}", bad, template))
        assert status == 404, (route.method, template, answer)


def test_every_path_parameter_of_every_route_has_a_declared_id_shape(running):
    for app in running.http.apps.values():
        for route in app.router.routes():
            for param in re.findall(r"\{([^}]+)\}", route.resource.canonical):
                assert kind_of(route.resource.canonical, param), (route.resource.canonical, param)


@pytest.mark.parametrize("account_id", ["", "x", "acc_" + "0" * 600, 7])
def test_a_hold_with_a_malformed_account_id_is_400_not_500(running, privacy, account_id):
    status, _, body = privacy.request("POST", "/v1/holds", {
        "kind": "lawful_order", "reason": "r", "reference": "ref", "until": time.time() + 60,
        "authority": "subpoena",
        "account_id": account_id})
    assert status == 400, body


def test_a_hold_with_a_malformed_message_id_is_400(running, privacy):
    status, _, body = privacy.request("POST", "/v1/holds", {
        "kind": "legal_hold", "reason": "r", "reference": "ref", "until": time.time() + 60,
        "message_ids": [""]})
    assert status == 400 and body["error"]["code"] == "invalid_id"


def test_the_embedding_api_treats_an_empty_or_overlong_account_id_as_unknown(running):
    from engine.errors import UnknownAccount

    for bad in ("", "a" * 600):
        with pytest.raises(UnknownAccount):
            running.account(bad)
        with pytest.raises(UnknownAccount):
            running.place_hold("debug_window", actor="t", reason="r", reference="x",
                               until=time.time() + 60, account_id=bad)
