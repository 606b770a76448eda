"""A NATS server that stays connected but stops reading: the transport's memory stays bounded and the
link reports itself unusable (a submit is refused 503) long before the client's ping check gives up."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading

import pytest

from engine import messages as m
from engine.cluster.transport import Transport
from engine.errors import ClusterUnavailable
from engine.http.metrics import HttpMetrics, Snapshot
from engine.submission import tell_or_fail
from tests.waiting import wait_for

LIMIT = 1 << 20  # the transport's pending_bytes
INFO = (b'INFO {"server_id":"stall","version":"2.10.0","go":"go1.21","host":"127.0.0.1","port":4222,'
        b'"max_payload":1048576,"proto":1,"headers":true}\r\n')


class StallingServer:
    """Loopback: speaks just enough NATS to be joined (INFO, a PONG for each PING), then, once
    :attr:`stall` is set, stops reading while keeping the connection open."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"nats://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stall = threading.Event()
        self.closing = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            self.conns.append(conn)
            conn.sendall(INFO)
            seen = b""
            while not self.stall.is_set():
                data = conn.recv(4096)
                if not data:
                    return
                seen += data
                while b"PING\r\n" in seen:
                    seen = seen.split(b"PING\r\n", 1)[1]
                    conn.sendall(b"PONG\r\n")
            self.closing.wait(60)  # connected, reading nothing

    def close(self) -> None:
        self.closing.set()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.listener.close()


class Bridge:
    def __init__(self) -> None:
        self.failed: list = []

    def fail(self, request_id, error) -> None:
        self.failed.append((request_id, error))


def test_a_server_that_stops_reading_bounds_the_backlog_and_refuses_submits():
    server = StallingServer()
    transport = Transport([server.url], "core", deliver=lambda target, frame, msg: True,
                          pending_bytes=LIMIT)
    try:
        transport.start(timeout=10)
        server.stall.set()
        ref = transport.ref("w0", "session/acc_x")
        assert ref.is_alive()
        frame = m.encode(m.WebhookEventsDone(list(range(20_000))))  # ~60 KiB

        def offer() -> bool:  # traffic goes on at a link that moves nothing (the kernel fills first)
            for _ in range(10):
                ref.tell(frame)
            return not ref.is_alive()

        wait_for(offer, "the link reported unusable", timeout=30)
        assert transport.connected  # the client itself has noticed nothing
        wait_for(lambda: offer() and transport.counters.get("batches_dropped", 0) > 0,
                 "batches beyond the bound dropped and counted")
        assert transport.backlog_bytes <= LIMIT
        loop = transport._loop
        tasks = asyncio.run_coroutine_threadsafe(_task_count(), loop).result(5)
        assert tasks <= 8, tasks  # not one task per batch
        scrape = HttpMetrics(lambda: Snapshot(engine={"transport": transport.stats()})).exposition().decode()
        dropped = transport.counters["frames_dropped"]
        assert f"smsroute_nats_dropped_total {float(dropped)}" in scrape and dropped > 0
        assert "smsroute_nats_backlog_bytes " in scrape
        bridge = Bridge()
        with pytest.raises(ClusterUnavailable):  # a submit now: refused at once, nothing sent
            tell_or_fail(bridge, ref, frame, [7])
        assert [(rid, type(err)) for rid, err in bridge.failed] == [(7, ClusterUnavailable)]
    finally:
        server.close()
        transport.stop(timeout=5)


async def _task_count() -> int:
    return len(asyncio.all_tasks())
