"""The webhook dispatcher against a real aiohttp receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from engine.http.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    Delivery,
    RetryPolicy,
    WebhookDispatcher,
    retry_after_s,
    verify,
)

FAST = RetryPolicy(base_s=0.01, cap_s=0.05, window_s=30.0, timeout_s=5.0)
PATIENT = RetryPolicy(base_s=0.01, cap_s=2.0, window_s=30.0, timeout_s=5.0)  # honours a Retry-After <= 2 s


class Receiver:
    """A webhook receiver whose answers follow a script; records every request."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.seen: list[tuple[float, dict[str, str], bytes]] = []
        self.changed = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((asyncio.get_running_loop().time(), dict(request.headers), body))
        self.changed.set()
        await self.release.wait()
        status, headers = self.script.pop(0) if self.script else (200, {})
        return web.Response(status=status, headers=headers)

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.seen) < n:
                self.changed.clear()
                await self.changed.wait()


async def _serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/hook"


def _run(scenario):
    return asyncio.run(asyncio.wait_for(scenario(), 20))


def _dispatcher(gone: list, **kw) -> WebhookDispatcher:
    kw.setdefault("policy", FAST)
    kw.setdefault("allow_private_networks", True)  # the receivers here listen on loopback
    return WebhookDispatcher(lambda account: ["new_secret", "old_secret"], gone.append, **kw)


