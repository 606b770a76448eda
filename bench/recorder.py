"""Where the bench's measurements meet: every send, acceptance, carrier ack and final status.

Why a separate collector: the engine calls back on its own threads, in any order (with a zero-latency
carrier the final status of a message can arrive before the host thread has even seen its acceptance). The
callbacks here only append a tuple to a deque (atomic under the GIL, ~0.1 µs); one collector thread drains
it, matches events to sends by message id, and records latencies into per-corridor HdrHistograms. So the
engine's threads pay almost nothing for being measured, and the record never holds more than the messages
in flight.

Every latency is measured from the message's *intended* send time (its slot in the offered schedule), not
from when the bench got round to calling ``submit``: if anything stalls, the stall is in the figures.
Messages sent during warm-up are tracked (they still hold in-flight slots) but not recorded.
"""

from __future__ import annotations

import collections
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.histogram import LatencyHistogram

FINAL_STATUSES = frozenset({"delivered", "rejected", "failed", "expired"})
DRAIN_INTERVAL_S = 0.005
EARLY_HOLD_S = 60.0  # events for a message id not (yet) accepted are held this long
LATE_ACK_HOLD_S = 5.0  # a final without its carrier ack waits this long for a late (forwarded) ack


@dataclass
class CorridorStats:
    """Everything measured for one (pop, country) corridor."""

    pop: str
    country: str
    accepted: LatencyHistogram = field(default_factory=LatencyHistogram)
    carrier_ack: LatencyHistogram = field(default_factory=LatencyHistogram)
    final: LatencyHistogram = field(default_factory=LatencyHistogram)
    outcomes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    sent: int = 0

    @property
    def finals(self) -> int:
        return sum(self.outcomes.values())


class _Pending:
    __slots__ = ("intended", "country", "measured", "key", "acked")

    def __init__(self, intended: float, country: str, measured: bool, key: tuple[str, str]) -> None:
        self.intended = intended
        self.country = country
        self.measured = measured
        self.key = key
        self.acked = False


