"""Billing over real loopback sockets (issue 14): usage exports streamed as CSV and JSON that parse back and
add up to the balance (customer API and control port); operator adjustments, idempotent, audited and never
overdrawing; deposit conflicts answered 409; the low-balance webhook, once per crossing; the ledger's
verification and reconciliation on the control port."""

from __future__ import annotations

import csv
import io
import json
import time

import msgspec
import pytest

from engine import Engine
from engine.http import openapi
from engine.http.schemas import LowBalanceEvent
from engine.http.webhooks import verify
from tests.engine.http.conftest import (
    ALL_DELIVERED,
    DE_NUMBER,
    Client,
    Receiver,
    overrides,
    wait_for,
)

SG_NUMBER = "+6591234567"  # sin: its carriers reject every message (refunded: none acknowledged it)
DE_PRICE, SG_PRICE = 75_000, 35_000


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    doc = overrides()
    for name in ("sin-singtel", "sin-starhub"):
        doc["carriers"][name].update(outcomes={**ALL_DELIVERED, "delivered": 0.0, "rejected": 1.0},
                                     latency={"distribution": "fixed", "ms": 1})
    running = Engine.start(tmp_path_factory.mktemp("billing") / "data", http=True, overrides=doc)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def operator(engine) -> Client:
    token = engine.http.ctx.tokens.create("billing-operator", {"operator"})
    return Client(engine.http.control_port, token)


def new_account(operator: Client, usd: str = "10.00") -> tuple[str, str]:
    """A funded account, made on the control port: its id and API key."""
    status, _, acc = operator.request("POST", "/v1/accounts", {"email": "billing@example.com"})
    assert status == 201
    status, _, _ = operator.request("POST", f"/v1/accounts/{acc['id']}/deposits", {
        "usd": usd, "chain": "tron", "tx_hash": f"0x{acc['id']}", "from_address": "TBILL"})
    assert status == 201
    return acc["id"], acc["api_key"]


def customer(engine, operator) -> tuple[str, Client]:
    """A funded account with the sender ACME, and a client of the customer API with its key."""
    account_id, key = new_account(operator)
    api = Client(engine.http.customer_port, key)
    assert api.request("POST", "/v1/senders", {"sender": "ACME"})[0] == 201
    return account_id, api


def send_and_settle(api: Client, numbers: list[str]) -> list[str]:
    ids = []
    for n, number in enumerate(numbers):
        status, _, accepted = api.request("POST", "/v1/messages",
                                          {"to": number, "from": "ACME", "body": f"usage {n}"})
        assert status == 202, accepted
        ids.append(accepted["id"])
    for mid in ids:
        wait_for(lambda mid=mid: api.message_status(mid) not in (None, "accepted"),
                 f"{mid} to be final", 20)
    return ids


def balance(api: Client) -> int:
    return api.request("GET", "/v1/balance")[2]["balance_micro_usd"]


def test_a_usage_export_in_csv_parses_back_and_adds_up_to_the_balance(engine, operator):
    account_id, api = customer(engine, operator)
    status, _, _ = operator.request("POST", f"/v1/accounts/{account_id}/adjustments", {
        "usd": "-0.25", "reason": "setup fee", "idempotency_key": "setup-1"})
    assert status == 201
    ids = send_and_settle(api, [DE_NUMBER, SG_NUMBER, DE_NUMBER, SG_NUMBER, DE_NUMBER])
    wait_for(lambda: balance(api) == 10_000_000 - 250_000 - 3 * DE_PRICE, "the refunds", 20)

    status, headers, body = api.request("GET", "/v1/usage?format=csv")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert headers.get("Transfer-Encoding") == "chunked"  # streamed
    assert "RateLimit-Remaining" in headers and headers["X-Content-Type-Options"] == "nosniff"
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert sum(int(r["amount_micro_usd"]) for r in rows) == balance(api)
    messages = {r["id"]: r for r in rows if r["type"] == "message"}
    assert list(messages) == ids
    for mid, number in zip(ids, [DE_NUMBER, SG_NUMBER] * 3, strict=False):
        row = messages[mid]
        refunded = number == SG_NUMBER
        assert row["country"] == ("SG" if refunded else "DE") and row["segments"] == "1"
        assert row["status"] == ("rejected" if refunded else "delivered")
        price = SG_PRICE if refunded else DE_PRICE
        assert (int(row["price_micro_usd"]), int(row["refund_micro_usd"])) == \
            (price, price if refunded else 0)
    [deposit] = [r for r in rows if r["type"] == "deposit"]
    assert (deposit["amount_micro_usd"], deposit["chain"], deposit["from_address"]) == \
        ("10000000", "tron", "TBILL")
    [adjustment] = [r for r in rows if r["type"] == "adjustment"]
    assert (adjustment["amount_micro_usd"], adjustment["reason"]) == ("-250000", "setup fee")
    assert DE_NUMBER[1:] not in body.decode() and "usage 0" not in body.decode()  # no number, no body


