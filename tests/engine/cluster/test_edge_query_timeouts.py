"""An HTTP edge's question the core's HTTP loop does not answer in time (a lease under load) is answered
``overloaded``, counted, and logged as one line - not one traceback per timeout."""

from __future__ import annotations

import asyncio
import logging
import threading
import types

from engine import messages as m
from engine.cluster.edge_queries import EdgeQueries
from engine.http.metrics import HttpMetrics, Snapshot
from engine.http.ratelimit import Gcra
from engine.http.server import HttpServers

KEY = "0123456789abcdef0123456789abcdef"  # a key digest's prefix: must never be logged


class _HttpLoop:
    """The core's HTTP loop on a thread of its own, which the test holds up and releases."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.release = threading.Event()

    def hold(self) -> None:
        held, self.release = threading.Event(), threading.Event()
        self.loop.call_soon_threadsafe(lambda: (held.set(), self.release.wait(10)))
        assert held.wait(10)

    def run_once(self) -> None:
        self.release.set()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self.loop).result(10)

    def close(self) -> None:
        self.release.set()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _http(loop: _HttpLoop, gcra: Gcra):
    """The core's ``HttpServers`` as an edge's lease reaches it (its real ``lease_block``)."""
    http = types.SimpleNamespace(_loop=loop.loop, ctx=types.SimpleNamespace(limiter=gcra))
    http.lease_block = lambda *args: HttpServers.lease_block(http, *args, timeout=0.05)
    return http


def test_timeouts_answer_overloaded_are_counted_and_logged_once_without_a_traceback(caplog):
    gcra = Gcra(1e-6, 100)
    loop = _HttpLoop()
    queries = EdgeQueries(types.SimpleNamespace(http=_http(loop, gcra)))
    ask = m.encode(m.ShardQuery("lease_block", [KEY, 20, 2, 0, []]))
    try:
        loop.hold()
        with caplog.at_level(logging.WARNING, logger="engine.cluster.edge_queries"):
            replies = [m.decode(queries.answer(ask)) for _ in range(5)]
        assert [(r.ok, r.error) for r in replies] == [(False, "overloaded")] * 5
        assert queries.timeouts == {"lease_block": 5}
        [line] = caplog.records  # (before: five "edge query failed" lines, each with a traceback)
        assert line.exc_info is None and "did not answer in time" in line.getMessage()
        assert KEY not in line.getMessage()
        loop.run_once()
        assert gcra.peek(KEY).remaining == 100  # the leases nobody waited for took no tokens
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="engine.cluster.edge_queries"):
            reply = m.decode(queries.answer(ask))
        assert reply.ok and reply.result[0] == 20
        [line] = caplog.records
        assert line.getMessage().startswith("edge queries: the core's HTTP loop answers in time again")
    finally:
        loop.close()
    scrape = HttpMetrics(lambda: Snapshot(edge_query_timeouts=dict(queries.timeouts))).exposition()
    assert b'smsroute_edge_query_timeouts_total{query="lease_block"} 5.0' in scrape