async def _until(predicate, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def test_a_delivery_arrives_signed_with_both_secrets_and_its_event_id():
    async def scenario():
        rx = Receiver([])
        runner, url = await _serve(rx)
        d = _dispatcher([])
        await d.start()
        body = json.dumps({"id": "evt_1", "status": "delivered"}).encode()
        assert d.submit(Delivery(url, "acc", "evt_1", body))
        await rx.wait_for(1)
        await _until(lambda: d.counts["delivered"] == 1)
        _, headers, got = rx.seen[0]
        assert got == body and headers[EVENT_ID_HEADER] == "evt_1"
        assert headers["Content-Type"] == "application/json"
        assert verify(headers[SIGNATURE_HEADER], ["old_secret"], got, now=time.time())
        assert verify(headers[SIGNATURE_HEADER], ["new_secret"], got, now=time.time())
        await d.stop()
        await runner.cleanup()

    _run(scenario)


def test_failures_are_retried_with_the_same_event_id_until_success():
    async def scenario():
        rx = Receiver([(500, {}), (502, {}), (200, {})])
        runner, url = await _serve(rx)
        d = _dispatcher([])
        await d.start()
        d.submit(Delivery(url, "acc", "evt_2", b"{}"))
        await rx.wait_for(3)
        await _until(lambda: d.counts["delivered"] == 1)
        assert {h[EVENT_ID_HEADER] for _, h, _ in rx.seen} == {"evt_2"}
        assert d.counts["retried"] == 2 and d.backlog == 0
        await d.stop()
        await runner.cleanup()

    _run(scenario)


def test_gone_disables_the_endpoint_and_stops_retrying():
    async def scenario():
        rx = Receiver([(410, {})])
        runner, url = await _serve(rx)
        gone: list[Delivery] = []
        d = _dispatcher(gone)
        await d.start()
        d.submit(Delivery(url, "acc", "evt_3", b"{}"))
        await _until(lambda: gone)
        assert gone[0].url == url and d.counts["gone"] == 1
        assert d.backlog == 0 and len(rx.seen) == 1
        await d.stop()
        await runner.cleanup()

    _run(scenario)


def test_retry_after_is_honoured_even_when_backoff_would_be_sooner():
    async def scenario():
        rx = Receiver([(503, {"Retry-After": "1"}), (200, {})])
        runner, url = await _serve(rx)
        d = _dispatcher([], rand=lambda: 0.0, policy=PATIENT)  # backoff alone would retry at once
        await d.start()
        d.submit(Delivery(url, "acc", "evt_4", b"{}"))
        await rx.wait_for(2)
        # call_later never fires early by more than the loop clock's resolution
        assert rx.seen[1][0] - rx.seen[0][0] >= 0.95
        await d.stop()
        await runner.cleanup()

    _run(scenario)


@pytest.mark.parametrize("value", [
    "inf", "Infinity", "1e400", "99999999999", "-5", "nan", "NaN", "soon", "", "1_0",
    "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_hostile_or_huge_retry_after_never_ends_the_delivery(value):
    """A receiver's ``Retry-After`` is parsed strictly and clamped to the policy's cap: it cannot make
    the engine give the event up (before: ``inf``/huge answered 'expired' at the first failure)."""
    async def scenario():
        rx = Receiver([(503, {"Retry-After": value}), (200, {})])
        runner, url = await _serve(rx)
        d = _dispatcher([])  # FAST: cap 0.05 s, window 30 s
        await d.start()
        d.submit(Delivery(url, "acc", "evt_ra", b"{}"))
        await _until(lambda: d.counts["delivered"] + d.counts["expired"] == 1)
        assert d.counts == {**d.counts, "delivered": 1, "expired": 0, "retried": 1}
        assert rx.seen[1][0] - rx.seen[0][0] < 1.0  # at most the cap (plus scheduling), not the header
        await d.stop()
        await runner.cleanup()

    _run(scenario)


def test_a_retry_after_beyond_the_window_retries_at_the_windows_end_instead_of_giving_up():
    async def scenario():
        rx = Receiver([(503, {"Retry-After": "60"}), (200, {})])
        runner, url = await _serve(rx)
        policy = RetryPolicy(base_s=0.01, cap_s=3600.0, window_s=0.5, timeout_s=5.0)
        d = _dispatcher([], rand=lambda: 0.0, policy=policy)
        await d.start()
        d.submit(Delivery(url, "acc", "evt_rw", b"{}"))
        await _until(lambda: d.counts["delivered"] + d.counts["expired"] == 1)
        assert d.counts["delivered"] == 1 and len(rx.seen) == 2
        assert 0.3 <= rx.seen[1][0] - rx.seen[0][0] < 2.0  # held back to the window's end, then sent
        await d.stop()
        await runner.cleanup()

    _run(scenario)


@given(st.text(max_size=40))
def test_retry_after_is_none_or_a_finite_non_negative_delay(value):
    delay = retry_after_s(value, now=1_700_000_000.0)
    assert delay is None or (math.isfinite(delay) and delay >= 0)


@pytest.mark.parametrize(("value", "expected"), [
    ("120", 120.0), (" 7 ", 7.0), ("0.3", 0.3), ("0", 0.0), (None, None),
    ("Tue, 14 Nov 2023 22:15:20 GMT", 100.0),  # an IMF-fixdate 100 s after `now`
    ("Tuesday, 14-Nov-23 22:15:20 GMT", 100.0),  # the obsolete RFC 850 form
    ("Tue, 14 Nov 2023 22:11:00 GMT", 0.0),  # a date already past: retry now
    ("inf", None), ("-1", None), ("nan", None), ("1e3", None), ("+5", None), ("12 s", None)])
def test_retry_after_reads_delay_seconds_and_http_dates(value, expected):
    assert retry_after_s(value, now=1_700_000_020.0) == expected


def test_retries_stop_when_the_window_closes():
    async def scenario():
        rx = Receiver([(500, {})] * 100)
        runner, url = await _serve(rx)
        policy = RetryPolicy(base_s=0.01, cap_s=0.02, window_s=0.2, timeout_s=5.0)
        d = _dispatcher([], policy=policy)
        await d.start()
        d.submit(Delivery(url, "acc", "evt_5", b"{}"))
        await _until(lambda: d.counts["expired"] == 1)
        assert d.backlog == 0 and 1 <= len(rx.seen) < 100
        await d.stop()
        await runner.cleanup()

    _run(scenario)


def test_a_dead_receiver_is_retried_like_an_error():
    async def scenario():
        policy = RetryPolicy(base_s=0.01, cap_s=0.02, window_s=0.3, timeout_s=1.0)
        d = _dispatcher([], policy=policy)
        await d.start()
        d.submit(Delivery("http://127.0.0.1:9/nothing", "acc", "evt_6", b"{}"))
        await _until(lambda: d.counts["expired"] == 1)
        assert d.counts["retried"] >= 1
        await d.stop()

    _run(scenario)


def test_the_backlog_is_bounded_and_submit_never_waits():
    async def scenario():
        rx = Receiver([])
        rx.release.clear()  # the receiver hangs
        runner, url = await _serve(rx)
        d = _dispatcher([], concurrency=1, max_backlog=2)
        await d.start()
        accepted = [d.submit(Delivery(url, "acc", f"e{i}", b"{}")) for i in range(5)]
        assert accepted == [True, True, False, False, False]
        assert d.counts["dropped"] == 3
        rx.release.set()
        await _until(lambda: d.counts["delivered"] == 2)
        await d.stop()
        await runner.cleanup()

    _run(scenario)


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0, max_value=1))
def test_backoff_is_full_jitter_under_the_capped_exponential(attempt, r):
    d = WebhookDispatcher(lambda a: [], lambda d: None, policy=RetryPolicy(base_s=0.5, cap_s=60),
                          rand=lambda: r)
    delay = d.backoff_s(attempt)
    assert 0 <= delay <= min(60, 0.5 * 2 ** attempt)
    assert delay == r * min(60, 0.5 * 2 ** min(attempt, 62))


def test_a_hanging_receiver_does_not_delay_another_receivers_events():
    async def scenario():
        slow, fast = Receiver([]), Receiver([])
        slow.release.clear()  # hangs until released
        slow_runner, slow_url = await _serve(slow)
        fast_runner, fast_url = await _serve(fast)
        d = _dispatcher([], concurrency=4, max_per_host=1)
        await d.start()
        for i in range(10):
            d.submit(Delivery(slow_url, "acc", f"slow{i}", b"{}"))
        for i in range(3):
            d.submit(Delivery(fast_url, "acc", f"fast{i}", b"{}"))
        await fast.wait_for(3)
        assert len(slow.seen) == 1  # one worker stuck there, the rest parked
        slow.release.set()
        await _until(lambda: d.counts["delivered"] == 13)
        assert d.backlog == 0
        await d.stop()
        await slow_runner.cleanup()
        await fast_runner.cleanup()

    _run(scenario)


def test_each_scheduled_retry_is_reported_with_its_attempt_and_time():
    async def scenario():
        rx = Receiver([(503, {"Retry-After": "0.3"}), (500, {}), (200, {})])
        runner, url = await _serve(rx)
        retries: list[tuple[int, float, float]] = []
        d = _dispatcher([], rand=lambda: 0.0, policy=PATIENT, on_retry=lambda dl: retries.append(
            (dl.attempt, dl.next_at, time.time())))
        await d.start()
        d.submit(Delivery(url, "acc", "evt_r", b"{}"))
        await _until(lambda: d.counts["delivered"] == 1)
        assert [attempt for attempt, _, _ in retries] == [1, 2]
        attempt, next_at, reported = retries[0]
        assert 0.25 <= next_at - reported <= 0.35  # the receiver's Retry-After, from the report's time
        await d.stop()
        await runner.cleanup()

    _run(scenario)


def test_a_delivery_read_back_with_a_schedule_is_not_sent_before_it():
    async def scenario():
        rx = Receiver([(200, {})])
        runner, url = await _serve(rx)
        d = _dispatcher([])
        await d.start()
        not_before = time.time() + 0.5
        d.submit(Delivery(url, "acc", "evt_s", b"{}", attempt=4, next_at=not_before))
        assert d.backlog == 1  # waiting, and counted
        await rx.wait_for(1)
        assert time.time() >= not_before - 0.01  # (call_later may fire a clock tick early)
        await _until(lambda: d.counts["delivered"] == 1)
        await d.stop()
        await runner.cleanup()

    _run(scenario)
