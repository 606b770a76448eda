"""The customer API over real loopback sockets against a running engine."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time

import pytest

from engine.http.idempotency import request_hash
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, start_engine, wait_for

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "Your code is 123456"}


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running)


@pytest.fixture
def api(running, account):
    return Client(running.http.customer_port, account.api_key)


def _error(resp, status, code=None):
    got_status, headers, body = resp
    assert got_status == status, body
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_a_submitted_message_is_accepted_with_its_id_price_and_segments(api):
    status, headers, body = api.request("POST", "/v1/messages", MSG)
    assert status == 202
    assert body["id"].startswith("msg_") and body["status"] == "accepted"
    assert body["segments"] == 1 and body["price_micro_usd"] > 0


def test_a_message_status_is_visible_to_its_owner_only_and_never_has_the_body(running, api):
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    status, _, record = api.request("GET", f"/v1/messages/{accepted['id']}")
    assert status == 200 and record["id"] == accepted["id"]
    assert "body" not in record and MSG["body"] not in json.dumps(record)
    other = funded_account(running, "other@example.com", usd="1.00")
    _error(api.request("GET", f"/v1/messages/{accepted['id']}", token=other.api_key), 404,
           "not_found")
    _error(api.request("GET", "/v1/messages/msg_00000000000000000000000000000000"), 404)


def test_a_delivered_message_has_no_error_with_the_default_simulated_carriers_as_over_smpp(api):
    """``error`` says why a message did not go through (README); the simulated carriers of the
    embedded default used to pass their receipt's ``err:000`` on, so a first run showed
    ``"error": "000"`` on every delivered message, where an SMPP carrier's shows ``""``."""
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    wait_for(lambda: api.message_status(accepted["id"]) not in (None, "accepted"),
             "the message's final status")
    _, _, record = api.request("GET", f"/v1/messages/{accepted['id']}")
    assert (record["status"], record["error"]) == ("delivered", "")


def test_balance_is_debited_by_the_price_of_each_accepted_message(api):
    _, _, before = api.request("GET", "/v1/balance")
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    _, _, after = api.request("GET", "/v1/balance")

    def debited():
        return api.request("GET", "/v1/balance")[2]["balance_micro_usd"] == (
            before["balance_micro_usd"] - accepted["price_micro_usd"])

    assert after["currency"] == "USD"
    wait_for(debited, what="the debit")


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing(running):
    acc = funded_account(running, "idem@example.com")
    api = Client(running.http.customer_port, acc.api_key)
    accepted_ids: list[str] = []
    running.on_status(lambda item: item.account_id == acc.id and item.status == "accepted"
                      and accepted_ids.append(item.message_id))
    key = {"Idempotency-Key": "order-4711"}
    s1, _, first = api.request("POST", "/v1/messages", MSG, headers=key)
    s2, h2, second = api.request("POST", "/v1/messages", MSG, headers=key)
    assert s1 == s2 == 202 and first == second
    assert h2.get("Idempotent-Replayed") == "true"
    err = _error(api.request("POST", "/v1/messages", {**MSG, "body": "other"}, headers=key), 422)
    assert err["code"] == "idempotency_key_reused"
    _, _, sentinel = api.request("POST", "/v1/messages", MSG)  # same session, so ordered after
    wait_for(lambda: sentinel["id"] in accepted_ids, what="the sentinel's accepted status")
    assert accepted_ids == [first["id"], sentinel["id"]]  # the retry sent nothing


def test_a_replay_needs_a_byte_identical_body_and_keys_are_per_account(running, api):
    """The README's rule, exactly: the same JSON with other whitespace or key order is not a retry."""
    key = {"Idempotency-Key": "byte-identical"}
    compact = json.dumps(MSG, separators=(",", ":")).encode()
    assert api.request("POST", "/v1/messages", raw=compact, headers=key)[0] == 202
    spaced = json.dumps(MSG, indent=2).encode()
    reordered = json.dumps(dict(reversed(list(MSG.items()))), separators=(",", ":")).encode()
    for other_bytes in (spaced, reordered):
        assert json.loads(other_bytes) == json.loads(compact)
        _error(api.request("POST", "/v1/messages", raw=other_bytes, headers=key), 422,
               "idempotency_key_reused")
    status, headers, _ = api.request("POST", "/v1/messages", raw=compact, headers=key)
    assert status == 202 and headers.get("Idempotent-Replayed") == "true"
    other = funded_account(running, "other-idem@example.com")
    status, headers, _ = Client(running.http.customer_port, other.api_key).request(
        "POST", "/v1/messages", raw=spaced, headers=key)
    assert status == 202 and "Idempotent-Replayed" not in headers  # another account's key space


