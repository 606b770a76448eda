"""Joining NATS: a process that finds no server gives up after its time-out with a clear error."""

from __future__ import annotations

import time

import pytest

from engine.cluster.nats_server import free_port
from engine.cluster.transport import Transport
from engine.errors import ClusterUnavailable


def test_no_server_is_reported_once_the_time_out_has_passed_not_later():
    """nats-py keeps retrying a first connection for ever when reconnects are allowed; the transport
    bounds it by its own time-out (before, it waited 5 s more and left the connect running)."""
    url = f"nats://127.0.0.1:{free_port('127.0.0.1')}"  # nothing listens there: refused
    transport = Transport([url], "t", deliver=lambda target, frame, message: True)
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable) as refused:
        transport.start(timeout=0.5)
    assert time.monotonic() - started < 4.0  # the time-out and one connect attempt, not time-out + 5 s
    assert url in str(refused.value) and "within 0.5 s" in str(refused.value)
