"""Admission: refuse at the door what the carriers cannot take within the horizon.

Accepting a message is a promise to try it until its validity ends, so a POP accepts a message only when the
carriers of its route can take it soon: per route (its set of carriers), the messages accepted but not yet
acknowledged by a carrier (the *backlog*) must stay below ``admission_horizon_seconds`` x the carriers'
pace (:meth:`engine.delivery.carriers.CarrierBoard.capacity`). Beyond that a submit is refused before it is
accepted (``CarriersSaturated``: HTTP 503 with ``Retry-After``) instead of failing after it was accepted.

A message is always admitted when its route has no backlog, even if every candidate carrier is suspended or
disconnected: one message may always wait for a carrier (up to its validity). ``admission_horizon_seconds =
0`` turns this off (the in-flight limit still bounds everything).

Limits are cached per route and recomputed after each :meth:`refresh` (every tick, and when a carrier goes
up or down), so the check per message is two dict lookups and a comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.delivery.carriers import CarrierBoard


class Admission:
    def __init__(self, horizon_seconds: float, board: CarrierBoard) -> None:
        self.horizon = horizon_seconds
        self.board = board
        self.backlog: dict[str, int] = {}  # route key -> messages not yet acknowledged by a carrier
        self._limits: dict[str, float] = {}

    def admit(self, key: str, candidates: Sequence, now: float) -> bool:
        """May one more message of this route be accepted now?"""
        queued = self.backlog.get(key, 0)
        if queued == 0 or self.horizon <= 0:
            return True
        limit = self._limits.get(key)
        if limit is None:
            pace = sum(self.board.capacity(c.carrier, now) for c in candidates)
            limit = self._limits[key] = pace * self.horizon
        return queued < limit

    def add(self, key: str) -> None:
        self.backlog[key] = self.backlog.get(key, 0) + 1

    def remove(self, key: str) -> None:
        left = self.backlog.get(key, 0) - 1
        if left > 0:
            self.backlog[key] = left
        else:
            self.backlog.pop(key, None)

    def refresh(self) -> None:
        """Carrier paces or availability changed: recompute limits on their next use."""
        self._limits.clear()
