"""No plaintext residue: every kind of traffic and every privacy action, run with marker strings, leaves no
marker in any file of the data directory, in any log line, or in any HTTP answer except where the policy
puts it (:data:`ALLOWED`: the holder's own data shown to the holder or to the staff role that serves them).
The SMTP server is down throughout, so the mail to the marker addresses is still queued at the erasure,
which must remove it (``tests/engine/mail/test_erasure_mail_functional.py`` shows no copy opens either).
"""

from __future__ import annotations

import json
import time

from engine import Engine
from tests.engine.http.conftest import Client, Receiver, overrides, wait_for
from tests.mailbox import Mailbox

EMAIL, EMAIL2 = "marker.holder.q7@example.com", "marker.rectified.q7@example.com"
NUMBER = "+4915112398765"
SENDER = "MRKSNDQ7"
BODY = "BODYMARKERq7 your code is 314159"
TX_HASH, WALLET = "0xTXMARKERq7feedbeef", "TWALLETMARKERq7"
HOLD_REASON, HOLD_REFERENCE = "HOLDREASONq7 complaint about Jane Roe", "HOLDREFq7-2026-11"
DEBUG_REASON, ORDER_REASON, RELEASE_REASON = "DEBUGREASONq7", "ORDERREASONq7", "RELEASEREASONq7"
IDEM_KEY = "order-IDEMMARKERq7"
ADJ_REASON, ADJ_KEY = "ADJREASONq7 goodwill credit", "ticket-ADJKEYq7"

MARKERS = {
    "email": [EMAIL, EMAIL2], "number": [NUMBER.lstrip("+")], "body": ["BODYMARKERq7"],
    "sender": [SENDER], "tx_hash": ["TXMARKERq7"], "wallet": [WALLET],
    "hold_reason": ["HOLDREASONq7", "Jane Roe", "HOLDREFq7", DEBUG_REASON, ORDER_REASON,
                    RELEASE_REASON],
    "webhook_url": ["WEBHOOKMARKERq7", "CALLBACKMARKERq7"], "idempotency_key": ["IDEMMARKERq7"],
    "adjustment": ["ADJREASONq7", "ADJKEYq7"],
}

# Which markers an HTTP answer may carry, and why. Everything else: none.
ALLOWED: dict[str, set[str]] = {
    # the customer's own message metadata, read with the customer's own key (policy 2.2, 7.1 access)
    "GET /v1/messages/{id}": {"number", "sender", "webhook_url"},
    # the customer's own settings, echoed to the customer who set them
    "PUT /v1/webhook": {"webhook_url"},
    "POST /v1/senders": {"sender"},
    # account administration: the operator or privacy officer who serves the holder sees the record
    "GET /v1/accounts/{id}": {"email", "sender", "webhook_url"},
    "POST /v1/accounts/{id}/senders": {"sender"},
    # access and portability (policy 7.1): everything held about the holder, to the privacy role
    "GET /v1/accounts/{id}/export": {"email", "number", "sender", "tx_hash", "wallet",
                                      "webhook_url", "adjustment"},
    # usage exports (policy 3, billing): the holder's own deposits and adjustments, to the holder and
    # to the operator who bills them — never a number or a body
    "GET /v1/usage": {"tx_hash", "wallet", "adjustment"},
    "GET /v1/accounts/{id}/usage": {"tx_hash", "wallet", "adjustment"},
    # a retention exception's own path: the privacy staff who place, list and end holds see why
    "POST /v1/holds": {"hold_reason"},
    "GET /v1/holds": {"hold_reason"},
    "POST /v1/holds/{id}/release": {"hold_reason"},
    "GET /v1/audit": {"hold_reason"},  # the audit trail, privacy role only
}


class Recording(Client):
    """A client that keeps every answer (status, headers, body) under its route template."""

    answers: list[tuple[str, bytes]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)

    def call(self, route: str, method: str, path: str, body=None, **kw):
        status, headers, payload = self.request(method, path, body, **kw)
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        Recording.answers.append((route, json.dumps(headers).encode() + raw))
        return status, payload


def found(blob: bytes, allowed: set[str] = frozenset()) -> list[str]:
    return [kind for kind, needles in MARKERS.items() if kind not in allowed
            for n in needles if n.encode() in blob]


def test_markers_appear_in_no_file_no_log_line_and_only_the_allowed_answers(tmp_path, logs, capfd):
    receiver = Receiver()
    down = Mailbox()
    smtp_port = down.port
    down.close()  # nothing listens there: every mail to the marker addresses stays queued
    engine = Engine.start(tmp_path / "data", http=True, overrides={
        **overrides(), "email": {"host": "127.0.0.1", "port": smtp_port, "tls": "none",
                                 "retry_base_seconds": 0.01, "retry_cap_seconds": 0.05}})
    Recording.answers = []
    try:
        _run_everything(engine, receiver)
        # the erasure reached the outbox: nothing addressed to the erased holder waits to be sent
        assert engine.stats()["mail"]["outbox"] == 0
    finally:
        engine.stop()
        receiver.close()
    files = {str(p): found(p.read_bytes()) for p in engine.data_dir.rglob("*") if p.is_file()}
    assert {p: kinds for p, kinds in files.items() if kinds} == {}
    assert [line[:200] for line in logs.lines if found(line.encode())] == []
    out, err = capfd.readouterr()
    assert found((out + err).encode()) == []
    leaks = [(route, found(blob, ALLOWED.get(route, set()))) for route, blob in Recording.answers]
    assert [leak for leak in leaks if leak[1]] == []
    routes_with_markers = {route for route, blob in Recording.answers if found(blob)}
    assert {"GET /v1/accounts/{id}/export", "GET /v1/messages/{id}", "GET /v1/holds",
            "GET /v1/usage"} <= routes_with_markers  # the scan sees markers where allowed: not blind


