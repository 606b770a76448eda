"""The control port over real loopback sockets: roles route by route, audit, accounts, carriers, routing."""

from __future__ import annotations

import os
import re
import stat
import time

import pytest

from engine.http.app_control import ROUTE_ROLES
from tests.engine.http.conftest import DE_NUMBER, Client, start_engine, wait_for

ROLE_SETS = {"viewer": {"viewer"}, "operator": {"operator"}, "privacy": {"privacy"}}


@pytest.fixture(scope="module")
def tokens(running):
    store = running.http.ctx.tokens
    return {name: store.create(f"test-{name}", roles) for name, roles in ROLE_SETS.items()}


@pytest.fixture
def control(running, tokens):
    return Client(running.http.control_port, tokens["operator"])


def _path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "acc_0000000000000000", template)


@pytest.mark.parametrize(("method", "template"), sorted(ROUTE_ROLES))
def test_each_route_admits_exactly_its_roles(running, tokens, method, template):
    allowed = ROUTE_ROLES[(method, template)]
    client = Client(running.http.control_port)
    body = {} if method in ("POST", "PUT") else None
    for role, token in tokens.items():
        status, _, answer = client.request(method, _path(template), body, token=token)
        if allowed and role not in allowed:
            assert status == 403 and answer["error"]["code"] == "forbidden", (role, answer)
        else:
            assert status not in (401, 403), (role, status, answer)
    if allowed:
        status, _, answer = client.request(method, _path(template), body, token="")
        assert status == 401 and answer["error"]["code"] == "unauthorized"


def test_every_control_route_has_a_role_entry(running):
    app_routes = {(r.method, r.resource.canonical)
                  for r in running.http.apps["control"].router.routes() if r.method != "HEAD"}
    assert app_routes == set(ROUTE_ROLES)


def test_health_and_readiness_need_no_token(running):
    client = Client(running.http.control_port)
    assert client.request("GET", "/healthz")[0] == 200
    assert client.request("GET", "/readyz")[0] == 200


def test_every_request_is_audited_with_who_what_when_and_result(running, tokens, control):
    control.request("GET", "/v1/carriers")
    control.request("POST", "/v1/holds", {}, token=tokens["viewer"])
    audit = running.http.ctx.audit

    def entries():
        found = [e for e in audit.entries() if e.action in ("GET /v1/carriers", "POST /v1/holds")]
        return found if len(found) >= 2 else None

    found = wait_for(entries, what="audit entries")
    assert any(e.actor == "test-operator" and e.result == "200" for e in found)
    assert any(e.actor == "test-viewer" and e.result == "403" for e in found)
    assert all(e.ts > 0 for e in found)
    everything = repr(audit.entries())
    assert all(token not in everything for token in tokens.values())


def test_an_account_can_be_created_funded_given_a_sender_restricted_and_closed(running, control):
    status, _, new = control.request("POST", "/v1/accounts", {"email": "ops@example.com"})
    assert status == 201 and new["api_key"].startswith("sk_live_")
    acc = new["id"]
    status, _, dep = control.request("POST", f"/v1/accounts/{acc}/deposits", {
        "usd": "5.00", "chain": "tron", "tx_hash": "0xfeed", "from_address": "TXYZ"})
    assert status == 201 and dep["balance_micro_usd"] == 5_000_000
    assert control.request("POST", f"/v1/accounts/{acc}/senders", {"sender": "OPSCO"})[0] == 201
    customer = Client(running.http.customer_port, new["api_key"])
    msg = {"to": DE_NUMBER, "from": "OPSCO", "body": "hi"}
    assert customer.request("POST", "/v1/messages", msg)[0] == 202
    assert control.request("POST", f"/v1/accounts/{acc}/restrict", {"restricted": True})[0] == 200
    assert customer.request("POST", "/v1/messages", msg)[0] == 403
    control.request("POST", f"/v1/accounts/{acc}/restrict", {"restricted": False})
    assert control.request("POST", f"/v1/accounts/{acc}/close")[0] == 200
    assert customer.request("POST", "/v1/messages", msg)[0] in (401, 403)
    status, _, view = control.request("GET", f"/v1/accounts/{acc}")
    assert status == 200 and view["state"] == "closed" and "key_digests" not in view


def test_unknown_accounts_are_404_and_bad_deposits_422(control):
    assert control.request("POST", "/v1/accounts/acc_nope/close")[0] == 404
    _, _, new = control.request("POST", "/v1/accounts", {"email": "x@example.com"})
    status, _, err = control.request("POST", f"/v1/accounts/{new['id']}/deposits", {
        "usd": "-1", "chain": "tron", "tx_hash": "0x1", "from_address": "T"})
    assert 400 <= status < 500 and err["error"]["code"]


