"""A burst of refusals at the door reaches the operator's log: when it starts, and summed up when it ends."""

from __future__ import annotations

import asyncio
import logging

from engine.http import shedding
from engine.http.shedding import Shedder


def test_a_burst_is_logged_when_it_starts_and_summed_up_once_the_door_is_quiet(caplog, monkeypatch):
    monkeypatch.setattr(shedding, "QUIET_PROBES", 3)
    ended: list[bool] = []
    door = Shedder(max_pending=2, delay_target_s=10.0, after_burst=lambda: ended.append(True))

    async def burst() -> None:
        door.start(asyncio.get_running_loop())
        assert door.admit() and door.admit()
        assert not door.admit() and not door.admit()  # over the bound: refused at once
        await asyncio.sleep(5 * shedding.PROBE_S)  # the probes see the burst
        door.pending = 0  # the two admitted requests were answered
        await asyncio.sleep(20 * shedding.PROBE_S)  # quiet for more than QUIET_PROBES probes
        door.stop()

    with caplog.at_level(logging.WARNING, logger="engine.http.shedding"):
        asyncio.run(burst())
    started, summed = [r.getMessage() for r in caplog.records]
    assert started.startswith("customer API: shedding load (503 with Retry-After): "
                              "2 requests in progress (bound 2)")
    assert summed.startswith("customer API: stopped shedding after ")
    assert summed.endswith("2 requests refused (2 over the pending bound, 0 over the queue delay "
                           "target), 2 admitted meanwhile")  # (since the last calm probe)
    assert ended == [True]  # the memory trim after a burst still runs