def test_a_usage_export_in_json_has_totals_equal_to_the_balance_on_both_ports(engine, operator):
    account_id, api = customer(engine, operator)
    send_and_settle(api, [DE_NUMBER, SG_NUMBER])
    wait_for(lambda: balance(api) == 10_000_000 - DE_PRICE, "the refund", 20)
    status, headers, doc = api.request("GET", "/v1/usage")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert doc["account_id"] == account_id and doc["currency"] == "USD"
    assert doc["totals"]["amount_micro_usd"] == doc["balance_micro_usd"] == balance(api)
    assert (doc["totals"]["messages"], doc["totals"]["refund_micro_usd"]) == (2, SG_PRICE)
    status, _, control = operator.request("GET", f"/v1/accounts/{account_id}/usage")
    assert status == 200 and control["rows"] == doc["rows"]
    later = time.time() + 1
    status, _, empty = api.request("GET", f"/v1/usage?since={later}&until={later + 60}")
    assert status == 200 and empty["rows"] == [] and empty["totals"]["amount_micro_usd"] == 0
    status, _, day = api.request("GET", "/v1/usage?since=2000-01-01&until=2000-01-02")
    assert status == 200 and day["rows"] == []
    for bad in ("since=tomorrow", "format=xml", f"since={later}&until=1"):
        status, _, error = api.request("GET", f"/v1/usage?{bad}")
        assert status == 400, bad
    assert operator.request("GET", "/v1/accounts/acc_00000000000000ff/usage")[0] == 404
    status, _, _ = Client(engine.http.customer_port).request("GET", "/v1/usage")
    assert status == 401


def test_adjustments_are_idempotent_conflict_checked_audited_and_never_overdraw(engine, operator):
    account_id, api = customer(engine, operator)
    path = f"/v1/accounts/{account_id}/adjustments"
    credit = {"usd": "1.50", "reason": "SLA credit for incident 7", "idempotency_key": "sla-7"}
    status, _, first = operator.request("POST", path, credit)
    assert status == 201 and first["balance_micro_usd"] == 11_500_000 and not first["duplicate"]
    status, _, again = operator.request("POST", path, credit)
    assert status == 200 and again["duplicate"] and balance(api) == 11_500_000
    documented = openapi.control_document()["paths"]["/v1/accounts/{id}/adjustments"]["post"]
    assert {"201", "200", "402", "409"} <= set(documented["responses"])  # as answered here
    status, _, conflict = operator.request("POST", path, {**credit, "usd": "15.00"})
    assert status == 409 and conflict["error"]["code"] == "adjustment_conflict"
    status, _, refused = operator.request("POST", path, {
        "usd": "-12.00", "reason": "chargeback", "idempotency_key": "cb-1"})
    assert status == 402 and refused["error"]["code"] == "insufficient_balance"
    status, _, debit = operator.request("POST", path, {
        "usd": "-11.50", "reason": "chargeback", "idempotency_key": "cb-1"})  # refused: free to retry
    assert status == 201 and debit["balance_micro_usd"] == 0
    status, _, answer = api.request("POST", "/v1/messages", {"to": DE_NUMBER, "from": "ACME",
                                                             "body": "no money left"})
    assert status == 402 and answer["error"]["code"] == "insufficient_balance"
    for bad in ({**credit, "reason": "  "}, {**credit, "usd": "0"}, {**credit, "usd": "1.0000001"},
                {**credit, "idempotency_key": "with space"}):
        assert operator.request("POST", path, bad)[0] == 400, bad
    assert operator.request("POST", path, {"usd": "1", "idempotency_key": "x"})[0] == 400  # no reason
    status, _, audit = operator.request("GET", "/v1/audit?kind=data_subject",
                                        token=engine.http.ctx.tokens.create("billing-privacy",
                                                                            {"privacy"}))
    mine = [e for e in audit["entries"] if e["target"] == account_id
            and e["action"] == "ledger_adjustment"]
    assert [(e["actor"], e["result"], e["detail"]["amount_micro_usd"]) for e in mine] == [
        ("billing-operator", "ok", 1_500_000), ("billing-operator", "replay", 1_500_000),
        ("billing-operator", "adjustment_conflict", 15_000_000),
        ("billing-operator", "insufficient_balance", -12_000_000),
        ("billing-operator", "ok", -11_500_000)]
    items = [e for e in engine.runtime.ledger_store.entries(account_id) if e.kind == "adjustment"]
    assert [(e.amount_micro_usd, e.reason, e.actor) for e in items] == [
        (1_500_000, "SLA credit for incident 7", "billing-operator"),
        (-11_500_000, "chargeback", "billing-operator")]


