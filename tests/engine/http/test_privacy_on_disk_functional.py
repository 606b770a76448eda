"""With the HTTP servers on, nothing a customer sent is readable in any file of the data directory."""

from __future__ import annotations

import hashlib
import json

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, wait_for


def test_no_body_number_email_or_key_is_readable_on_disk_after_http_traffic(running):
    account = funded_account(running, email="ondisk-holder@example.com")
    api = Client(running.http.customer_port, account.api_key)
    bodies = [f"Your one-time code is ONDISK{i:04d}" for i in range(40)]
    raws = []
    for i, body in enumerate(bodies):
        raw = json.dumps({"to": DE_NUMBER, "from": "ACME", "body": body}).encode()
        raws.append(raw)
        status, _, sent = api.request("POST", "/v1/messages", raw=raw,
                                      headers={"Idempotency-Key": f"ondisk-{i}"})
        assert status == 202
    wait_for(lambda: running.status(sent["id"]).status == "delivered", what="delivery")
    running.sweep_now()
    needles = [b"ONDISK", b"ondisk-holder@example.com", DE_NUMBER.lstrip("+").encode(),
               account.api_key.encode(), *(hashlib.sha256(r).digest() for r in raws)]
    hits = []
    for path in running.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits.extend((str(path), n[:12]) for n in needles if n in data)
    assert hits == []


def test_a_client_ref_kept_for_idempotent_replays_is_sealed_under_the_accounts_key(running):
    """Policy 9 (metadata encrypted at rest) and 7.1 (erasure): the answer kept for an Idempotency-Key
    replay echoes the client's reference, so it is stored sealed like the message record it describes,
    under the account's data key, which erasure destroys."""
    account = funded_account(running, email="ref-holder@example.com")
    api = Client(running.http.customer_port, account.api_key)
    single = {"to": DE_NUMBER, "from": "ACME", "body": "hi", "client_ref": "REFMARKER-jane.roe"}
    batch = {"messages": [{**single, "client_ref": "REFMARKER-batch"}]}
    answers = {}
    for path, body, key in (("/v1/messages", single, "ref-1"), ("/v1/messages/batch", batch, "ref-2")):
        status, _, first = api.request("POST", path, body, headers={"Idempotency-Key": key})
        assert status in (200, 202)
        answers[path] = first
    for path, body, key in (("/v1/messages", single, "ref-1"), ("/v1/messages/batch", batch, "ref-2")):
        _, headers, again = api.request("POST", path, body, headers={"Idempotency-Key": key})
        assert headers.get("Idempotent-Replayed") == "true" and again == answers[path]

    stored = b"".join(p.read_bytes() for p in (running.data_dir / "http").glob("*.mdb"))
    assert b"REFMARKER" not in stored
