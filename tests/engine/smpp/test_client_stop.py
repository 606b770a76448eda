"""``SmppConnector.stop`` is bounded: a bind task that loses its cancellation (an await that swallows it,
as Python 3.11's ``asyncio.wait_for`` did) is cancelled again, and one that never ends is logged and left
behind after the grace period instead of hanging the engine's stop (the operator's SIGTERM)."""

from __future__ import annotations

import asyncio
import logging

import engine.smpp.client as client_module
from engine.smpp import smsc_carrier_settings
from engine.smpp.bind import SmppBind
from engine.smpp.client import SmppConnector


class Stubborn:
    """Stands in for a bind's reconnect loop that ignores its first ``swallow`` cancellations."""

    def __init__(self, swallow: int) -> None:
        self.swallow = swallow
        self.lost = 0

    def patch(self, monkeypatch) -> None:
        stubborn = self

        async def keep_bound(_bind: SmppBind) -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if stubborn.lost >= stubborn.swallow:
                        raise
                    stubborn.lost += 1

        monkeypatch.setattr(SmppBind, "_keep_bound", keep_bound)


async def _start_and_stop(stubborn: Stubborn, binds: int) -> tuple[SmppConnector, float | None]:
    """Start a connector, stop it; return it and how long the stop took (None: not within 5 s)."""
    settings = smsc_carrier_settings("127.0.0.1", 9, binds=binds)
    c = SmppConnector("c1", settings, lambda _r: None, lambda _r: None, lambda _up, _why: None)
    await c.start()
    await asyncio.sleep(0)  # the bind tasks are at their first await
    loop = asyncio.get_running_loop()
    started = loop.time()
    stopping = asyncio.create_task(c.stop(timeout=0.1))
    done, _ = await asyncio.wait([stopping], timeout=5)
    took = loop.time() - started if done else None
    stubborn.swallow = 0  # asyncio.run's own cleanup can end what is left
    return c, took


def test_a_bind_that_lost_its_cancellation_is_cancelled_again_and_the_stop_returns(monkeypatch, caplog):
    stubborn = Stubborn(swallow=1)
    stubborn.patch(monkeypatch)
    caplog.set_level(logging.INFO, logger="engine.smpp")

    c, took = asyncio.run(_start_and_stop(stubborn, binds=1))
    assert took is not None and took < 1.0
    assert stubborn.lost == 1
    assert [b.state for b in c.binds] == ["closed"]
    assert not [r for r in caplog.records if "smpp_stop_tasks_left" in r.getMessage()]


def test_a_bind_that_never_ends_is_left_behind_after_the_grace_period_with_a_log_line(
        monkeypatch, caplog):
    stubborn = Stubborn(swallow=1_000_000)
    stubborn.patch(monkeypatch)
    monkeypatch.setattr(client_module, "_STOP_GRACE_SECONDS", 0.3)
    caplog.set_level(logging.INFO, logger="engine.smpp")

    _c, took = asyncio.run(_start_and_stop(stubborn, binds=2))
    assert took is not None and 0.3 <= took < 1.5
    assert stubborn.lost >= 4  # both binds, cancelled again and again
    assert [r.getMessage() for r in caplog.records if "smpp_stop_tasks_left" in r.getMessage()] \
        == ["smpp_stop_tasks_left carrier=c1 tasks=2"]