def test_a_refused_request_can_be_retried_with_the_same_idempotency_key(api):
    key = {"Idempotency-Key": "retry-after-fix"}
    _error(api.request("POST", "/v1/messages", {**MSG, "to": "+1"}, headers=key), 422)
    _error(api.request("POST", "/v1/messages", {**MSG, "to": "+1"}, headers=key), 422)
    fixed = {**MSG, "body": "fixed"}
    s1, _, ok = api.request("POST", "/v1/messages", fixed, headers=key)
    s2, _, again = api.request("POST", "/v1/messages", fixed, headers=key)
    assert s1 == s2 == 202 and ok == again


def test_idempotency_records_keep_no_reversible_hash_of_the_request(running, api, account):
    raw = json.dumps({**MSG, "body": "code 482913"}).encode()
    assert api.request("POST", "/v1/messages", raw=raw, headers={"Idempotency-Key": "hashcheck"})[0] \
        == 202

    data = b"".join(p.read_bytes() for p in (running.data_dir / "http").glob("*.mdb"))
    assert hashlib.sha256(raw).digest() not in data  # a guessable plain hash would reveal the body
    assert request_hash(raw, running.http.ctx.idempotency_secret) in data


def test_a_key_still_being_processed_answers_409(running, api, account):
    ctx = running.http.ctx
    raw = json.dumps(MSG).encode()
    # as a first request would
    ctx.idempotency.begin(account.id, "in-flight-key", request_hash(raw, ctx.idempotency_secret))
    try:
        _error(api.request("POST", "/v1/messages", raw=raw,
                           headers={"Idempotency-Key": "in-flight-key"}), 409,
               "idempotency_conflict")
    finally:
        ctx.idempotency.end(account.id, "in-flight-key")


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"to": "+1"}, 422, "invalid_number"),
    ({"from": "NOTMINE"}, 403, "unknown_sender"),
    ({"body": ""}, 422, None),
    ({"to": 4915112345678}, 400, "invalid_type"),
    ({"surprise": 1}, 400, "unknown_field"),
    ({"validity_seconds": 0}, 422, "invalid_validity"),
    ({"callback_url": "ftp://x"}, 422, "invalid_url"),
])
def test_invalid_submissions_are_refused_with_the_right_status(api, change, status, code):
    _error(api.request("POST", "/v1/messages", {**MSG, **change}), status, code)


def test_missing_or_unknown_keys_are_401(api):
    _error(api.request("POST", "/v1/messages", MSG, token=""), 401, "unauthorized")
    _error(api.request("GET", "/v1/balance", token="sk_live_nope"), 401, "unauthorized")


def test_an_account_without_funds_gets_402(running, api):
    poor = funded_account(running, "poor@example.com", usd="")
    _error(api.request("POST", "/v1/messages", MSG, token=poor.api_key), 402,
           "insufficient_balance")


def test_a_restricted_account_gets_403(running, api):
    held = funded_account(running, "held@example.com", usd="1.00")
    running.restrict_account(held.id, True)
    _error(api.request("POST", "/v1/messages", MSG, token=held.api_key), 403)


def test_malformed_json_wrong_content_type_and_unknown_routes(api):
    _error(api.request("POST", "/v1/messages", raw=b"{nope"), 400, "invalid_json")
    _error(api.request("POST", "/v1/messages", raw=b"\xff\xfe", headers={}), 400, "invalid_json")
    _error(api.request("POST", "/v1/messages", raw=json.dumps(MSG).encode(),
                       content_type="text/plain"), 415, "unsupported_media_type")
    _error(api.request("GET", "/v1/nothing-here"), 404, "not_found")
    _error(api.request("DELETE", "/v1/balance"), 405, "method_not_allowed")


def test_a_body_over_the_limit_is_refused_413(running, api):
    limit = running.settings.http.max_body_bytes
    big = json.dumps({**MSG, "body": "x" * (limit + 10)}).encode()
    _error(api.request("POST", "/v1/messages", raw=big), 413, "body_too_large")


def test_every_answer_carries_rate_limit_headers(api):
    for resp in (api.request("GET", "/v1/balance"), api.request("GET", "/v1/balance", token=""),
                 api.request("GET", "/v1/nothing")):
        assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(resp[1])


def test_senders_can_be_registered_for_the_callers_own_account(api):
    status, _, body = api.request("POST", "/v1/senders", {"sender": "NEWCO"})
    assert status == 201 and body == {"sender": "NEWCO"}
    assert api.request("POST", "/v1/messages", {**MSG, "from": "NEWCO"})[0] == 202
    _error(api.request("POST", "/v1/senders", {"sender": "!!"}), 400)


def test_the_request_log_holds_route_templates_and_never_keys_or_bodies(running, api, account):
    since = time.time()
    _, _, accepted = api.request("POST", "/v1/messages", MSG)
    api.request("GET", f"/v1/messages/{accepted['id']}")
    log = running.http.ctx.requestlog

    def logged():
        return [e for e in log.entries(since) if e.endpoint == "GET /v1/messages/{id}"]

    entry = wait_for(logged, what="the request log entry")[-1]
    assert entry.source_ip == "127.0.0.1" and entry.status == 200 and entry.response_bytes > 0
    everything = repr(list(log.entries()))
    assert account.api_key not in everything and MSG["body"] not in everything
    assert accepted["id"] not in everything


