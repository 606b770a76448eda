"""When a message is tried again, how long it waits first, and when the POP gives up on it.

Which answers use up ``max_attempts`` (``Delivery.failures``): only those where a carrier took the message
and answered it with a temporary error (``retry``: SMPP 0x08, 0x64, a ``generic_nack``) or never answered
it (the response timeout). Those are about the message, so they are bounded: after ``max_attempts`` of
them, or ``retry_window_seconds`` after the first, the message ends ``failed`` (``retries_exhausted``).

Answers that are about the carrier, not the message, are never counted: ``throttled`` (0x58, 0x14: the
carrier is busy), ``offline`` (no bind, a dropped connection, a suspended carrier) and ``withdrawn``. A
message waits those out - throttling and reconnects with a backoff, an outage parked until a carrier is
back - for as long as its validity lasts; then it ends ``failed`` with ``no_carrier_available`` or
``validity_elapsed_before_send``. So a burst or an outage slows messages down but never fails one early.

The backoff grows with every retry of a message, whatever its cause, with full jitter:
``uniform(0, min(retry_cap_ms, retry_base_ms * 2 ** retries))``.
"""

from __future__ import annotations

import random

from engine.delivery.attempt import Delivery


class RetryPolicy:
    def __init__(self, limits, rng: random.Random | None = None) -> None:
        self.max_attempts = limits.max_attempts
        self.window = limits.retry_window_seconds
        self.base_ms = limits.retry_base_ms
        self.cap_ms = limits.retry_cap_ms
        self.rng = rng or random.Random()

    def exhausted(self, f: Delivery, now: float) -> bool:
        """True when the carrier errors counted against ``f`` leave no attempt (``now``: clock seconds)."""
        if not f.failures:
            return False
        if not f.first_failure_at:
            f.first_failure_at = now
        return f.failures >= self.max_attempts or now - f.first_failure_at > self.window

    def backoff(self, f: Delivery) -> float:
        """Seconds before the next attempt of ``f`` (and one more step of its backoff)."""
        f.retries += 1
        cap = min(self.cap_ms, self.base_ms * 2 ** min(f.retries, 30))
        return self.rng.uniform(0, cap) / 1000.0
