"""What a POP knows about each of its carriers: up or down, cooling down, its window, and its pace.

* **Availability.** A carrier is unavailable while its link reports down (every SMPP bind down) or it is
  suspended; routing skips it at once and prefers the next candidate. Messages whose every candidate is
  unavailable are parked by the POP until one comes back (``CarrierStateChanged``).
* **Cool-down.** A carrier that throttles (``throttled``: SMPP 0x58 or 0x14) is avoided for a short while
  that doubles with each throttle in a row (20 ms up to 1 s) and resets with its next acknowledged message.
  If every usable candidate is cooling down, the message waits for the first to be usable again.
* **Window.** At most ``window`` x ``binds`` attempts are outstanding per carrier; the rest wait in order in
  the carrier's queue here (``waiting``) and are handed over as slots free up.
* **Pace** (for :mod:`engine.delivery.admission`): how many messages per second a carrier can take. Its
  configured ``throughput`` (x ``binds``) when it has one; while the carrier pushes back (throttling, or
  the POP's queue for it is not empty) for long enough to measure, the measured rate of acknowledged
  messages. A carrier that is suspended, or has been down longer than its ``bind_wait_seconds``, can take
  nothing; a carrier only reconnecting keeps its pace.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Container, Sequence

COOLDOWN_BASE_S = 0.02
COOLDOWN_MAX_S = 1.0
PRESSURE_S = 2.0  # a sign of pushback keeps a carrier "under pressure" this long
SETTLE_S = 1.0  # pressure must last this long before the measured rate replaces the configured one
RATE_ALPHA = 0.2  # weight of the newest sample in the measured rate (sampled every tick)
NOT_STARTED_RETRY_S = 0.1  # a candidate whose actor is not running yet (engine start) is tried again


class CarrierLink:
    """One carrier as its POP sees it."""

    __slots__ = ("name", "window", "configured_rate", "attempt_timeout", "down_grace", "available",
                 "suspended", "down_since", "cooldown_until", "streak", "outstanding", "waiting",
                 "acked", "rate", "pressure_since", "pressure_until")

    def __init__(self, name: str, kind: str, options, resp_timeout: float) -> None:
        binds = getattr(options, "binds", 1)  # SMPP: a window and a throughput per bind
        self.name = name
        self.window = options.window * binds
        self.configured_rate = options.throughput * binds
        if kind == "smpp":
            # the connector answers every part within its own timeout plus the wait for a bind
            self.attempt_timeout = max(resp_timeout,
                                       options.resp_timeout_seconds + options.bind_wait_seconds)
            self.down_grace = options.bind_wait_seconds
        else:
            self.attempt_timeout = resp_timeout
            self.down_grace = 0.0
        self.available = True
        self.suspended = False
        self.down_since = 0.0
        self.cooldown_until = 0.0
        self.streak = 0  # throttles in a row
        self.outstanding = 0  # attempts handed over and not yet over
        self.waiting: deque[str] = deque()  # message ids waiting for a window slot
        self.acked = 0  # messages acknowledged since the last rate sample
        self.rate = 0.0  # measured acknowledged messages per second
        self.pressure_since = 0.0
        self.pressure_until = 0.0


class CarrierBoard:
    """Every carrier of one POP (monotonic clock seconds throughout)."""

    def __init__(self, carriers: dict, resp_timeout: float) -> None:
        self.links = {name: CarrierLink(name, c.kind, c.options, resp_timeout)
                      for name, c in carriers.items()}
        self._sampled_at = 0.0

    def get(self, name: str) -> CarrierLink | None:
        return self.links.get(name)

    # --- choosing ----------------------------------------------------------------------------------

    def pick(self, candidates: Sequence, start: int, now: float,
             running: Container[str]) -> tuple[int, float]:
        """The candidate to use, from index ``start`` on: ``(index, 0.0)``. Otherwise ``(-1, wait)``:
        every usable candidate is cooling down (or its actor is not ``running`` yet) for ``wait`` more
        seconds; or ``(-1, 0.0)``: every candidate is down or suspended."""
        n = len(candidates)
        soonest = math.inf
        links = self.links
        for i in range(n):
            index = (start + i) % n
            name = candidates[index].carrier
            link = links.get(name)
            if link is None or name not in running:
                soonest = min(soonest, NOT_STARTED_RETRY_S)
                continue
            if not link.available:
                continue
            if link.cooldown_until <= now:
                return index, 0.0
            soonest = min(soonest, link.cooldown_until - now)
        return -1, (0.0 if soonest == math.inf else soonest)

    # --- what carriers say -------------------------------------------------------------------------

    def set_available(self, name: str, available: bool, reason: str, now: float) -> None:
        link = self.links.get(name)
        if link is None:
            return
        if link.available and not available:
            link.down_since = now
        link.available = available
        link.suspended = not available and reason == "suspended"

    def throttled(self, name: str, now: float) -> None:
        """The carrier said "slow down": route around it for a while, longer each time in a row."""
        link = self.links.get(name)
        if link is None:
            return
        link.streak += 1
        link.cooldown_until = now + min(COOLDOWN_MAX_S, COOLDOWN_BASE_S * 2 ** min(link.streak, 10))
        self._pressed(link, now)

    def acknowledged(self, name: str) -> None:
        """The carrier acknowledged every part of a message."""
        link = self.links.get(name)
        if link is not None:
            link.streak = 0
            link.acked += 1

    # --- the window --------------------------------------------------------------------------------

    def has_room(self, name: str) -> bool:
        link = self.links[name]
        return link.outstanding < link.window

    def take(self, name: str) -> None:
        self.links[name].outstanding += 1

    def release(self, name: str) -> None:
        link = self.links.get(name)
        if link is not None and link.outstanding > 0:
            link.outstanding -= 1

    def wait_for_slot(self, name: str, message_id: str, now: float) -> None:
        link = self.links[name]
        link.waiting.append(message_id)
        self._pressed(link, now)

    # --- pace --------------------------------------------------------------------------------------

    def sample(self, now: float) -> None:
        """Fold the acknowledgements since the last sample into each carrier's measured rate."""
        elapsed = now - self._sampled_at
        self._sampled_at = now
        if elapsed <= 0 or elapsed > 10:  # the first sample, or a long stall: start afresh
            for link in self.links.values():
                link.acked = 0
            return
        for link in self.links.values():
            current = link.acked / elapsed
            link.acked = 0
            link.rate = current if link.rate == 0 else link.rate + RATE_ALPHA * (current - link.rate)

    def capacity(self, name: str, now: float) -> float:
        """Messages per second the carrier can take now (``inf`` when nothing says otherwise)."""
        link = self.links.get(name)
        if link is None:
            return 0.0
        if not link.available and (link.suspended or now - link.down_since > link.down_grace):
            return 0.0
        if link.pressure_until > now and now - link.pressure_since >= SETTLE_S:
            return max(link.rate, 1.0)
        return link.configured_rate or math.inf

    def _pressed(self, link: CarrierLink, now: float) -> None:
        if link.pressure_until <= now:
            link.pressure_since = now
        link.pressure_until = now + PRESSURE_S