def test_the_openapi_document_is_served_without_a_key(api):
    status, _, doc = api.request("GET", "/v1/openapi.json", token="")
    assert status == 200 and doc["openapi"].startswith("3.") and "/v1/messages" in doc["paths"]


def test_too_many_requests_get_429_with_retry_after(tmp_path):
    engine = start_engine(tmp_path, rate_limit_per_second=0.01, rate_limit_burst=2)
    try:
        acc = funded_account(engine)
        api = Client(engine.http.customer_port, acc.api_key)
        answers = [api.request("GET", "/v1/balance") for _ in range(3)]
        assert [a[0] for a in answers] == [200, 200, 429]
        _error(answers[2], 429, "rate_limited")
        assert int(answers[2][1]["Retry-After"]) >= 1
        assert answers[2][1]["RateLimit-Remaining"] == "0"
        other_key = engine.add_api_key(acc.id)  # limits are per key
        assert api.request("GET", "/v1/balance", token=other_key)[0] == 200
    finally:
        engine.stop()


def test_an_engine_at_its_in_flight_limit_answers_503_with_retry_after(tmp_path):
    engine = start_engine(tmp_path)
    try:
        acc = funded_account(engine)
        api = Client(engine.http.customer_port, acc.api_key)
        for carrier in engine.carriers():  # nothing can finish: the gate stays full
            engine.suspend_carrier(carrier["carrier"], True)
        limit = engine.gate.limit
        assert engine.gate.try_acquire(limit - engine.gate.in_flight)
        err = api.request("POST", "/v1/messages", MSG)
        _error(err, 503, "overloaded")
        assert err[1]["Retry-After"] == "1"
    finally:
        engine.gate.release(engine.gate.limit)
        engine.stop(drain_seconds=0)


def test_a_chunked_body_over_the_limit_is_refused_before_it_is_read_whole(running, api):
    limit = running.settings.http.max_body_bytes
    conn = http.client.HTTPConnection("127.0.0.1", running.http.customer_port, timeout=30)
    chunks = (b"x" * 8192 for _ in range(limit // 8192 + 4))
    try:
        conn.request("POST", "/v1/messages", body=chunks, encode_chunked=True,
                     headers={"Authorization": f"Bearer {api.token}",
                              "Content-Type": "application/json"})
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 413 and body["error"]["code"] == "body_too_large"


def test_a_slow_status_lookup_does_not_stall_other_requests(running, api, monkeypatch):
    """In a cluster ``Engine.status`` asks workers over NATS (up to 30 s when one is down): the
    handler must wait for it off the HTTP loop, or every request on the port waits with it."""
    message_id = api.request("POST", "/v1/messages", MSG)[2]["id"]
    entered, release = threading.Event(), threading.Event()
    real_status = running.status

    def slow_status(mid, **kw):
        entered.set()
        release.wait(10)
        return real_status(mid, **kw)

    monkeypatch.setattr(running, "status", slow_status)
    answers: list = []
    reader = threading.Thread(target=lambda: answers.append(
        api.request("GET", f"/v1/messages/{message_id}")))
    reader.start()
    try:
        assert entered.wait(5), "the status lookup never started"
        conn = http.client.HTTPConnection("127.0.0.1", running.http.customer_port, timeout=3)
        try:
            conn.request("GET", "/v1/balance", headers={"Authorization": f"Bearer {api.token}"})
            assert conn.getresponse().status == 200  # (a timeout here: the loop was blocked)
        finally:
            conn.close()
    finally:
        release.set()
        reader.join(10)
    assert answers and answers[0][0] == 200 and answers[0][2]["id"] == message_id


def _twice_authorized(port: int, method: str, path: str, first: str, second: str):
    """A request with two Authorization headers (http.client's putheader sends both, in order)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        conn.putheader("Authorization", f"Bearer {first}")
        conn.putheader("Authorization", f"Bearer {second}")
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_two_authorization_headers_are_refused_with_400_on_both_ports(running, account):
    """Which of two credentials was meant is ambiguous; the first silently won (on the control port
    too), so a proxy that appends its own header could act with the client's. Both ports refuse it."""
    operator = running.http.ctx.tokens.create("test-twice", {"viewer"})
    for port, path, good in ((running.http.customer_port, "/v1/balance", account.api_key),
                             (running.http.control_port, "/v1/stats", operator)):
        for first, second in ((good, "nope"), ("nope", good), (good, good)):
            status, body = _twice_authorized(port, "GET", path, first, second)
            assert status == 400 and body["error"]["code"] == "ambiguous_authorization", body
            assert good not in body["error"]["message"] and "nope" not in body["error"]["message"]
        assert Client(port, good).request("GET", path)[0] == 200  # one header: as before
