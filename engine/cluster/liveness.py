"""What ``smsroute run`` concludes from a child's beats: alive, hung, or to be killed.

Each spawn of a worker or edge gets a :class:`Liveness`. Its stdout reader (``engine.cluster.local``)
calls :meth:`Liveness.beat` for the ready line and every beat line (``engine.cluster.heartbeat``); the
supervisor thread calls :meth:`Liveness.judge` every round. Silent for ``hung_after`` seconds the child is
*hung* (``/readyz`` 503 naming it, ``hung`` in ``/v1/stats`` and ``smsroute_worker_hung``); a beat makes it
*alive* again (a SIGCONT, a stall that ended); silent for ``kill_after`` it is to be *killed* (SIGKILL) and
restarted like a crashed child, which resumes its accepted messages from its stores.

The deadlines are ``[engine] child_hung_after_seconds`` (10 s) and ``child_kill_after_seconds`` (30 s):
a child beats every second (:attr:`Deadlines.beat_every`), so a busy machine that delays a few beats
does not make it hung, and a stall must last three times as long as that before a restart throws the
child's connections and in-flight work away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALIVE, HUNG, KILL = "alive", "hung", "killed"


@dataclass(frozen=True)
class Deadlines:
    hung_after: float
    kill_after: float

    @property
    def beat_every(self) -> float:
        """How often a child beats: five beats (at most a second apart) fit in ``hung_after``."""
        return min(1.0, self.hung_after / 5)

    @classmethod
    def of(cls, settings: Any) -> Deadlines:
        return cls(settings.engine.child_hung_after_seconds, settings.engine.child_kill_after_seconds)


class Liveness:
    """One spawn of a child: when it last beat (set by its stdout reader thread) and the supervisor's
    verdict (its own thread). Nothing is judged before the child's ready line: a child hung while it
    starts is the start deadline's (``READY_TIMEOUT_S``)."""

    def __init__(self) -> None:
        self.last_beat: float | None = None  # time.monotonic() of the ready line or the last beat
        self.state = ALIVE
        self.full_stores: tuple[str, ...] = ()  # what the last beat named full (engine.cluster.heartbeat)
        self.protocol: int | None = None  # what its ready line named (engine.cluster.protocol)

    def beat(self, now: float, full_stores: tuple[str, ...] = ()) -> None:
        self.last_beat = now
        self.full_stores = full_stores

    def silent_for(self, now: float) -> float | None:
        """Seconds since the last beat (None before the ready line)."""
        return None if self.last_beat is None else max(0.0, now - self.last_beat)

    def excuse(self, now: float) -> None:
        """The supervisor could not watch until ``now`` (its own process was stopped or starved): the
        silence it did not see is not held against the child, which gets a full deadline from now."""
        if self.last_beat is not None:
            self.last_beat = max(self.last_beat, now)

    def judge(self, now: float, deadlines: Deadlines) -> str | None:
        """The new state (``ALIVE``, ``HUNG`` or ``KILL``) if it changed at ``now``, else None. ``KILL``
        is final: the caller kills this spawn, and the next spawn has a new :class:`Liveness`."""
        silent = self.silent_for(now)
        if silent is None or self.state == KILL:
            return None
        new = KILL if silent >= deadlines.kill_after else HUNG if silent >= deadlines.hung_after else ALIVE
        if new == self.state:
            return None
        self.state = new
        return new
