"""Shedding overload at the customer API's door: refuse early and cheaply instead of queueing.

Why: offered more than it can serve, a server that queues answers everything late — every request waits
behind the backlog, clients time out on messages that were in fact accepted and billed, and the memory of
the queued requests grows and stays. Refusing in a middleware is too late: by then the request was routed
and its body read, which costs about as much as serving it. So :class:`Shedder` decides when a request
starts, in front of the application (before routing, middlewares, the body read and JSON parsing): when
``max_pending`` requests are already being served, or the event loop has run more than ``delay_target_s``
behind for :data:`SUSTAINED_PROBES` probes in a row (its lag, measured by a probe every :data:`PROBE_S`, is
how long a ready request waits for the loop; one late probe — a GC pause, a noisy neighbour — is not
overload), the request is answered ``503 overloaded`` with ``Retry-After`` from a canned body at once. A
body that has arrived is skipped by the HTTP parser without ever being parsed (the connection stays
open); one still on its way is not waited for (the connection is closed after the answer). The admitted requests keep a
latency near their unloaded one, and the memory held by waiting requests stays bounded.

The lag sheds only with a queue: a loop that lags while (almost) nothing is in progress is slowed by the
machine (another process on the cores, a long GC pause), not by the requests it serves, and refusing a
lone request then helps no one - before, the only request in progress was refused 503. Overload from
requests always shows as requests in progress: each admitted one holds its slot until answered, and
they wait for the lagging loop too.

Operators see a burst in the log: one warning when the door starts refusing, one when it has been quiet
again for :data:`QUIET_PROBES` probes, with how many it refused and why (each refusal is counted in the
metrics too; they are not written to the request log one by one, which under overload would cost what the
door exists to save).

Threads: the HTTP loop's only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.http.errors import error_body

PROBE_S = 0.01
RETRY_AFTER_S = 1
SUSTAINED_PROBES = 3  # probes in a row later than the target before the delay sheds
LAG_SHEDS_FROM = 4  # ... and only while at least this many requests are being served (a queue)
QUIET_PROBES = 200  # after shedding, this many quiet probes (~2 s) before memory is given back
_BODY = error_body("overloaded", "the API is at capacity; retry after the Retry-After seconds")
_HEADERS = {"Retry-After": str(RETRY_AFTER_S), "Content-Type": "application/json",
            "Server": "smsroute", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
log = logging.getLogger(__name__)


class Shedder:
    """The door of one HTTP port (see the module docstring)."""

    def __init__(self, max_pending: int, delay_target_s: float,
                 after_burst: Callable[[], None] | None = None, name: str = "customer API") -> None:
        self.name = name
        self._after_burst = after_burst  # called once the door is quiet again after shedding
        self._burst_start: tuple[float, dict[str, int]] = (0.0, {})
        self._shed_seen = 0
        self._quiet = 0
        self._burst = False
        self.max_pending = max_pending
        self.delay_target_s = delay_target_s
        self.pending = 0
        self.lag_s = 0.0
        self._late = 0  # probes in a row later than the target
        self.counts = {"admitted": 0, "shed_pending": 0, "shed_delay": 0}
        self._calm = dict(self.counts)  # the counts at the last probe outside a burst
        self._probe: asyncio.TimerHandle | None = None
        self._expected = 0.0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._expected = loop.time() + PROBE_S
        self._probe = loop.call_at(self._expected, self._tick, loop)

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.lag_s = now - self._expected
        self._late = self._late + 1 if self.lag_s > self.delay_target_s else 0
        self._expected = now + PROBE_S
        self._probe = loop.call_at(self._expected, self._tick, loop)
        shed = self.counts["shed_pending"] + self.counts["shed_delay"]
        if shed != self._shed_seen:  # a burst is (still) on
            if not self._burst:
                self._burst_start = (now, self._calm)
                log.warning("%s: shedding load (503 with Retry-After): %d requests in progress "
                            "(bound %d), the loop %.0f ms behind", self.name, self.pending,
                            self.max_pending, self.lag_s * 1000)
            self._shed_seen, self._quiet, self._burst = shed, 0, True
        elif self._burst and self.pending * 4 < self.max_pending:
            self._quiet += 1
            if self._quiet >= QUIET_PROBES:
                self._burst = False
                self._burst_ended(now)
                if self._after_burst is not None:
                    self._after_burst()
        if not self._burst:
            self._calm = dict(self.counts)

    def _burst_ended(self, now: float) -> None:
        started, before = self._burst_start
        c = {k: v - before.get(k, 0) for k, v in self.counts.items()}
        log.warning("%s: stopped shedding after %.1f s: %d requests refused (%d over the pending "
                    "bound, %d over the queue delay target), %d admitted meanwhile", self.name,
                    now - started, c["shed_pending"] + c["shed_delay"], c["shed_pending"],
                    c["shed_delay"], c["admitted"])

    def admit(self) -> bool:
        """Take a slot for a starting request, or say it must be refused (and count why)."""
        if self.pending >= self.max_pending:
            self.counts["shed_pending"] += 1
            return False
        if self._late >= SUSTAINED_PROBES and self.pending >= LAG_SHEDS_FROM:
            self.counts["shed_delay"] += 1
            return False
        self.pending += 1
        self.counts["admitted"] += 1
        return True

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` behind the door: refused requests never reach it."""

        async def door(request: web.BaseRequest) -> web.StreamResponse:
            if not self.admit():
                resp = web.Response(status=503, body=_BODY, headers=_HEADERS)
                if not request.content.is_eof():  # never wait for a body that will not be read
                    resp.force_close()
                    close_after = getattr(request.protocol, "close_after_answer", None)
                    if close_after is not None:
                        close_after()
                return resp
            try:
                return await handler(request)
            finally:
                self.pending -= 1

        return door
