"""SweepWatch: whether the retention sweeper still works, read without asking it.

Why: the sweeper is what keeps the privacy promise (bodies gone within 24 hours, records past their
retention deleted). It runs on a thread of its own; one stuck there (a lock never released, an LMDB call
that never returns, a bug that loops) stopped erasing anything while ``/readyz`` said ready and a
worker's heartbeat went on - the heartbeat asked only the POP actors and the NATS loop. The sweeper
stamps this watch as it goes (a sweep began, a store's sweep finished, the sweep ended; the stamps are
single float writes, no lock), and anyone may ask :meth:`SweepWatch.hung` at any time: ``/readyz`` in one
process, a worker's heartbeat (``engine.cluster.worker``), which is never held up by the sweeper.

When it is hung (``stall_seconds``, ``[engine] sweep_stall_seconds``, 900 s by default):

* during a sweep: no store's sweep has finished for ``stall_seconds``. The unit of progress is one
  store's sweep, not the whole sweep: a big store swept for a long time while the others wait is not a
  hang, and one store's sweep is bounded by design - what expired since the previous sweep, in batches
  (``storage.headroom``, ``storage.bodies.SWEEP_BATCH``) so the POP's commits are never held up for
  long. In steady state that is one interval's expiries (seconds of work); the largest legitimate one is
  the first sweep after a long stop, which purges at most a day of bodies (none lives longer). Measured
  (session 11, 2-core shared machine, 50,000 bodies): ~1 million purged per CPU-second, ~250,000 per
  second of wall time with each batch's fsync - a day at 1,000 messages a second, 86 million bodies, in
  ~6 minutes. The 15-minute default leaves over twice that, and a sweeper that really stopped is still
  noticed (and a worker restarted) within minutes, not hours, of the 24-hour promise;
* between sweeps: none began within one interval (the next is due then; ticks come every ``tick_ms``)
  plus ``stall_seconds``, counted from the later of the last sweep's start + interval and its end (a
  sweep longer than an interval is followed by the next at once). This catches a sweeper thread stuck
  outside a sweep, and ticks that stopped coming. Before the first sweep the start-up counts as its end.

Times are ``time.monotonic()`` (injectable for tests): a wall-clock step must not fake a hang.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_STALL_SECONDS = 900.0


class SweepWatch:
    """Stamped by the sweeper's thread, read by any other (see the module docstring)."""

    def __init__(self, interval_seconds: float, stall_seconds: float = DEFAULT_STALL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval_seconds
        self.stall = stall_seconds
        self._clock = clock
        now = clock()
        self._busy = False
        self._progress = now  # the last sign of work: a sweep began, a store finished, a sweep ended
        self._due = now  # when the next full sweep should begin (the first: at once)

    # --- the sweeper's side -----------------------------------------------------------------------

    def began(self, full: bool = True) -> None:
        """A sweep begins (``full``: of every store, which sets when the next one is due; otherwise of
        the stores to retry or newly added, between two full sweeps)."""
        now = self._clock()
        if full:
            self._due = now + self.interval
        self._progress = now
        self._busy = True

    def store_done(self) -> None:
        """One store's sweep finished (or failed: it is retried next tick; still progress)."""
        self._progress = self._clock()

    def ended(self) -> None:
        """The sweep ended: the next is due at the later of its due time and now."""
        now = self._clock()
        self._due = max(self._due, now)
        self._progress = now
        self._busy = False

    # --- anyone's side ----------------------------------------------------------------------------

    def hung(self, now: float | None = None) -> str | None:
        """Why the sweeper counts as hung now (None: it works), e.g. ``no store swept for 901 s``."""
        now = self._clock() if now is None else now
        if self._busy:
            silent = now - self._progress
            if silent > self.stall:
                return f"no store swept for {silent:.0f} s"
            return None
        late = now - self._due
        if late > self.stall:
            return f"no sweep began for {late:.0f} s past its interval"
        return None
