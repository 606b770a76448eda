"""An HTTP edge forwarding the customer API to the core (``engine.cluster.edge_forward``): a usage export
gets the deadline it needs and is passed on as it comes, and an ordinary request keeps its deadline.

Before, every forwarded request had 60 s in all (an export that takes longer - a large account's
``GET /v1/usage`` - answered 503 through an edge though the core would have streamed it whole), and the
edge read the core's whole answer into memory before sending a byte of it. A real edge (its HTTP
server, routes and door; no NATS: nothing here is served by the edge itself) in front of a stand-in for
the core's customer API on loopback; the ordinary deadline is cut to 1 s so the tests are quick.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

from engine.cluster import edge_forward
from engine.cluster.edge import Edge
from engine.cluster.edge_engine import EdgeEngine
from engine.cluster.placement import Placement
from engine.config import load_settings
from engine.http.requestlog import RequestLog
from engine.http.store import open_http_env
from tests.waiting import wait_for

PART = b"x" * 50_000
WAIT_S = 10.0  # the stand-in waits at most this for the test's go-ahead


class _Core:
    """A stand-in for the core's customer API on a loopback port, on its own loop thread."""

    def __init__(self, routes: dict[str, Callable]) -> None:
        self.routes = routes
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._serve(),),
                                        daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        for path, handler in self.routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> _Core:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def edge_for(tmp_path) -> Iterator[Callable[[_Core], Edge]]:
    """Start an edge forwarding to a stand-in core (its data directory: ``tmp_path``)."""
    started: list[Edge] = []

    def start(core: _Core) -> Edge:
        engine = EdgeEngine(load_settings(None), Placement(node="e0", runs_core=False, runs_pops=False,
                                                           workers=("w0",)), tmp_path)
        edge = Edge(engine, "127.0.0.1", 0, f"http://127.0.0.1:{core.port}", "edge-token").start()
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop()


@pytest.fixture
def edge_to(edge_for) -> Callable[[_Core], int]:
    """Start an edge forwarding to a stand-in core; its port."""
    return lambda core: edge_for(core).bound_port


@pytest.fixture(autouse=True)
def short_ordinary_deadline(monkeypatch):
    monkeypatch.setattr(edge_forward, "FORWARD_TIMEOUT_S", 1.0)


def _get(port: int, path: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S + 5)
    conn.request("GET", path, headers={"Authorization": "Bearer sk_test"})
    return conn.getresponse()


def test_an_export_slower_than_the_ordinary_deadline_is_answered_whole(edge_to):
    """The core sends an export's parts for longer than an ordinary request may take, each soon after
    the one before: the edge passes it on whole instead of answering 503 after the deadline."""
    parts = 8

    async def slow_usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/csv"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(parts):
            await resp.write(PART)
            await asyncio.sleep(0.25)  # (the core reading its next chunk: 2 s in all, 1 s allowed)
        await resp.write_eof()
        return resp

    with _Core({"/v1/usage": slow_usage}) as core:
        resp = _get(edge_to(core), "/v1/usage?format=csv")
        assert resp.status == 200
        assert resp.read() == PART * parts
        assert resp.getheader("Content-Type") == "text/csv"


def test_an_ordinary_request_still_gives_up_at_its_deadline(edge_to):
    release = threading.Event()

    async def stuck_balance(request: web.Request) -> web.Response:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, WAIT_S)
        return web.json_response({"balance_micro_usd": 0})

    try:
        with _Core({"/v1/balance": stuck_balance}) as core:
            resp = _get(edge_to(core), "/v1/balance")
            assert resp.status == 503 and b"cluster_unavailable" in resp.read()
            release.set()
    finally:
        release.set()


def test_an_export_is_passed_on_as_it_comes_not_after_the_core_finished(edge_to):
    """The client has the export's first part while the core still holds back the rest."""
    client_has_first = threading.Event()
    ended_early: list[bool] = []

    async def usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PART)
        waited = await asyncio.get_running_loop().run_in_executor(None, client_has_first.wait,
                                                                  WAIT_S)
        ended_early.append(not waited)
        await resp.write(b"the rest")
        await resp.write_eof()
        return resp

    with _Core({"/v1/usage": usage}) as core:
        resp = _get(edge_to(core), "/v1/usage")
        assert resp.status == 200
        assert resp.read(len(PART)) == PART
        client_has_first.set()
        assert resp.read() == b"the rest"
    assert ended_early == [False]  # the core had not given up waiting: the part came through at once


def test_a_large_export_crosses_the_edge_in_bounded_memory(edge_to):
    """A 24 MB export: the edge holds about a part of it at a time, not all of it."""
    parts, part = 480, b"r" * 50_000

    async def usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/csv"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(parts):
            await resp.write(part)
        await resp.write_eof()
        return resp

    with _Core({"/v1/usage": usage}) as core:
        port = edge_to(core)
        tracemalloc.start()
        try:
            resp = _get(port, "/v1/usage")
            received = 0
            while chunk := resp.read(65536):
                received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert received == parts * len(part)
    assert peak < 4_000_000, peak  # (the whole export is 24 MB)


def test_an_export_that_breaks_off_is_cut_for_the_client_not_ended_as_if_whole(edge_to, monkeypatch):
    """The core stops mid-export (closed without the final chunk) or goes silent past the idle
    deadline: the client's transfer is cut, so a short export never looks complete."""
    monkeypatch.setattr(edge_forward, "EXPORT_IDLE_S", 1.0)
    release = threading.Event()

    async def usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PART)
        if request.query["then"] == "stop":
            request.transport.abort()
        else:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, WAIT_S)
        return resp

    try:
        with _Core({"/v1/usage": usage}) as core:
            port = edge_to(core)
            for then in ("stop", "silence"):
                resp = _get(port, f"/v1/usage?then={then}")
                assert resp.status == 200
                with pytest.raises(http.client.IncompleteRead):
                    resp.read()
    finally:
        release.set()


