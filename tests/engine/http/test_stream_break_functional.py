"""A streamed answer (the usage export) that fails after its first chunk went out is cut off: the client
sees the connection closed without the terminating chunk, never a second status line inside the body.

Before, the customer middleware (and the control port's error middleware) turned the failure into an
error answer that aiohttp then wrote into the chunked body: ``...0\\r\\n`` missing, ``HTTP/1.1 503``
after the rows. Read here byte for byte from a raw socket, as a client's HTTP parser would see them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from engine.errors import StorageError
from engine.http import usage_export
from tests.engine.http.conftest import funded_account, wait_for


def _raw_get(port: int, path: str, headers: dict[str, str], deadline_s: float = 10.0
             ) -> tuple[bytes, bool]:
    """The bytes the server sends for one ``GET`` - until it closes the connection (EOF or reset:
    ``True``), or the chunked body's terminating chunk arrived, or ``deadline_s`` passed (``False``).
    The request asks for keep-alive: only the server's own doing closes it."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n{head}\r\n"
    data = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as sock:
        sock.sendall(request.encode())
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                return bytes(data), True
            except TimeoutError:
                return bytes(data), False
            if not part:
                return bytes(data), True
            data += part
            if data.endswith(b"\r\n0\r\n\r\n"):
                return bytes(data), False
    return bytes(data), False


