"""Overload is refused at the door: beyond max_pending_requests a request is answered 503 + Retry-After
at once, before its body is read, while the admitted ones are served as usual; and while the HTTP loop lags
more than queue_delay_target_ms with requests in progress (a queue), new requests are refused until it
keeps time again - a lone request is served however late the loop runs."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from engine.http import shedding
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


class _Stall:
    """Holds the engine's HTTP loop 40 ms at a time (a lag over the 25 ms target), as a busy machine
    does: the loop runs late whatever it serves."""

    def __init__(self, engine) -> None:
        self.loop, self.on = engine.http._loop, threading.Event()

    def _stall(self) -> None:
        if self.on.is_set():
            time.sleep(0.04)
            self.loop.call_soon(self._stall)

    def __enter__(self) -> _Stall:
        self.on.set()
        self.loop.call_soon_threadsafe(self._stall)
        return self

    def __exit__(self, *exc) -> None:
        self.on.clear()


@pytest.fixture(scope="module")
def lag_door(tmp_path_factory):
    engine = start_engine(tmp_path_factory.mktemp("lag"), queue_delay_target_ms=25)  # the default
    yield engine
    engine.stop()


def _lagging(door) -> bool:
    return door._late >= shedding.SUSTAINED_PROBES


def test_a_lone_request_is_served_while_the_loop_lags_with_nothing_queued(lag_door):
    """The loop lags (the machine, not the requests: nothing else is in progress): the only request is
    served. Before, it was refused 503 overloaded as soon as three probes in a row were late."""
    account = funded_account(lag_door, "lone@example.com")
    api = Client(lag_door.http.customer_port, account.api_key)
    message = {"to": DE_NUMBER, "from": "ACME", "body": "behind a lagging loop"}
    door = lag_door.http.shedder
    with _Stall(lag_door):
        for _ in range(3):  # each one alone, while the door sees the loop late
            wait_for(lambda: _lagging(door), "the probes to see the lag", 10)
            assert door.pending == 0
            status, _, body = api.request("POST", "/v1/messages", message)
            assert status == 202, body
    assert door.counts["shed_delay"] == 0


def test_with_requests_in_progress_a_lagging_loop_still_sheds_new_ones(lag_door):
    """LAG_SHEDS_FROM requests being served (each waits for the rest of its body), far below
    max_pending_requests (64), and the loop lags beyond its target: a new request is refused 503 with
    Retry-After at once; the ones in progress complete, and the door opens again once the loop keeps
    time."""
    account = funded_account(lag_door, "queued@example.com")
    body = json.dumps({"to": DE_NUMBER, "from": "ACME", "body": "queued"}).encode()
    door = lag_door.http.shedder
    held = []
    for _ in range(shedding.LAG_SHEDS_FROM):
        sock = socket.create_connection(("127.0.0.1", lag_door.http.customer_port), timeout=10)
        sock.sendall(_head(account.api_key, len(body)) + body[:10])
        held.append(sock)
    wait_for(lambda: door.pending == shedding.LAG_SHEDS_FROM, "the held requests in progress", 10)
    api = Client(lag_door.http.customer_port, account.api_key)
    message = json.loads(body)
    with _Stall(lag_door):
        refused = []

        def refused_for_lag() -> bool:
            # The probes' lag behind a stalling loop varies from probe to probe (0-40 ms here), so a
            # request may reach the door between two late probes and be served: try until one is refused.
            wait_for(lambda: _lagging(door), "the probes to see the lag", 10)
            status, headers, answer = api.request("POST", "/v1/messages", message)
            if status == 503:
                refused.append((status, answer["error"]["code"], headers["Retry-After"]))
            return bool(refused)

        wait_for(refused_for_lag, "a new request refused for the lag", 20)
        assert refused == [(503, "overloaded", "1")]
        assert door.counts["shed_delay"] >= 1 and door.counts["shed_pending"] == 0
    for sock in held:
        sock.sendall(body[10:])
    for sock in held:
        assert _answer(sock)[0] == 202
        sock.close()
    wait_for(lambda: api.request("POST", "/v1/messages", message)[0] == 202, "service again", 10)