def _run_everything(engine, receiver) -> None:
    control = Recording(engine.http.control_port, engine.http.token_path.read_text().strip())
    status, acc = control.call("POST /v1/accounts", "POST", "/v1/accounts", {"email": EMAIL})
    assert status == 201
    account_id = acc["id"]
    api = Recording(engine.http.customer_port, acc["api_key"])
    base = f"/v1/accounts/{account_id}"
    assert control.call("POST /v1/accounts/{id}/deposits", "POST", f"{base}/deposits",
                        {"usd": "20", "chain": "tron", "tx_hash": TX_HASH,
                         "from_address": WALLET})[0] == 201
    assert control.call("POST /v1/accounts/{id}/senders", "POST", f"{base}/senders",
                        {"sender": SENDER})[0] == 201
    assert api.call("PUT /v1/webhook", "PUT", "/v1/webhook",
                    {"url": f"{receiver.url}/hook-WEBHOOKMARKERq7"})[0] == 200
    assert api.call("POST /v1/debug-window", "POST", "/v1/debug-window",
                    {"hours": 1, "reason": DEBUG_REASON})[0] == 201

    ids = []
    for i in range(6):
        status, sent = api.call("POST /v1/messages", "POST", "/v1/messages",
                                {"to": NUMBER, "from": SENDER, "body": f"{BODY} #{i}",
                                 "callback_url": f"{receiver.url}/cb-CALLBACKMARKERq7"},
                                headers={"Idempotency-Key": f"{IDEM_KEY}-{i}"})
        assert status == 202
        ids.append(sent["id"])
    embedded = engine.submit(acc["api_key"], NUMBER, SENDER, f"{BODY} embedded")
    ids.append(embedded.message_id)
    wait_for(lambda: all(engine.status(m).status != "accepted" for m in ids), what="final statuses")
    receiver.next()  # webhooks went out (their payloads go to the customer's own receiver)
    assert api.call("GET /v1/messages/{id}", "GET", f"/v1/messages/{ids[0]}")[0] == 200
    api.call("GET /v1/balance", "GET", "/v1/balance")
    api.call("POST /v1/webhook/secret", "POST", "/v1/webhook/secret")
    assert api.call("DELETE /v1/debug-window", "DELETE", "/v1/debug-window")[0] == 200

    status, placed = control.call("POST /v1/holds", "POST", "/v1/holds", {
        "kind": "legal_hold", "reason": HOLD_REASON, "reference": HOLD_REFERENCE,
        "until": time.time() + 3600, "message_ids": ids[:2]})
    assert status == 201
    asked = {"kind": "lawful_order", "reason": ORDER_REASON, "reference": "ORDER-1",
             "authority": "subpoena", "until": time.time() + 3600, "account_id": account_id}
    key = {"Idempotency-Key": f"{IDEM_KEY}-order"}
    status, order = control.call("POST /v1/holds", "POST", "/v1/holds", asked, headers=key)
    assert status == 201
    assert control.call("POST /v1/holds", "POST", "/v1/holds", asked, headers=key) == (200, order)
    control.call("GET /v1/holds", "GET", "/v1/holds")
    for hold in placed["holds"] + order["holds"]:
        assert control.call("POST /v1/holds/{id}/release", "POST",
                            f"/v1/holds/{hold['hold_id']}/release",
                            {"reason": RELEASE_REASON})[0] == 200

    assert control.call("POST /v1/accounts/{id}/adjustments", "POST", f"{base}/adjustments",
                        {"usd": "1.25", "reason": ADJ_REASON, "idempotency_key": ADJ_KEY})[0] == 201
    assert api.call("PUT /v1/balance/threshold", "PUT", "/v1/balance/threshold",
                    {"usd": "100"})[0] == 200
    assert api.call("GET /v1/usage", "GET", "/v1/usage?format=csv")[0] == 200
    assert control.call("GET /v1/accounts/{id}/usage", "GET", f"{base}/usage")[0] == 200
    control.call("GET /v1/ledger/verify", "GET", "/v1/ledger/verify")
    control.call("GET /v1/ledger/reconciliation", "GET", "/v1/ledger/reconciliation")
    control.call("GET /v1/accounts/{id}", "GET", base)
    assert control.call("GET /v1/accounts/{id}/export", "GET", f"{base}/export")[0] == 200
    control.call("POST /v1/accounts/{id}/rectify", "POST", f"{base}/rectify", {"email": EMAIL2})
    control.call("POST /v1/accounts/{id}/objections", "POST", f"{base}/objections",
                 {"purpose": "analytics"})
    control.call("POST /v1/accounts/{id}/restrict", "POST", f"{base}/restrict", {"restricted": True})
    control.call("POST /v1/accounts/{id}/restrict", "POST", f"{base}/restrict",
                 {"restricted": False})
    control.call("GET /v1/analytics", "GET", "/v1/analytics")
    control.call("GET /v1/retention", "GET", "/v1/retention")
    control.call("GET /v1/audit", "GET", "/v1/audit")
    control.call("GET /v1/stats", "GET", "/v1/stats")
    wait_for(lambda: engine.stats()["mail"]["retried"] >= 1, what="a mail held back by the server")
    assert engine.stats()["mail"]["outbox"] >= 3  # two confirmation links, a security alert: queued
    assert control.call("POST /v1/accounts/{id}/erase", "POST", f"{base}/erase")[0] == 200
    control.call("GET /v1/audit", "GET", "/v1/audit")
    engine.sweep_now()