def test_a_carrier_can_be_suspended_and_resumed(control):
    status, _, listing = control.request("GET", "/v1/carriers")
    assert status == 200 and listing["carriers"]
    name = listing["carriers"][0]["carrier"]
    assert control.request("POST", f"/v1/carriers/{name}/suspend")[2]["suspended"] is True
    assert control.request("POST", f"/v1/carriers/{name}/resume")[2]["suspended"] is False
    assert control.request("POST", "/v1/carriers/no-such-carrier/suspend")[0] == 404


def _carrier(control, name: str) -> dict:
    return next(c for c in control.request("GET", "/v1/carriers")[2]["carriers"]
                if c["carrier"] == name)


def test_a_suspended_carrier_is_listed_as_suspended_not_as_a_dropped_link(control):
    before = _carrier(control, "fra-vodafone")
    assert (before["suspended"], before["connected"], before["available"]) == (False, True, True)
    assert before["kind"] == "simulated" and before["pop"] == "fra" and before["binds"] == []
    control.request("POST", "/v1/carriers/fra-vodafone/suspend")
    after = _carrier(control, "fra-vodafone")  # the suspension is in place once the POST answered
    assert (after["suspended"], after["connected"], after["available"]) == (True, True, False)
    control.request("POST", "/v1/carriers/fra-vodafone/resume")
    assert _carrier(control, "fra-vodafone")["available"] is True


def test_the_routing_table_is_read_and_replaced_only_when_valid(control):
    status, _, table = control.request("GET", "/v1/routing")
    assert status == 200 and table["routes"]
    assert control.request("PUT", "/v1/routing", table)[0] == 200
    broken = {**table, "routes": [{"match": ["DE"], "pop": "nowhere", "carriers": []}]}
    status, _, err = control.request("PUT", "/v1/routing", broken)
    assert status == 422 and err["error"]["code"] == "invalid_config"
    assert control.request("GET", "/v1/routing")[2] == table  # unchanged


def test_the_answer_of_a_routing_put_is_itself_a_put_that_changes_nothing(running, control):
    """``PUT /v1/routing`` answers the table with two read-only fields (``price_notices_queued``,
    ``mail``); sending that answer back as the next request (a GET → edit → PUT loop that keeps the
    last answer) is taken, the extra fields ignored: nothing changes and nobody is mailed again."""
    status, _, table = control.request("GET", "/v1/routing")
    assert status == 200
    status, _, same = control.request("PUT", "/v1/routing", table)  # GET → PUT: no price changes
    assert status == 200 and same["price_notices_queued"] == 0 and same["mail"] is None, same
    status, _, again = control.request("PUT", "/v1/routing", same)  # the answer as the request
    assert status == 200, again
    assert again == same and control.request("GET", "/v1/routing")[2] == table

    running.create_account("routing-echo@example.com")  # someone to tell of a price change
    dearer = {**table, "rates": {**table["rates"], "default": table["rates"]["default"] + 1}}
    try:
        status, _, changed = control.request("PUT", "/v1/routing", dearer)
        assert status == 200 and changed["mail"] is not None, changed  # a price change: mailed
        status, _, echoed = control.request("PUT", "/v1/routing", changed)
        assert status == 200, echoed
        assert echoed["price_notices_queued"] == 0 and echoed["mail"] is None  # not mailed again
        assert control.request("GET", "/v1/routing")[2] == {"routes": changed["routes"],
                                                             "rates": changed["rates"]}
    finally:
        assert control.request("PUT", "/v1/routing", table)[0] == 200

    # only those two: any other unknown field is still refused
    status, _, err = control.request("PUT", "/v1/routing", {**table, "routez": []})
    assert status == 400 and err["error"]["code"] == "unknown_field", err


@pytest.mark.parametrize("change,needle", [
    ({"routes": []}, "routes is empty"),
    ({"rates": {"germany": 1, "default": 1}}, "rates.germany"),
])
def test_a_routing_table_that_would_refuse_every_message_is_refused(control, change, needle):
    """An operator's PUT of an empty table (or a rate card keyed by names) would otherwise be taken, and
    every message refused from then on."""
    table = control.request("GET", "/v1/routing")[2]
    status, _, err = control.request("PUT", "/v1/routing", {**table, **change})
    assert status == 422 and err["error"]["code"] == "invalid_config"
    assert needle in err["error"]["message"]
    assert control.request("GET", "/v1/routing")[2] == table  # unchanged


def test_metrics_expose_messages_in_flight_and_webhook_backlog(running, control, tokens):
    viewer = Client(running.http.control_port, tokens["viewer"])
    status, headers, text = viewer.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = text.decode()
    for name in ("smsroute_in_flight", "smsroute_webhook_backlog",
                 "smsroute_http_request_duration_seconds_bucket"):
        assert name in text


def test_an_operator_cannot_mint_a_token_with_roles_it_lacks(running, tokens):
    client = Client(running.http.control_port)
    status, _, _ = client.request("POST", "/v1/tokens", {"name": "x", "roles": ["privacy"]},
                                  token=tokens["operator"])
    assert status == 403
    status, _, made = client.request("POST", "/v1/tokens", {"name": "y", "roles": ["operator"]},
                                     token=tokens["operator"])
    assert status == 201 and client.request("GET", "/v1/carriers", token=made["token"])[0] == 200


