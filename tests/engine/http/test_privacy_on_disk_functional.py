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
