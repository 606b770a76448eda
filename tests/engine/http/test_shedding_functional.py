"""Overload is refused at the door: beyond max_pending_requests a request is answered 503 + Retry-After
at once, before its body is read, while the admitted ones are served as usual; and while the HTTP loop lags
more than queue_delay_target_ms, new requests are refused until it keeps time again."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.engine.http.conftest import DE_NUMBER, Client, funded_account, start_engine, wait_for

BOUND = 6


@pytest.fixture(scope="module")
def small_door(tmp_path_factory):
    # (the bound alone: its lag target is the suite's, which a loaded machine does not reach - else the
    # held requests could be refused too; the lag has its own test below)
    engine = start_engine(tmp_path_factory.mktemp("door"), max_pending_requests=BOUND)
    yield engine
    engine.stop()


def _head(key: str, length: int) -> bytes:
    return (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed without an answer"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")][0])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split()[1]), head + b"\r\n\r\n" + rest[:length]


def test_requests_beyond_the_bound_get_503_at_once_and_the_admitted_ones_succeed(small_door):
    account = funded_account(small_door, "door@example.com")
    body = json.dumps({"to": DE_NUMBER, "from": "ACME", "body": "held at the door"}).encode()
    held = []
    for _ in range(BOUND):  # BOUND requests being served: each waits for the rest of its body
        sock = socket.create_connection(("127.0.0.1", small_door.http.customer_port), timeout=10)
        sock.sendall(_head(account.api_key, len(body)) + body[:10])
        held.append(sock)
    door = small_door.http.shedder
    deadline = time.monotonic() + 10
    while door.pending < BOUND and time.monotonic() < deadline:
        time.sleep(0.01)  # the server has not read the heads yet
    assert door.pending == BOUND
    refused = []
    for _ in range(5):  # announced bodies that are never sent: the answer cannot wait for them
        sock = socket.create_connection(("127.0.0.1", small_door.http.customer_port), timeout=10)
        started = time.monotonic()
        sock.sendall(_head(account.api_key, 60_000))
        status, raw = _answer(sock)
        refused.append((status, time.monotonic() - started, raw))
        sock.close()
    for status, seconds, raw in refused:
        assert status == 503 and seconds < 1.0
        assert b"Retry-After: 1" in raw and b'"code":"overloaded"' in raw.replace(b" ", b"")
    for sock in held:  # the admitted requests complete normally
        sock.sendall(body[10:])
    for sock in held:
        status, _ = _answer(sock)
        assert status == 202
        sock.close()
    assert door.pending == 0
    api = Client(small_door.http.customer_port, account.api_key)
    assert api.request("POST", "/v1/messages", json.loads(body))[0] == 202  # the door opens again
    assert door.counts["shed_pending"] >= 5


def test_while_the_loop_lags_beyond_its_target_new_requests_get_503_until_it_keeps_time_again(tmp_path):
    engine = start_engine(tmp_path, queue_delay_target_ms=25)  # the default target, set here on purpose
    stalling = threading.Event()
    loop = engine.http._loop

    def stall() -> None:  # the loop blocked 40 ms at a time, as by work that holds it up
        if stalling.is_set():
            time.sleep(0.04)
            loop.call_soon(stall)

    try:
        account = funded_account(engine, "lag@example.com")
        api = Client(engine.http.customer_port, account.api_key)
        message = {"to": DE_NUMBER, "from": "ACME", "body": "behind a lagging loop"}
        assert api.request("POST", "/v1/messages", message)[0] == 202  # keeping time: served
        stalling.set()
        loop.call_soon_threadsafe(stall)
        # (once three probes in a row were late: the next request, whatever it is, is refused)
        status, headers, body = wait_for(lambda: (a := api.request("POST", "/v1/messages", message))[0] != 202
                                         and a, "a refusal while the loop lags", 10)
        assert (status, body["error"]["code"], headers["Retry-After"]) == (503, "overloaded", "1")
        assert engine.http.shedder.counts["shed_delay"] >= 1
        stalling.clear()
        # the door opens at the first probe on time again (on a loaded machine: eventually)
        wait_for(lambda: api.request("POST", "/v1/messages", message)[0] == 202, "service again", 10)
    finally:
        stalling.clear()
        engine.stop()
