"""While the webhook outboxes cannot be read at start (a cluster's worker hung or of another protocol),
the HTTP layer retries every ``OUTBOX_RETRY_S`` and logs one line when it starts, a summary at most
every ``OUTBOX_LOG_EVERY_S``, and one line when the outboxes are read (``engine.retry_log``). Before, it
logged a warning per attempt: one a second for as long as the worker stayed away."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from engine.config import load_settings
from engine.errors import ClusterUnavailable
from engine.http import server
from engine.http.server import HttpServers
from engine.retry_log import RetryLog

FAILURES = 40


class UnreadableOutboxes:
    """Just enough engine for the HTTP servers: outboxes that cannot be read ``FAILURES`` times."""

    def __init__(self, data_dir) -> None:
        self.data_dir = data_dir
        self.settings = load_settings(None, {"http": {"customer_port": 0, "control_port": 0}})
        self.asked = 0
        self.read = threading.Event()

    def on_status(self, callback) -> None: ...

    def on_webhook_events(self, callback) -> None: ...

    def stats(self, **kw) -> dict:
        return {}

    def pending_webhook_events(self) -> list:
        self.asked += 1
        if self.asked <= FAILURES:
            raise ClusterUnavailable("worker w1 is of another protocol")
        self.read.set()
        return []


def test_outboxes_unreadable_at_start_log_one_line_then_one_when_read(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(server, "OUTBOX_RETRY_S", 0.001)  # 40 attempts in a moment
    caplog.set_level(logging.INFO, logger="engine.http.server")
    engine = UnreadableOutboxes(tmp_path / "data")
    engine.data_dir.mkdir()
    servers = HttpServers(engine, engine.settings).start()
    try:
        assert engine.read.wait(10), "the outboxes were never read"
        deadline = time.monotonic() + 5  # the recovery line follows the read, on the HTTP loop
        while True:
            lines = [r.getMessage() for r in caplog.records if "outboxes" in r.getMessage()]
            if any(" after " in line for line in lines) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
    finally:
        servers.stop()
    assert engine.asked == FAILURES + 1
    assert lines[0] == "webhooks: outboxes not readable yet (cluster_unavailable); retrying", lines
    assert len(lines) == 2, lines  # before: FAILURES lines
    assert lines[1].startswith("webhooks: outboxes readable after ") and f"({FAILURES} attempts" \
        in lines[1], lines
    assert "w1" not in "\n".join(lines)  # the error's message (worker names) is not repeated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def retry_log(caplog):
    caplog.set_level(logging.INFO, logger="test.retry")
    clock = Clock()
    return RetryLog(logging.getLogger("test.retry"), "x: not readable yet", "x: readable", every=60,
                    clock=clock), clock, caplog


def test_a_retry_log_summarizes_at_most_once_a_minute(retry_log):
    log, clock, caplog = retry_log
    for _ in range(600):  # ten minutes of a failure a second
        log.failed("cluster_unavailable")
        clock.now += 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "x: not readable yet (cluster_unavailable); retrying"
    assert len(lines) == 1 + 9, lines  # the first line, then one summary a minute
    assert all("60 attempts failed in the last 60 s" in line for line in lines[1:]), lines
    log.succeeded()
    log.succeeded()  # said once
    assert caplog.records[-1].getMessage() == "x: readable after 600 s (600 attempts failed)"
    assert len(caplog.records) == 11


def test_a_retry_log_says_nothing_when_nothing_failed_and_starts_over_after_a_recovery(retry_log):
    log, clock, caplog = retry_log
    log.succeeded()
    assert caplog.records == []
    log.failed("a")
    log.succeeded()
    clock.now += 5
    log.failed("b")
    assert [r.getMessage() for r in caplog.records] == [
        "x: not readable yet (a); retrying", "x: readable after 0 s (1 attempts failed)",
        "x: not readable yet (b); retrying"]
