"""A request an HTTP edge's limiter refuses while the key's lease is on its way waits for that lease
(``LeasedLimiter.recheck_after_lease``, as the customer middleware calls it), on real threads and a real
event loop: a lease slower than the key's next requests no longer answers them 429 far below the limit,
and a lease that does not come back in time does not hold the request longer than the wait."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from engine.cluster.edge_engine import LeasedLimiter
from engine.http.ratelimit import Gcra, Grant

BURST = 40


class _GatedCore:
    """The core's count (a real ``Gcra``), whose lease answers wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gcra = Gcra(1e-6, BURST)
        self.gate = threading.Event()
        http = type("H", (), {"rate_limit_burst": BURST, "rate_limit_per_second": 1e-6})
        self.settings = type("S", (), {"http": http})

    def lease_block(self, key: str, n: int, give_back: list, split: int, held: int) -> Grant:
        assert self.gate.wait(10)
        return self.gcra.lease_block(key, n, give_back=give_back, split=split, held=held)


async def _request(limiter: LeasedLimiter, key: str) -> bool:
    """What ``engine.http.middleware.customer_middleware`` does with the limiter."""
    decision = limiter.check(key)
    if not decision.allowed:
        decision = await limiter.recheck_after_lease(key, decision)
    return decision.allowed


def test_requests_that_outrun_the_lease_wait_for_it_and_are_admitted(monkeypatch):
    """30 requests at once on a new key (burst 40, one edge): 20 go through on the first block's
    credit, the rest find the edge dry with its lease on its way. Before, those 10 were refused 429 with
    the whole burst still at the core; now they wait for the lease and are admitted."""
    monkeypatch.setattr(LeasedLimiter, "LEASE_WAIT_S", 10.0)  # (a loaded machine's threads: no race)
    core = _GatedCore()
    with ThreadPoolExecutor(2) as pool:
        limiter = LeasedLimiter(core, pool, edges=1)

        async def burst() -> list[bool]:
            requests = [asyncio.ensure_future(_request(limiter, "k")) for _ in range(30)]
            await asyncio.sleep(0)  # (each request's check ran: 20 answered, 10 waiting)
            assert sum(r.done() for r in requests) == 20
            core.gate.set()
            return await asyncio.gather(*requests)

        assert asyncio.run(burst()) == [True] * 30
    assert core.gcra.peek("k").remaining <= BURST - 30


def test_a_lease_that_does_not_come_back_in_time_refuses_after_the_wait():
    """The core does not answer the lease: a request beyond the credit is refused (429, as before)
    once ``LEASE_WAIT_S`` is over, not held until the lease's own timeout."""
    core = _GatedCore()
    with ThreadPoolExecutor(2) as pool:
        limiter = LeasedLimiter(core, pool, edges=1)

        async def one_too_many() -> tuple[bool, float]:
            for _ in range(limiter.lease):  # the first block's credit
                assert await _request(limiter, "k")
            started = time.monotonic()
            allowed = await _request(limiter, "k")
            return allowed, time.monotonic() - started

        try:
            allowed, waited = asyncio.run(one_too_many())
        finally:
            core.gate.set()
    assert not allowed
    assert LeasedLimiter.LEASE_WAIT_S * 0.9 <= waited < 1.0
