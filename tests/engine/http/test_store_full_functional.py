"""A full store outside the POPs and the ledger (accounts and API keys, the HTTP store) answers
``503 store_full`` over real sockets, loses nothing it acknowledged, keeps serving reads, names the store in
``/metrics`` and takes writes again once there is space."""

from __future__ import annotations

import re
import time

from engine import Engine
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, overrides

SMALL_HTTP_MAP_MB = 1  # the HTTP store's map fills after some thousands of idempotency records


def _refusals(control: Client, store: str) -> float:
    status, _, text = control.request("GET", "/metrics")
    assert status == 200
    found = re.search(rf'^smsroute_store_full_refusals_total{{store="{store}"}} (\S+)$', text.decode(), re.M)
    return float(found.group(1)) if found else 0.0


def _start(data_dir, map_size_mb: int, **maps: int) -> Engine:
    settings = overrides()
    settings["engine"] = {"map_size_mb": map_size_mb, **maps}
    return Engine.start(data_dir, http=True, overrides=settings)


def test_a_full_account_store_refuses_new_accounts_with_store_full_and_keeps_every_one_it_created(tmp_path):
    data = tmp_path / "data"
    engine = _start(data, map_size_mb=1)  # the core's map fills after some hundreds of accounts
    try:
        token = engine.http.ctx.tokens.create("ops", {"operator", "viewer"})
        control = Client(engine.http.control_port, token)
        created = []
        for i in range(5000):
            status, headers, answer = control.request("POST", "/v1/accounts", {"email": f"u{i}@example.com"})
            if status != 201:
                break
            created.append(answer)
        assert created, "no account was created at all"
        assert status == 503 and answer["error"]["code"] == "store_full", (status, answer)
        assert "accounts" in answer["error"]["message"] and headers.get("Retry-After")
        assert _refusals(control, "accounts") >= 1

        # nothing half-made: exactly the acknowledged accounts exist, and each one works (reads served)
        assert sorted(engine.accounts.ids()) == sorted(a["id"] for a in created)
        for new in (created[0], created[-1]):
            assert control.request("GET", f"/v1/accounts/{new['id']}")[0] == 200
            assert Client(engine.http.customer_port, new["api_key"]).request("GET", "/v1/balance")[0] == 200
    finally:
        engine.stop()

    engine = _start(data, map_size_mb=8)  # space returns: the operator enlarges the map
    try:
        control = Client(engine.http.control_port, token)
        assert len(engine.accounts.ids()) == len(created)
        status, _, answer = control.request("POST", "/v1/accounts", {"email": "after@example.com"})
        assert status == 201, answer
        assert Client(engine.http.customer_port, answer["api_key"]).request("GET", "/v1/balance")[0] == 200
    finally:
        engine.stop()


def test_a_full_http_store_refuses_idempotent_submits_with_store_full_and_keeps_their_answers(tmp_path):
    engine = _start(tmp_path / "data", map_size_mb=64, http_map_size_mb=SMALL_HTTP_MAP_MB)
    try:
        account = funded_account(engine, usd="100000")
        customer = Client(engine.http.customer_port, account.api_key)
        control = Client(engine.http.control_port, engine.http.ctx.tokens.create("ops", {"viewer"}))
        message = {"to": DE_NUMBER, "from": "ACME", "body": "hello"}
        answered = {}
        for i in range(20000):
            status, headers, answer = customer.request("POST", "/v1/messages", message,
                                                       headers={"Idempotency-Key": f"order-{i}"})
            if status != 202:
                break
            answered[f"order-{i}"] = answer["id"]
        assert answered, "no message was accepted at all"
        assert status == 503 and answer["error"]["code"] == "store_full", (status, answer)
        assert "http" in answer["error"]["message"] and headers.get("Retry-After")
        assert _refusals(control, "http") >= 1

        # what was acknowledged is kept: its replay answers the same message; reads and plain submits work
        status, headers, answer = customer.request("POST", "/v1/messages", message,
                                                   headers={"Idempotency-Key": "order-0"})
        assert status == 202 and headers.get("Idempotent-Replayed") == "true"
        assert answer["id"] == answered["order-0"]
        assert customer.request("GET", f"/v1/messages/{answered['order-0']}")[0] == 200
        assert customer.request("POST", "/v1/messages", message)[0] == 202

        # space returns (the daily sweep drops records older than 24 h): idempotent submits work again
        assert engine.http.ctx.idempotency.sweep(time.time() + 2 * 86400) > 0
        status, _, answer = customer.request("POST", "/v1/messages", message,
                                             headers={"Idempotency-Key": "after-the-sweep"})
        assert status == 202, answer
    finally:
        engine.stop()