def _chunks(body: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether it ended with the terminating zero-size chunk. A
    chunk-size line that is not hex (a status line inside the body) fails the test."""
    chunks, rest = [], body
    while rest:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break  # cut inside a chunk-size line
        size = int(line.split(b";")[0], 16)  # ValueError: not a chunk-size line
        if size == 0:
            return chunks, rest == b"\r\n"
        chunks.append(rest[:size])
        rest = rest[size + 2:]
    return chunks, False


def _failing_after_first(encode, exc: Exception):
    def encode_then_fail(*args, **kwargs) -> Iterator[bytes]:
        chunks = encode(*args, **kwargs)
        yield next(chunks)
        raise exc

    return encode_then_fail


@pytest.fixture
def failing_exports(monkeypatch, request):
    exc = request.param
    monkeypatch.setattr(usage_export, "encode_csv", _failing_after_first(usage_export.encode_csv, exc))
    monkeypatch.setattr(usage_export, "encode_json",
                        _failing_after_first(usage_export.encode_json, exc))
    return exc


@pytest.mark.parametrize("failing_exports", [StorageError("the ledger store failed"),
                                             RuntimeError("a bug")],
                         ids=["store_error", "unexpected"], indirect=True)
@pytest.mark.parametrize("port_name,fmt", [("customer", "csv"), ("customer", "json"),
                                           ("control", "csv")])
def test_an_export_failing_after_its_first_chunk_is_cut_off_not_answered_twice(
        running, failing_exports, port_name, fmt, logs):
    account = funded_account(running, email=f"break-{port_name}-{fmt}@example.com")
    if port_name == "customer":
        port, token, path = running.http.customer_port, account.api_key, "/v1/usage"
    else:
        port = running.http.control_port
        token = running.http.ctx.tokens.create(f"break-{fmt}-{id(failing_exports)}", {"operator"})
        path = f"/v1/accounts/{account.id}/usage"
    data, closed = _raw_get(port, f"{path}?format={fmt}", {"Authorization": f"Bearer {token}"})
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"transfer-encoding: chunked" in head.lower(), head
    assert b"HTTP/1." not in body, body  # no second answer inside the body
    chunks, complete = _chunks(body)
    assert not complete, "an export cut off must not end like a complete one"
    first = b"".join(chunks)
    assert first.startswith(b"type," if fmt == "csv" else b'{"account_id"'), first[:80]
    assert closed, "the server must close the connection, not leave the client waiting"
    cut = [line for line in logs.lines if line.startswith("answer broke off")]
    assert len(cut) == 1 and type(failing_exports).__name__ in cut[0], logs.lines
    assert "'status': 200" in cut[0] and "'cut': True" in cut[0], cut[0]


def _sample(running, name: str, labels: dict[str, str]) -> float:
    return running.http.ctx.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize("failing_exports", [StorageError("the ledger store failed")],
                         ids=["store_error"], indirect=True)
@pytest.mark.parametrize("port_name", ["customer", "control"])
def test_a_cut_export_is_recorded_as_the_200_the_client_saw_and_counted_as_cut(
        running, failing_exports, port_name):
    """The client got ``200`` and then a closed connection: the request log, the request metric and
    the control port's audit say 200 (before: the error's 503), and the cut is counted."""
    account = funded_account(running, email=f"record-{port_name}@example.com")
    since = time.time()
    if port_name == "customer":
        port, token, path = running.http.customer_port, account.api_key, "/v1/usage"
        endpoint = "GET /v1/usage"
    else:
        port = running.http.control_port
        token = running.http.ctx.tokens.create("record-cut", {"operator"})
        path, endpoint = f"/v1/accounts/{account.id}/usage", "GET /v1/accounts/{id}/usage"
    labels = {"app": port_name, "endpoint": endpoint}
    cut_before = _sample(running, "smsroute_http_answers_cut_total", labels)
    seen = {code: _sample(running, "smsroute_http_request_duration_seconds_count",
                          {**labels, "code": code}) for code in ("200", "503")}
    data, closed = _raw_get(port, f"{path}?format=csv", {"Authorization": f"Bearer {token}"})
    assert data.startswith(b"HTTP/1.1 200 ") and closed
    wait_for(lambda: _sample(running, "smsroute_http_request_duration_seconds_count",
                             {**labels, "code": "200"}) == seen["200"] + 1,
             what="the request metric of the cut export")
    assert _sample(running, "smsroute_http_request_duration_seconds_count",
                   {**labels, "code": "503"}) == seen["503"]
    assert _sample(running, "smsroute_http_answers_cut_total", labels) == cut_before + 1
    if port_name == "customer":
        log = running.http.ctx.requestlog
        logged = wait_for(lambda: [e for e in log.entries(since) if e.endpoint == endpoint],
                          what="the request log entry")
        assert [e.status for e in logged] == [200]
    else:
        audited = wait_for(lambda: [e for e in running.http.ctx.audit.entries(since)
                                    if e.action == endpoint], what="the audit entry")
        assert [(e.result, e.detail.get("cut")) for e in audited] == [("200", True)]


def test_an_export_that_does_not_fail_still_ends_with_its_terminating_chunk(running):
    """The same raw reading of an export that succeeds: complete, the connection not closed."""
    account = funded_account(running, email="whole@example.com")
    data, closed = _raw_get(running.http.customer_port, "/v1/usage?format=csv",
                            {"Authorization": f"Bearer {account.api_key}"})
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    chunks, complete = _chunks(body)
    assert complete and b"".join(chunks).startswith(b"type,")
    assert not closed


def _logged(running, since: float, endpoint: str = "GET /v1/usage"):
    log = running.http.ctx.requestlog
    return wait_for(lambda: [e for e in log.entries(since) if e.endpoint == endpoint],
                    what="the request log entry")


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_is_logged_with_the_body_bytes_it_sent(running, fmt):
    """A chunked answer has no Content-Length: the request log records the body bytes written (before:
    0 for every export)."""
    account = funded_account(running, email=f"size-{fmt}@example.com")
    since = time.time()
    data, _ = _raw_get(running.http.customer_port, f"/v1/usage?format={fmt}",
                       {"Authorization": f"Bearer {account.api_key}"})
    chunks, complete = _chunks(data.partition(b"\r\n\r\n")[2])
    assert complete
    body = b"".join(chunks)
    assert [(e.status, e.response_bytes) for e in _logged(running, since)] == [(200, len(body))]


@pytest.mark.parametrize("failing_exports", [StorageError("the ledger store failed")],
                         ids=["store_error"], indirect=True)
def test_a_cut_export_is_logged_with_the_body_bytes_sent_before_the_cut(running, failing_exports):
    account = funded_account(running, email="size-cut@example.com")
    since = time.time()
    data, closed = _raw_get(running.http.customer_port, "/v1/usage?format=csv",
                            {"Authorization": f"Bearer {account.api_key}"})
    chunks, complete = _chunks(data.partition(b"\r\n\r\n")[2])
    assert closed and not complete
    sent = sum(map(len, chunks))
    assert sent > 0
    assert [(e.status, e.response_bytes) for e in _logged(running, since)] == [(200, sent)]