def _cut_count(edge: Edge) -> float:
    return edge.ctx.metrics.registry.get_sample_value(
        "smsroute_http_answers_cut_total", {"app": "customer", "endpoint": "GET /v1/usage"}) or 0.0


def _logged(data_dir) -> list[tuple[str, str, int, int]]:
    env = open_http_env(data_dir)
    try:
        return [(e.endpoint, e.source_ip, e.status, e.response_bytes)
                for e in RequestLog(env).entries()]
    finally:
        env.close()


def test_an_export_the_edge_cuts_is_recorded_as_the_200_the_client_saw(edge_for, monkeypatch,
                                                                      tmp_path, caplog):
    """The core's answer breaks off (it stopped mid-export, or went silent past the idle deadline):
    the edge records what its client saw - status 200, cut, the body bytes that went out - in its
    request log, request metric, a warning line and ``smsroute_http_answers_cut_total``. Before, it
    raised: aiohttp logged an unhandled error (answered 500 to nobody) and the edge recorded nothing,
    while the core recorded the request 499, as if the client had left, or nothing (it stopped)."""
    monkeypatch.setattr(edge_forward, "EXPORT_IDLE_S", 1.0)
    release = threading.Event()

    async def usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(PART)
        if request.query["then"] == "stop":
            request.transport.abort()
        else:
            await asyncio.get_running_loop().run_in_executor(None, release.wait, WAIT_S)
        return resp

    caplog.set_level("INFO")
    try:
        with _Core({"/v1/usage": usage}) as core:
            edge = edge_for(core)
            for n, then in enumerate(("stop", "silence"), start=1):
                resp = _get(edge.bound_port, f"/v1/usage?then={then}")
                assert resp.status == 200
                with pytest.raises(http.client.IncompleteRead):
                    resp.read()
                wait_for(lambda n=n: _cut_count(edge) == n, what="the cut counted on the edge")
            requests = edge.ctx.metrics.registry.get_sample_value(
                "smsroute_http_request_duration_seconds_count",
                {"app": "customer", "endpoint": "GET /v1/usage", "code": "200"})
            assert requests == 2
            edge.stop()  # (its request log is written at the latest when it stops)
    finally:
        release.set()
    assert _logged(tmp_path) == [("GET /v1/usage", "127.0.0.1", 200, len(PART))] * 2
    cut = [r for r in caplog.records if getattr(r, "cut", False)]
    assert [(r.levelname, r.status, r.route) for r in cut] == [("WARNING", 200, "/v1/usage")] * 2
    # (the edge's own lines and aiohttp's: asyncio's "Task was destroyed but it is pending" about an
    # earlier test's stand-in core, collected meanwhile, made this fail by the garbage collector's timing)
    assert not [r for r in caplog.records if r.levelname == "ERROR"
                and r.name.startswith(("engine", "aiohttp"))], caplog.text


def test_a_client_that_leaves_mid_export_is_no_cut_of_the_edge(edge_for, tmp_path, caplog):
    """The client leaves after the first part: the edge drops its connection to the core (which
    records the request 499, as its client left) and records no cut of its own; nothing is logged
    above info (a client leaving is ordinary: the failed write ends the request quietly, as aiohttp
    ends one whose answer had started)."""
    core_saw_close = threading.Event()

    async def usage(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        try:
            while asyncio.get_running_loop().time() < deadline:
                await resp.write(PART)
                await asyncio.sleep(0.02)
        except ConnectionError:
            core_saw_close.set()
        return resp

    caplog.set_level("INFO")
    with _Core({"/v1/usage": usage}) as core:
        edge = edge_for(core)
        conn = http.client.HTTPConnection("127.0.0.1", edge.bound_port, timeout=WAIT_S)
        conn.request("GET", "/v1/usage", headers={"Authorization": "Bearer sk_test"})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read(len(PART)) == PART
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        assert core_saw_close.wait(WAIT_S), "the edge kept reading the core's answer for nobody"
        assert _cut_count(edge) == 0
        edge.stop()  # (a line about it, if any, is written before the edge's server has stopped)
    assert _logged(tmp_path) == []
    # (the edge's own lines and aiohttp's; not asyncio's about other tests' loops collected meanwhile)
    assert not [r for r in caplog.records if r.levelno > logging.INFO
                and r.name.startswith(("engine", "aiohttp"))], caplog.text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_request_the_core_cannot_answer_is_in_the_edges_request_log(tmp_path):
    """The core is unreachable: the edge answers its own 503 ``cluster_unavailable`` - and, as the
    customer's record of their requests, writes the request-log entry nobody else can (the core never
    saw the request). Before, no entry was written anywhere."""
    engine = EdgeEngine(load_settings(None), Placement(node="e0", runs_core=False, runs_pops=False,
                                                       workers=("w0",)), tmp_path)
    edge = Edge(engine, "127.0.0.1", 0, f"http://127.0.0.1:{_closed_port()}", "edge-token").start()
    try:
        resp = _get(edge.bound_port, "/v1/balance")
        body = resp.read()
        assert resp.status == 503 and b"cluster_unavailable" in body
        count = edge.ctx.metrics.registry.get_sample_value(
            "smsroute_http_request_duration_seconds_count",
            {"app": "customer", "endpoint": "GET /v1/balance", "code": "503"})
        assert count == 1
    finally:
        edge.stop()
    assert _logged(tmp_path) == [("GET /v1/balance", "127.0.0.1", 503, len(body))]