class Recorder:
    """Collects events from any thread; one collector thread turns them into :class:`CorridorStats`.

    ``measure_from`` (a ``time.perf_counter`` value): messages intended before it are warm-up.
    ``release`` is called once per message that has left flight (final status or submit error), from the
    collector thread, so the sender's in-flight gate opens again. ``clock`` must be the clock the
    intended times come from (``time.perf_counter``; tests pass a fake).
    """

    def __init__(
        self, measure_from: float, release: Any = None, clock: Any = time.perf_counter
    ) -> None:
        self.measure_from = measure_from
        self._clock = clock
        self._release = release or (lambda: None)
        self._events: collections.deque[tuple] = collections.deque()
        self._pending: dict[str, _Pending] = {}
        self._early: dict[str, tuple[float, list[tuple]]] = {}
        self._unacked_finals: dict[str, tuple[float, _Pending]] = {}  # insertion (= time) order
        self.stats: dict[tuple[str, str], CorridorStats] = {}
        self.in_flight = 0
        self.left_flight = 0  # final or failed at submit, warm-up included
        self.first_measured_final = 0.0
        self.last_measured_final = 0.0
        self.measured_finals = 0
        # the bench's own lag: actual submit call minus intended time
        self.send_lag = LatencyHistogram()
        self.window_final = LatencyHistogram()  # final latencies since the last take_window_final()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-recorder", daemon=True)

    # --- called from any thread (must stay cheap) -------------------------------------------------------

    def sent(self, pop: str, country: str, intended: float) -> None:
        """The bench is about to call ``submit`` for a message intended at ``intended`` (host thread)."""
        self._events.append(("sent", pop, country, intended, self._clock()))

    def accepted(self, message_id: str, pop: str, country: str, intended: float) -> None:
        self._events.append(("acc", message_id, pop, country, intended, self._clock()))

    def submit_failed(self, pop: str, country: str, intended: float, code: str) -> None:
        self._events.append(("err", pop, country, intended, code, self._clock()))

    def carrier_ack(self, message_id: str, at: float = 0.0) -> None:
        self._events.append(("ack", message_id, self._clock()))

    def carrier_ack_at(self, message_id: str, at: float) -> None:
        """A carrier ack seen at ``at`` on this recorder's clock (forwarded from another process)."""
        self._events.append(("ack", message_id, at))

    def status(self, message_id: str, status: str, pop: str, country: str) -> None:
        if status in FINAL_STATUSES:
            self._events.append(("fin", message_id, status, pop, country, self._clock()))

    def on_status_item(self, item: Any) -> None:
        """Adapter for ``engine.on_status``: takes an ``engine.messages.StatusItem``."""
        if item.status in FINAL_STATUSES:
            self._events.append(
                ("fin", item.message_id, item.status, item.pop, item.country, self._clock())
            )

    # --- the collector --------------------------------------------------------------------------------

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the collector after draining everything already appended."""
        self._stop.set()
        self._thread.join()
        self.drain()

    def _run(self) -> None:
        next_prune = self._clock() + EARLY_HOLD_S
        while not self._stop.is_set():
            if not self.drain():
                self._stop.wait(DRAIN_INTERVAL_S)
            if self._unacked_finals:
                self.prune_unacked()
            if self._early and self._clock() > next_prune:
                self.prune_early()
                next_prune = self._clock() + EARLY_HOLD_S

    def drain(self) -> int:
        """Process every queued event; return how many (the collector thread calls this)."""
        events, n = self._events, 0
        while events:
            ev = events.popleft()
            n += 1
            kind = ev[0]
            if kind == "fin":
                self._on_final(ev)
            elif kind == "ack":
                self._on_ack(ev)
            elif kind == "acc":
                self._on_accepted(ev)
            elif kind == "sent":
                self._on_sent(ev)
            elif kind == "err":
                self._on_error(ev)
        if n:
            with self._changed:
                self._changed.notify_all()
        return n

    def wait_left_flight(self, count: int, timeout: float) -> bool:
        """Block until ``count`` messages have left flight (final or failed); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.left_flight >= count, timeout)

    def take_window_final(self) -> LatencyHistogram:
        """The final latencies recorded since the previous call (for time series); starts a new one."""
        window, self.window_final = self.window_final, LatencyHistogram()
        return window

    def unfinished(self) -> list[tuple[str, str]]:
        """Corridors of accepted messages still without a final status."""
        return [p.key for p in self._pending.values()]

    def record_unfinished(self, code: str = "no_final_status") -> int:
        """Count every accepted message still without a final status as an error; return how many."""
        for p in self._pending.values():
            if p.measured:
                self._corridor(*p.key).errors[code] += 1
        n = len(self._pending)
        self._pending.clear()
        return n

    def _corridor(self, pop: str, country: str) -> CorridorStats:
        key = (pop, country)
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = CorridorStats(pop, country)
        return stats

    def _on_sent(self, ev: tuple) -> None:
        _, pop, country, intended, now = ev
        self.in_flight += 1
        if intended >= self.measure_from:
            self._corridor(pop, country).sent += 1
            self.send_lag.record_seconds(now - intended)

    def _on_accepted(self, ev: tuple) -> None:
        _, mid, pop, country, intended, now = ev
        measured = intended >= self.measure_from
        p = _Pending(intended, country, measured, (pop, country))
        if measured:
            self._corridor(pop, country).accepted.record_seconds(now - intended)
        self._pending[mid] = p
        early = self._early.pop(mid, None)
        if early:
            for ev in sorted(early[1], key=lambda e: e[0] != "ack"):  # the ack before the final
                self._on_ack(ev) if ev[0] == "ack" else self._on_final(ev)

    def _on_ack(self, ev: tuple) -> None:
        mid, now = ev[1], ev[2]
        p = self._pending.get(mid)
        if p is None:
            late = self._unacked_finals.pop(mid, None)
            if late is None:
                self._hold_early(mid, ev)
                return
            p = late[1]
        p.acked = True
        if p.measured:
            self._corridor(*p.key).carrier_ack.record_seconds(now - p.intended)

    def _on_final(self, ev: tuple) -> None:
        _, mid, status, pop, country, now = ev
        p = self._pending.pop(mid, None)
        if p is None:
            self._hold_early(mid, ev)
            return
        self._left_flight()
        if not p.acked:  # its ack may still be on the way (forwarded from another process)
            self._unacked_finals[mid] = (self._clock(), p)
        if p.measured:
            stats = self._corridor(pop, country)
            stats.final.record_seconds(now - p.intended)
            self.window_final.record_seconds(now - p.intended)
            stats.outcomes[status] += 1
            self.measured_finals += 1
            if not self.first_measured_final:
                self.first_measured_final = now
            self.last_measured_final = now

    def _hold_early(self, mid: str, ev: tuple) -> None:
        held = self._early.get(mid)
        if held is None:
            self._early[mid] = (self._clock(), [ev])
        else:
            held[1].append(ev)

    def prune_unacked(self, older_than_s: float = LATE_ACK_HOLD_S) -> None:
        """Stop waiting for the carrier acks of finals older than ``older_than_s`` (oldest first)."""
        cutoff = self._clock() - older_than_s
        held = self._unacked_finals
        while held:
            mid, (seen, _) = next(iter(held.items()))
            if seen >= cutoff:
                break
            del held[mid]

    def prune_early(self, older_than_s: float = EARLY_HOLD_S) -> int:
        """Forget events for ids never accepted (another account's message, a stray)."""
        cutoff = self._clock() - older_than_s
        stale = [mid for mid, (seen, _) in self._early.items() if seen < cutoff]
        for mid in stale:
            del self._early[mid]
        return len(stale)

    def _on_error(self, ev: tuple) -> None:
        _, pop, country, intended, code, _now = ev
        if intended >= self.measure_from:
            self._corridor(pop, country).errors[code] += 1
        self._left_flight()

    def _left_flight(self) -> None:
        self.in_flight -= 1
        self.left_flight += 1
        self._release()