def test_a_deposit_replayed_is_idempotent_and_one_reusing_its_transaction_is_409(engine, operator):
    account_id, api = customer(engine, operator)
    other_id, _ = new_account(operator, usd="1.00")
    path = f"/v1/accounts/{account_id}/deposits"
    deposit = {"usd": "2.00", "chain": "eth", "tx_hash": f"0xreplay{account_id}", "from_address": "0xA"}
    assert operator.request("POST", path, deposit)[0] == 201
    status, _, replay = operator.request("POST", path, deposit)
    assert status == 201 and replay["balance_micro_usd"] == 12_000_000
    for changed, where in (({**deposit, "usd": "20.00"}, path), ({**deposit, "from_address": "0xB"}, path),
                           (deposit, f"/v1/accounts/{other_id}/deposits")):
        status, _, error = operator.request("POST", where, changed)
        assert status == 409 and error["error"]["code"] == "deposit_conflict", changed
        assert deposit["tx_hash"] in error["error"]["message"]
    assert balance(api) == 12_000_000


def test_a_low_balance_webhook_is_sent_once_per_crossing_of_the_threshold(engine, operator):
    receiver = Receiver()
    try:
        account_id, api = customer(engine, operator)
        assert api.request("PUT", "/v1/webhook", {"url": receiver.url, "receipt_statuses": []})[0] \
            == 200
        secret = api.request("POST", "/v1/webhook/secret")[2]["secret"]
        status, _, set_ = api.request("PUT", "/v1/balance/threshold", {"usd": "9.90"})
        assert status == 200 and set_["low_balance_threshold_micro_usd"] == 9_900_000
        assert api.request("GET", "/v1/balance")[2]["low_balance_threshold_micro_usd"] == 9_900_000
        for _ in range(4):  # one at a time: 9.925 (above), 9.85 (crossed), 9.775, 9.70 (still below)
            send_and_settle(api, [DE_NUMBER])
            api.request("GET", "/v1/balance")  # (a balance read writes the queued debits: one each)
        headers, body, _ = receiver.next()
        event = json.loads(body)
        assert event["type"] == "account.low_balance"
        assert event["data"] == {"balance_micro_usd": 9_850_000, "threshold_micro_usd": 9_900_000}
        msgspec.json.decode(body, type=LowBalanceEvent, strict=True)  # the type the document publishes
        assert verify(headers["Smsroute-Signature"], [secret], body, time.time())
        assert headers["Smsroute-Event-Id"] == event["id"]
        operator.request("POST", f"/v1/accounts/{account_id}/deposits", {
            "usd": "1.00", "chain": "tron", "tx_hash": f"0xtopup{account_id}", "from_address": "T"})
        for _ in range(11):  # 10.70 (above again) down to 9.875: crossed a second time
            send_and_settle(api, [DE_NUMBER])
            api.request("GET", "/v1/balance")
        second = json.loads(receiver.next()[1])  # the next event: none came while it stayed below
        assert second["type"] == "account.low_balance" and second["id"] != event["id"]
        assert second["data"]["balance_micro_usd"] == 9_875_000
    finally:
        receiver.close()


def test_the_ledger_verifies_and_reconciles_on_the_control_port(engine, operator):
    _, api = customer(engine, operator)
    send_and_settle(api, [DE_NUMBER, SG_NUMBER])
    status, _, report = operator.request("GET", "/v1/ledger/verify")
    assert status == 200 and report["ok"] and report["problems"] == []
    assert report["head"]["seq"] == report["entries"] > 0 and len(report["head"]["link"]) == 64
    time.sleep(1.1)  # reconciliation leaves out the last second's messages
    status, _, reconciliation = operator.request("GET", "/v1/ledger/reconciliation")
    assert status == 200 and reconciliation["ok"], reconciliation["differences"]
    assert reconciliation["counts"]["records"] >= 2
    status, _, last = operator.request("GET", "/v1/ledger/reconciliation?run=false")
    assert status == 200 and last["started_at"] == reconciliation["started_at"]
    viewer = engine.http.ctx.tokens.create("billing-viewer", {"viewer"})
    assert operator.request("GET", "/v1/ledger/verify", token=viewer)[0] == 403


@pytest.mark.parametrize("period", ["until=1e20", "since=-1e20", "until=1e12"])
def test_a_period_bound_beyond_what_a_date_can_say_is_a_400_not_a_500(engine, operator, period):
    """The export names its period in ISO 8601: a bound no date can say (past the year 9999) failed
    there, after the rows were read, as an internal error."""
    account_id, api = customer(engine, operator)
    for client, path in ((api, "/v1/usage"), (operator, f"/v1/accounts/{account_id}/usage")):
        status, _, body = client.request("GET", f"{path}?{period}")
        assert status == 400 and body["error"]["code"] == "invalid_request", (path, body)
