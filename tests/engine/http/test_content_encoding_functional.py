"""Compressed request bodies (``Content-Encoding: gzip`` or ``deflate``) through real sockets, both ports.

aiohttp decodes them before the JSON is read, so a compressed submit is an ordinary submit. A body that
does not decode as the encoding it declares is the client's mistake: ``400 invalid_content_encoding`` in
the one error shape, nothing sent or billed, and no traceback in the log. Before, it was ``500
internal_error`` and a logged traceback ("unhandled error in POST /v1/messages"), which tells a client
to retry a request that can never succeed.
"""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account

MESSAGE = json.dumps({"to": DE_NUMBER, "from": "ZIPS", "body": "compressed"}).encode()


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, email="zip@example.com", usd="10.00", sender="ZIPS")


@pytest.mark.parametrize("encoding,body", [("gzip", gzip.compress(MESSAGE)),
                                           ("deflate", zlib.compress(MESSAGE))])
def test_a_compressed_submit_is_accepted(running, account, encoding, body):
    customer = Client(running.http.customer_port, account.api_key)
    status, _, answer = customer.request("POST", "/v1/messages", raw=body,
                                         headers={"Content-Encoding": encoding})
    assert status == 202, answer
    assert running.status(answer["id"]).to == DE_NUMBER


@pytest.mark.parametrize("path,headers", [
    ("/v1/messages", {}),
    ("/v1/messages", {"Idempotency-Key": "corrupt-gzip"}),
    ("/v1/messages/batch", {}),
], ids=["single", "idempotent", "batch"])
def test_a_body_that_does_not_decode_as_its_encoding_is_400_and_sends_nothing(running, account, logs,
                                                                               path, headers):
    customer = Client(running.http.customer_port, account.api_key)
    before = running.balance(account.id)
    status, got, answer = customer.request("POST", path, raw=MESSAGE,  # declared gzip, sent plain
                                           headers={"Content-Encoding": "gzip", **headers})
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_content_encoding", answer
    assert got["Content-Type"].startswith("application/json")
    assert running.balance(account.id) == before
    assert not [line for line in logs.lines if "unhandled error" in line or "Traceback" in line]
    if headers:  # nothing was reserved under the key: the same key with a good body is a new request
        status, _, answer = customer.request("POST", path, raw=gzip.compress(MESSAGE),
                                             headers={"Content-Encoding": "gzip", **headers})
        assert status == 202, answer


def test_the_control_port_answers_a_corrupt_body_the_same_way(running, account):
    token = running.http.ctx.tokens.create("zip-ops", {"operator"})
    control = Client(running.http.control_port, token)
    raw = json.dumps({"usd": "1.00", "chain": "tron", "tx_hash": "0xzip", "from_address": "T"}).encode()
    status, _, answer = control.request("POST", f"/v1/accounts/{account.id}/deposits", raw=raw,
                                        headers={"Content-Encoding": "gzip"})
    assert (status, answer["error"]["code"]) == (400, "invalid_content_encoding"), answer
    status, _, answer = control.request("POST", f"/v1/accounts/{account.id}/deposits",
                                        raw=gzip.compress(raw), headers={"Content-Encoding": "gzip"})
    assert status == 201, answer
