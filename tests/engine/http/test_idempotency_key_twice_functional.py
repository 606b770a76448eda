"""Two ``Idempotency-Key`` headers on one request are ambiguous: refused with 400, nothing sent.

Before, the first header silently won (``request.headers.get``). A client whose HTTP library adds a
stale default key beside the request's fresh one then had its new message answered with the replay of an
older request, ``202`` and ``Idempotent-Replayed: true``, and never sent; in the other order the message
went out under a key its retries would not name. Like two ``Authorization`` headers, both ports refuse it.
"""

from __future__ import annotations

import http.client
import json
import time

from tests.engine.http.conftest import DE_NUMBER, funded_account

MESSAGE = {"to": DE_NUMBER, "from": "ACME", "body": "your code is 4711"}


def _with_keys(port: int, path: str, body: dict, keys: list[str], token: str):
    """POST ``body`` with one ``Idempotency-Key`` header per entry of ``keys`` (in order)."""
    raw = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(raw)))
        for key in keys:
            conn.putheader("Idempotency-Key", key)
        conn.endheaders(raw)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


def test_a_submit_with_two_idempotency_keys_is_refused_and_sends_nothing(running):
    account = funded_account(running, "twokeys@example.com")
    port = running.http.customer_port
    status, _, first = _with_keys(port, "/v1/messages", MESSAGE, ["order-1"], account.api_key)
    assert status == 202, first
    balance = running.balance(account.id)
    for keys in (["order-1", "order-2"], ["order-2", "order-1"]):
        for path, body in (("/v1/messages", MESSAGE), ("/v1/messages/batch", {"messages": [MESSAGE]})):
            status, headers, answer = _with_keys(port, path, body, keys, account.api_key)
            assert status == 400, answer  # (was 202: the replay of order-1, or a send under order-2)
            assert answer["error"]["code"] == "invalid_idempotency_key", answer
            assert "Idempotent-Replayed" not in headers
    assert running.balance(account.id) == balance
    listed, _ = running.messages(account.id)
    assert [m.message_id for m in listed] == [first["id"]]
    # one header, as before: order-2 is a new request, order-1 replays
    assert _with_keys(port, "/v1/messages", MESSAGE, ["order-2"], account.api_key)[0] == 202
    status, headers, again = _with_keys(port, "/v1/messages", MESSAGE, ["order-1"], account.api_key)
    assert (status, again["id"], headers.get("Idempotent-Replayed")) == (202, first["id"], "true")


def test_a_hold_with_two_idempotency_keys_is_refused_on_the_control_port(running):
    account = funded_account(running, "twokeys-hold@example.com")
    accepted = running.submit(account.api_key, DE_NUMBER, "ACME", "hold me")
    token = running.http.ctx.tokens.create("twokeys-privacy", {"privacy"})
    hold = {"kind": "legal_hold", "reason": "complaint", "reference": "case-2",
            "until": time.time() + 3600, "message_ids": [accepted.message_id]}
    status, _, answer = _with_keys(running.http.control_port, "/v1/holds", hold, ["h-1", "h-2"], token)
    assert (status, answer["error"]["code"]) == (400, "invalid_idempotency_key"), answer
    assert not [h for h in running.active_holds() if accepted.message_id in str(h)]
    status, _, answer = _with_keys(running.http.control_port, "/v1/holds", hold, ["h-1"], token)
    assert status == 201, answer
