"""Per-key rate limiting with GCRA (the generic cell rate algorithm).

GCRA keeps one number per key, the "theoretical arrival time" (TAT), and decides exactly like a token bucket
of ``burst`` tokens refilled at ``rate`` per second, with no refill job: a request at ``now`` is allowed when
``max(TAT, now) - now <= tau`` where ``tau = (burst - 1) * T`` and ``T = 1 / rate``; an allowed request moves
TAT to ``max(TAT, now) + T``. The decision also yields the values of the ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` headers and, when refused, ``Retry-After``.

Memory is bounded: a key whose TAT is in the past is equivalent to an absent key, so such keys are purged
when the table reaches ``max_keys`` (and, if that is not enough, the oldest entries go first).

HTTP edges lease blocks of a key's tokens (:meth:`Gcra.lease_block`) and give back the ones they did not
spend in time (``give_back``). A given-back token is credited only while the count still holds it: a
lease's tokens are the segment of the TAT axis ending at the ``end`` the lease answered, the count drains
from the front of that axis as time passes, and every credit since the lease (``shift``) may have moved
the segment earlier; so ``min(tokens, (end - shift_since - now) / T)`` of them are credited, never more
than the key's count still holds of that lease - no token is counted back twice, whatever the order and
the delay of the give-backs.

Not thread-safe: one instance belongs to one asyncio loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple


class Decision(NamedTuple):
    """The outcome of one :meth:`Gcra.check`."""

    allowed: bool
    limit: int  # the burst
    remaining: int  # requests that would still be allowed right now
    reset_s: float  # seconds until the bucket is full again
    retry_after_s: float  # seconds until one request would be allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers (and ``Retry-After`` when refused), whole seconds rounded up."""
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset_s)),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


class Lease(NamedTuple):
    """What :meth:`Gcra.lease` answers an HTTP edge (``engine.cluster.edge_engine.LeasedLimiter``)."""

    granted: int
    retry_after_s: float  # seconds until one token could be granted (0 while there is room)
    reset_s: float  # seconds until the key's bucket is full again, the tokens just granted counted


class Grant(NamedTuple):
    """What :meth:`Gcra.lease_block` answers: a :class:`Lease` and the stamp the edge hands back with
    the tokens it gives back (``end``: the key's TAT right after this grant, on this limiter's clock;
    ``shift``: the seconds credited back on the key before it)."""

    granted: int
    retry_after_s: float
    reset_s: float
    end: float
    shift: float


class Gcra:
    """Rate limiter: ``burst`` requests at once, ``rate`` per second sustained, per key."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._t = 1.0 / rate
        self._tau = (burst - 1) * self._t
        self._clock = clock
        self._max_keys = max_keys
        self._tat: dict[str, float] = {}
        self._shift: dict[str, float] = {}  # seconds credited back per key (give_back), only when any

    def check(self, key: str, now: float | None = None) -> Decision:
        """Decide one request for ``key`` and record it if allowed. (Every request of the customer API
        comes here: written without calls that are not needed, the same arithmetic as :meth:`peek`.)"""
        if now is None:
            now = self._clock()
        tats = self._tat
        tat = tats.get(key, now)
        if tat < now:
            tat = now
        if tat - now > self._tau:
            return Decision(False, self.burst, 0, tat - now, tat - self._tau - now)
        new_tat = tat + self._t
        if key not in tats and len(tats) >= self._max_keys:
            self._purge(now)
        tats[key] = new_tat
        remaining = int((self._tau - (new_tat - now)) // self._t) + 1
        return Decision(True, self.burst, remaining if remaining > 0 else 0, new_tat - now, 0.0)

    def peek(self, key: str, now: float | None = None) -> Decision:
        """Whether a request for ``key`` would be allowed now, without recording one (for limits that
        count only some requests, e.g. failed logins)."""
        now = self._clock() if now is None else now
        tat = max(self._tat.get(key, now), now)
        if tat - now > self._tau:
            return Decision(False, self.burst, 0, tat - now, tat - self._tau - now)
        remaining = int((self._tau - (tat - now)) // self._t) + 1
        return Decision(True, self.burst, max(0, remaining), tat - now, 0.0)

    def lease(self, key: str, n: int, now: float | None = None) -> Lease:
        """Take up to ``n`` requests' worth for ``key`` at once (an HTTP edge's block of tokens): how
        many were granted, when none, seconds until one would be, and the key's count after the grant
        (``reset_s``: seconds until its bucket is full again; it counts the granted tokens as used).
        ``n == 0`` only reads the count."""
        now = self._clock() if now is None else now
        tat = max(self._tat.get(key, now), now)
        room = int((self._tau - (tat - now)) // self._t) + 1 if tat - now <= self._tau else 0
        granted = max(0, min(n, room))
        if granted:
            tat += granted * self._t
            self._remember(key, tat, now)
        retry = tat - self._tau - now if not room else 0.0
        return Lease(granted, retry, tat - now)

    def lease_block(self, key: str, n: int, *, give_back: Iterable[Sequence[float]] = (),
                    split: int = 1, held: int = 0, now: float | None = None) -> Grant:
        """An HTTP edge's exchange with the count: first the tokens it gives back (``[tokens, end,
        shift]`` each, ``end``/``shift`` from the :class:`Grant` that leased them; credited within
        the bound of the module docstring), then up to ``n`` new ones - but no more than bring the
        edge (which holds ``held`` unspent) to ``ceil((room + held) / split)``: near the key's limit
        ``split`` edges share what is left, instead of the first to ask taking it all while the key's
        requests on the others are refused."""
        now = self._clock() if now is None else now
        for tokens, end, shift in give_back:
            self._credit(key, float(tokens), float(end), float(shift), now)
        tat = max(self._tat.get(key, now), now)
        room = int((self._tau - (tat - now)) // self._t) + 1 if tat - now <= self._tau else 0
        held = max(0, held)
        fair = -(-(room + held) // max(1, split)) - held
        granted = max(0, min(n, room, fair))
        if granted:
            tat += granted * self._t
            self._remember(key, tat, now)
        retry = tat - self._tau - now if not room else 0.0
        return Grant(granted, retry, tat - now, tat, self._shift.get(key, 0.0))

    def _credit(self, key: str, tokens: float, end: float, shift: float, now: float) -> None:
        tat = self._tat.get(key)
        if tat is None or tat <= now or tokens <= 0:
            return  # the bucket is full: every leased token is back already
        shifted = self._shift.get(key, 0.0)
        credit = min(tokens * self._t, end - max(0.0, shifted - shift) - now, tat - now)
        if credit > 0:
            self._tat[key] = tat - credit
            self._shift[key] = shifted + credit

    def __len__(self) -> int:
        return len(self._tat)

    def _remember(self, key: str, tat: float, now: float) -> None:
        if key not in self._tat and len(self._tat) >= self._max_keys:
            self._purge(now)
        self._tat[key] = tat

    def _purge(self, now: float) -> None:
        for k in [k for k, v in self._tat.items() if v <= now]:
            del self._tat[k]
        while len(self._tat) >= self._max_keys:  # all still active: drop the oldest inserted
            del self._tat[next(iter(self._tat))]
        # a key gone from the table has none of its leases' tokens counted any more (a full bucket), so
        # a give-back finds it absent and credits nothing: its shift is not needed. (A key dropped while
        # still active - over max_keys - loses its count anyway; a give-back of a lease from before may
        # then credit that lease's tokens against the key's new count once: no worse than the loss.)
        for k in [k for k in self._shift if k not in self._tat]:
            del self._shift[k]
