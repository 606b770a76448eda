"""The engine's one timer thread: it ``tell``s messages to actors when they fall due.

pykka has no timers, and a sleeping actor cannot receive messages, so every delayed action (retry backoff,
carrier latency, expiry ticks, sweeps) is a message scheduled here. The clock only ever calls
``ref.tell(raw)``: it never runs actor code itself.

Guarantees: a message is told no earlier than its due time and in due-time order; a message to an actor that
has stopped is dropped (``ActorDeadError`` is swallowed). Not guaranteed: exact timing under load.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka

log = logging.getLogger(__name__)


class Clock:
    """A heap of (due, seq, target, message) served by one daemon thread."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self.now = now
        self._heap: list[tuple[float, int, Any, Any]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="smsroute-clock", daemon=True)
        self._thread.start()

    def schedule(self, delay: float, target: Any, message: Any) -> None:
        """Call ``target.tell(message)`` after ``delay`` seconds (target: an ActorRef or anything with tell)."""
        due = self.now() + max(0.0, delay)
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._seq), target, message))
            if self._heap[0][0] == due:
                self._cond.notify()

    def every(self, interval: float, target: Any, make_message: Callable[[], Any]) -> None:
        """Tell ``make_message()`` to ``target`` every ``interval`` seconds until the clock stops."""
        repeater = _Repeater(self, interval, target, make_message)
        self.schedule(interval, repeater, None)

    def is_alive(self) -> bool:
        """True while its thread serves the heap: False once stopped, or once an error ended the thread
        (``now`` raised, say). Nothing is told any more then - no tick, retry or sweep - so the runtime
        lists it among its long-lived parts (``Runtime.actors_alive``)."""
        return self._thread.is_alive() and not self._stopped

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException:  # one line in the log; ``is_alive`` is False from now on (/readyz)
            log.exception("clock: its thread ended on an error; nothing is told any more")

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > self.now()):
                    timeout = self._heap[0][0] - self.now() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                due_items = []
                now = self.now()
                while self._heap and self._heap[0][0] <= now:
                    due_items.append(heapq.heappop(self._heap))
            for _, _, target, message in due_items:
                try:
                    target.tell(message)
                except pykka.ActorDeadError:
                    pass
                except Exception:  # a bug in a target must not kill the clock
                    log.exception("clock: delivering a scheduled message failed")


class _Repeater:
    def __init__(self, clock: Clock, interval: float, target: Any, make: Callable[[], Any]) -> None:
        self.clock, self.interval, self.target, self.make = clock, interval, target, make

    def tell(self, _message: Any) -> None:
        try:
            self.target.tell(self.make())
        except pykka.ActorDeadError:
            return  # the actor is gone: stop repeating
        self.clock.schedule(self.interval, self, None)
