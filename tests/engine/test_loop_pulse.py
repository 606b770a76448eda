"""LoopPulse: a loop that stops turning (a callback that blocks) is hung once its stamp is older than the
bound, works again once it turns; a loop never started or stopped is not hung."""

from __future__ import annotations

import asyncio
import threading

from engine.loop_pulse import LoopPulse
from tests.waiting import wait_for


class _Loop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_a_blocked_loop_is_hung_past_the_bound_and_works_again_when_it_turns():
    now = [100.0]
    pulse = LoopPulse(hung_after=10.0, clock=lambda: now[0])
    loop = _Loop()
    try:
        assert pulse.hung() is None  # not started: not a hang
        pulse.start_on(loop.loop)
        stamped = threading.Event()
        loop.loop.call_soon_threadsafe(stamped.set)  # after the first stamp (FIFO)
        assert stamped.wait(5)
        release, blocked = threading.Event(), threading.Event()

        def stuck() -> None:
            blocked.set()
            release.wait(10)

        loop.loop.call_soon_threadsafe(stuck)
        assert blocked.wait(5)
        now[0] += 10.0
        assert pulse.hung() is None
        now[0] += 1.0
        assert pulse.hung() == "its event loop did not turn for 11 s"
        release.set()  # it turns again: the next stamp (within a second of real time) is "now"
        wait_for(lambda: pulse.hung() is None, "the loop to stamp again", 5)
        pulse.stop()
        now[0] += 100.0
        assert pulse.hung() is None  # stopped with its loop: not a hang
    finally:
        release.set()
        loop.close()
