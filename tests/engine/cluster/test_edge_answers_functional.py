"""The customer API through HTTP edges answers what one process answers (``smsroute run --workers 1
--edges 2``, real sockets): the one-process engine's behaviour, documented in the README and the OpenAPI
document, is the reference.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator

import pytest

from engine.cluster.transport import MAX_PAYLOAD
from engine.submission import MAX_FRAME
from tests.engine.cluster.test_edges_functional import _start
from tests.engine.cluster.test_run_workers_functional import _kill_left
from tests.engine.http.conftest import Client

pytestmark = pytest.mark.functional

BATCH = 1000  # the most one batch may hold
BODY = "x" * 1400  # 10 segments: the batch's hand-off is ~1.4 MB, over a NATS message's 1 MiB


@pytest.fixture(scope="module")
def edges(tmp_path_factory) -> Iterator[tuple[Client, Client]]:
    run, api, ops, children = _start(tmp_path_factory.mktemp("edges"))
    try:
        with run:
            status, _, acct = ops.request("POST", "/v1/accounts", {"email": "big@example.com"})
            assert status == 201, acct
            ops.request("POST", f"/v1/accounts/{acct['id']}/deposits",
                        {"usd": "2000.00", "chain": "tron", "tx_hash": "0xbig", "from_address": "TX"})
            ops.request("POST", f"/v1/accounts/{acct['id']}/senders", {"sender": "ACME"})
            api.token = acct["api_key"]
            yield api, ops
            assert run.stop(60) == 0
    finally:
        _kill_left(children)


def test_a_hand_off_frame_fits_a_nats_message():
    assert MAX_FRAME <= MAX_PAYLOAD // 2


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": "big-batch"}],
                         ids=["served-by-the-edge", "forwarded-to-the-core"])
def test_a_full_batch_of_long_messages_is_accepted_whole(edges, headers):
    """A batch the API allows (1,000 messages of 10 segments, under the 2 MiB body limit) is one
    hand-off of ~1.4 MB to the account's worker: before, that NATS message was refused (over 1 MiB),
    and after 15-30 s every message was answered ``cluster_unavailable`` "may or may not have been
    accepted" - with an Idempotency-Key, every retry then answered 409 - although none was."""
    api, _ = edges
    batch = {"messages": [{"to": "+4915112345678", "from": "ACME", "body": BODY}] * BATCH}
    started = time.monotonic()
    status, _, answer = api.request("POST", "/v1/messages/batch", batch, headers=headers)
    assert status == 200, answer
    assert (answer["accepted"], answer["refused"]) == (BATCH, 0), answer["results"][0]
    assert time.monotonic() - started < 10  # answered by the worker, not by a time-out
    ids = [r["id"] for r in answer["results"]]
    assert len(set(ids)) == BATCH
    status, _, one = api.request("GET", f"/v1/messages/{ids[-1]}")
    assert status == 200 and one["segments"] == 10


@pytest.mark.parametrize("method,path,headers,limit", [
    ("POST", "/v1/messages", {"Idempotency-Key": "too-big"}, 65536),
    ("PUT", "/v1/webhook", {}, 65536),
    ("POST", "/v1/messages/batch", {"Idempotency-Key": "too-big"}, 2097152),
])
def test_a_forwarded_body_over_every_limit_is_refused_in_the_error_shape(edges, method, path, headers,
                                                                          limit):
    """A body over the batch limit on a route the edge forwards to the core was answered by aiohttp
    itself: 413 in plain text (``Maximum request body size 2097152 exceeded.``) and a ``Server`` header
    naming Python's and aiohttp's versions; one process answers the JSON error shape."""
    api, _ = edges
    status, got, answer = api.request(method, path, raw=b'{"url":"' + b"1" * 3_000_000 + b'"}',
                                      headers=headers)
    assert status == 413
    assert answer == {"error": {"code": "body_too_large",
                                "message": f"request body over {limit} bytes"}}
    assert got["Server"] == "smsroute"
    assert got["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_a_usage_export_through_an_edge_is_the_cores_streamed_on(edges, fmt):
    """The export the core streams (chunked) comes through the edge as it comes, whole, with the core's
    headers (``engine.cluster.edge_forward``)."""
    api, _ = edges
    status, got, body = api.request("GET", f"/v1/usage?format={fmt}")
    assert status == 200, body
    assert got["Content-Type"].startswith("text/csv" if fmt == "csv" else "application/json")
    assert got.get("Transfer-Encoding") == "chunked"  # streamed on, not gathered first
    assert got["Content-Disposition"].endswith(f'.{fmt}"')
    if fmt == "csv":
        assert body.startswith(b"type,id,time")
    else:
        assert body["rows"] and body["rows"][0]["type"] == "deposit"


MESSAGE = json.dumps({"to": "+4915112345678", "from": "ACME", "body": "compressed"}).encode()


@pytest.mark.parametrize("method,path,headers,body,expected", [
    ("POST", "/v1/messages", {}, MESSAGE, 202),
    ("POST", "/v1/messages", {"Idempotency-Key": "gzip-once"}, MESSAGE, 202),
    ("PUT", "/v1/webhook", {}, b'{"url": "https://hooks.example.com/sms"}', 200),
], ids=["served-by-the-edge", "forwarded-submit", "forwarded-setting"])
def test_a_compressed_body_is_taken_as_one_process_takes_it(edges, method, path, headers, body,
                                                             expected):
    """The edge decodes a ``Content-Encoding: gzip`` body when it reads it; it forwarded the decoded
    bytes with the client's ``Content-Encoding: gzip`` still on them, so the core failed to decode them
    again: ``500 internal_error`` for every compressed request but the edge's own submits."""
    api, _ = edges
    status, _, answer = api.request(method, path, raw=gzip.compress(body),
                                    headers={"Content-Encoding": "gzip", **headers})
    assert status == expected, answer


@pytest.mark.parametrize("headers", [{}, {"Idempotency-Key": "corrupt-gzip"}],
                         ids=["served-by-the-edge", "forwarded-to-the-core"])
def test_a_body_that_does_not_decode_as_its_encoding_is_400_in_the_error_shape(edges, headers):
    api, _ = edges
    status, got, answer = api.request("POST", "/v1/messages", raw=MESSAGE,
                                      headers={"Content-Encoding": "gzip", **headers})
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid_content_encoding", answer
    assert got["Server"] == "smsroute"
