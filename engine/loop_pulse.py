"""LoopPulse: an asyncio loop on a thread of its own stamps the time every second; a stale stamp is a hang.

Why: an SMPP carrier's binds run on an event loop thread of their own (``actors.carrier_smpp``). One
stuck there (a callback that blocks, a loop that never yields) sent and received nothing for that carrier
while ``/readyz`` said ready and a worker's heartbeat went on: the heartbeat asked only the POP actors and
the NATS loop. A callback the loop itself runs every :data:`EVERY_S` is the cheapest proof that it still
turns (like ``engine.cluster.heartbeat.loop_probe``, but read without waiting: ``/readyz`` never waits on
a part of the engine, and a stuck loop could not answer anyway). :meth:`LoopPulse.hung` is a read of one
float, from any thread.

The bound (``hung_after``) is the one a whole child process gets (``[engine] child_hung_after_seconds``,
10 s by default): a loop callback takes microseconds to milliseconds, so 10 s late is no busy moment.
Whether the SMSC answers is not this: an unreachable SMSC or refused binds leave the loop turning (and
are no reason to be not ready: the README's readiness contract).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

EVERY_S = 1.0


class LoopPulse:
    """Started on a loop by its owner (:meth:`start_on`, from any thread), stopped before the loop is."""

    def __init__(self, hung_after: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.hung_after = hung_after
        self._clock = clock
        self._last: float | None = None  # None: not started, or stopped (not a hang)
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def start_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stamp now, then from the loop every :data:`EVERY_S` (thread-safe: the first callback is
        scheduled with ``call_soon_threadsafe``)."""
        self._stopped = False
        self._last = self._clock()
        loop.call_soon_threadsafe(self._tick, loop)

    def stop(self) -> None:
        """No more stamps and never hung (the loop is being stopped: a stop is not a hang)."""
        self._stopped = True
        self._last = None
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()  # (from another thread: at worst the tick runs once more and sees _stopped)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stopped:
            return
        self._last = self._clock()
        self._timer = loop.call_later(EVERY_S, self._tick, loop)

    def hung(self, now: float | None = None) -> str | None:
        """Why the loop counts as hung now (None: it turns, or it is not running)."""
        last = self._last
        if last is None or self._stopped:
            return None
        now = self._clock() if now is None else now
        silent = now - last
        if silent > self.hung_after:
            return f"its event loop did not turn for {silent:.0f} s"
        return None