def test_first_start_writes_the_token_file_0600_and_prints_only_its_path(tmp_path, capsys):
    engine = start_engine(tmp_path)
    try:
        path = engine.data_dir / "operator.token"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        token = path.read_text().strip()
        err = capsys.readouterr().err
        assert str(path) in err and token not in err
        client = Client(engine.http.control_port, token)
        assert client.request("GET", "/v1/holds")[0] != 403  # every role
        assert client.request("GET", "/metrics")[0] == 200
    finally:
        engine.stop()


def test_a_privacy_operator_places_lists_and_releases_a_legal_hold(running, tokens):
    account = running.create_account("held-hold@example.com")
    running.register_sender(account.id, "ACME")
    running.deposit(account.id, "1.00", "tron", "0xhold", "TXYZ")
    customer = Client(running.http.customer_port, account.api_key)
    _, _, sent = customer.request("POST", "/v1/messages",
                                  {"to": DE_NUMBER, "from": "ACME", "body": "evidence"})
    privacy = Client(running.http.control_port, tokens["privacy"])
    status, _, placed = privacy.request("POST", "/v1/holds", {
        "kind": "legal_hold", "reason": "carrier complaint", "reference": "CC-42",
        "until": time.time() + 3600, "message_ids": [sent["id"]]})
    assert status == 201, placed
    [hold] = placed["holds"]
    assert hold["actor"] == "test-privacy" and hold["message_ids"] == [sent["id"]]
    listed = privacy.request("GET", "/v1/holds")[2]["holds"]
    assert hold["hold_id"] in {h["hold_id"] for h in listed}
    status, _, released = privacy.request("POST", f"/v1/holds/{hold['hold_id']}/release",
                                          {"reason": "complaint closed"})
    assert status == 200 and released["ended_by"] == "test-privacy"
    still = privacy.request("GET", "/v1/holds")[2]["holds"]
    assert hold["hold_id"] not in {h["hold_id"] for h in still}
    assert privacy.request("POST", "/v1/holds/hold_nope/release", {"reason": "x"})[0] == 404
    status, _, err = privacy.request("POST", "/v1/holds", {
        "kind": "forever", "reason": "r", "reference": "x", "until": time.time() + 60,
        "message_ids": [sent["id"]]})
    assert status == 400 and err["error"]["code"] == "invalid_request"


def _holds_with_reference(client: Client, reference: str) -> list[dict]:
    return [h for h in client.request("GET", "/v1/holds")[2]["holds"] if h["reference"] == reference]


def test_placing_a_hold_again_with_its_idempotency_key_answers_the_hold_it_placed(running, tokens):
    account = running.create_account("held-twice@example.com")
    privacy = Client(running.http.control_port, tokens["privacy"])
    order = {"kind": "lawful_order", "reason": "court order", "reference": "ORDER-IDEM-1",
             "authority": "court_order", "until": time.time() + 3600, "account_id": account.id}
    key = {"Idempotency-Key": "order-idem-1"}
    status, _, first = privacy.request("POST", "/v1/holds", order, headers=key)
    assert status == 201, first
    placed = sorted(h["hold_id"] for h in first["holds"])  # one per POP shard
    assert sorted(h["hold_id"] for h in _holds_with_reference(privacy, "ORDER-IDEM-1")) == placed

    # the operator never saw that answer and asks again: the same holds, nothing placed
    status, headers, again = privacy.request("POST", "/v1/holds", order, headers=key)
    assert status == 200 and headers.get("Idempotent-Replayed") == "true", again
    assert sorted(h["hold_id"] for h in again["holds"]) == placed
    assert again["notice"] == first["notice"]  # the holder's notice, queued once, not a second time
    assert sorted(h["hold_id"] for h in _holds_with_reference(privacy, "ORDER-IDEM-1")) == placed

    status, _, err = privacy.request("POST", "/v1/holds", {**order, "reason": "another order"},
                                     headers=key)
    assert status == 409 and err["error"]["code"] == "hold_conflict", err
    assert len(_holds_with_reference(privacy, "ORDER-IDEM-1")) == len(placed)

    status, _, other = privacy.request("POST", "/v1/holds", order,
                                       headers={"Idempotency-Key": "order-idem-2"})
    assert status == 201 and not {h["hold_id"] for h in other["holds"]} & set(placed)
    status, _, err = privacy.request("POST", "/v1/holds", order, headers={"Idempotency-Key": ""})
    assert status == 400 and err["error"]["code"] == "invalid_idempotency_key", err


def test_retention_status_shows_the_table_and_the_active_exceptions(running, tokens):
    status, _, view = Client(running.http.control_port, tokens["viewer"]).request(
        "GET", "/v1/retention")
    assert status == 200
    categories = {row["category"] for row in view["retention"]}
    assert {"message_bodies", "api_request_logs"} <= categories
    assert "holds" in view
