"""The open-loop driver: send a workload at its intended times and measure one step.

Why open loop: a closed-loop client (send, wait, send) slows down exactly when the engine does, so it hides
stalls ("coordinated omission"). Here every message has an intended send time from the schedule (fixed
spacing or Poisson), the driver never sends early, and every latency is measured from the intended time.
When the in-flight cap is reached the driver waits — and that wait is in the latency too.

``rate=None`` is the throughput mode ("as fast as the in-flight cap allows"): intended time = the moment
the gate admits the message, so latency there is engine latency under full load.

A :class:`Target` is anything that can submit one message and report back to the recorder: the embedded
engine, the HTTP API, or a fake in tests.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.recorder import CorridorStats, Recorder
from bench.traffic import Planned, Workload

START_DELAY_S = 0.02  # the first intended time is this far after the driver starts


class Target(Protocol):
    """Submits one message; must end with exactly one ``recorder.accepted`` or ``submit_failed``."""

    def submit(
        self, recorder: Recorder, planned: Planned, pop: str, country: str, intended: float
    ) -> None: ...


@dataclass
class StepResult:
    """What one open-loop step measured."""

    offered_rate: float | None  # None: as fast as the in-flight cap allows
    duration_s: float  # intended send window after warm-up
    sent: int  # measured sends (warm-up excluded)
    finals: int  # measured messages that reached a final status
    elapsed_s: float  # from the end of warm-up to the last measured final status
    cpu_s: float  # process CPU time (all threads) over the same span
    peak_rss_mb: float
    corridors: dict[tuple[str, str], CorridorStats]
    send_lag: Any  # LatencyHistogram of (actual - intended) send times
    unfinished: int = 0
    all_sent: int = 0  # warm-up included
    stalled: bool = False  # the in-flight gate stayed shut for a whole drain timeout
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def messages_per_second(self) -> float:
        return self.finals / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def cpu_s_per_1000(self) -> float:
        return self.cpu_s / self.finals * 1000 if self.finals else 0.0

    @property
    def errors(self) -> int:
        return sum(sum(c.errors.values()) for c in self.corridors.values())


def peak_rss_mb() -> float:
    """The process's peak resident set size so far, in MB (Linux reports ``ru_maxrss`` in KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_breakdown_mb(pid: int | str = "self") -> dict[str, float]:
    """Resident memory of a process now, in MB: ``rss`` = ``anon`` (heap: what leaks) + ``file``
    (mapped files, e.g. LMDB pages touched: grows with the data kept) + ``shmem``."""
    out = {"rss": 0.0, "anon": 0.0, "file": 0.0, "shmem": 0.0}
    names = {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key = names.get(line.split(":", 1)[0] + ":")
                if key:
                    out[key] = round(int(line.split()[1]) / 1024.0, 2)
    except (OSError, ValueError, IndexError):
        out["rss"] = out["anon"] = peak_rss_mb()
    return out


def run_step(
    target: Target,
    workload: Workload,
    *,
    rate: float | None,
    duration_s: float,
    warmup_s: float,
    arrival: str,
    max_in_flight: int,
    drain_timeout_s: float,
    bind: Callable[[Recorder | None], None],
    messages: int | None = None,
    on_tick: Callable[[Recorder, float], None] | None = None,
    cpu_clock: Callable[[], float] = time.process_time,
    rss_peak: Callable[[], float] = peak_rss_mb,
    settle: Callable[[], None] | None = None,
) -> StepResult:
    """Send one step of the workload and wait for its final statuses.

    Paced (``rate`` given): messages due in ``warmup_s + duration_s`` at ``rate``, the first ``warmup_s``
    unmeasured. Throughput mode (``rate=None``): ``messages`` measured messages (default: ``duration_s``
    worth at 10k/s) after ``messages // 10`` warm-up ones, each sent as soon as the in-flight gate admits it.
    ``bind(recorder)`` points the engine's callbacks at this step's recorder (``bind(None)`` after).
    ``on_tick(recorder, now)`` is called about every 0.2 s from the sending thread (progress, RSS samples).
    ``cpu_clock`` / ``rss_peak`` measure the engine's cost (defaults: this process); ``settle()`` runs
    after the drain, before the recorder stops (to flush events forwarded from another process).
    """
    paced = rate is not None
    gate = Slots(max_in_flight, wake_at=1 if paced else max(1, max_in_flight // 16))
    warmup_count = 0
    workload.reserve(messages_in_step(rate, duration_s, warmup_s, messages))
    if paced:
        plan: Iterator[Planned] = workload.schedule(rate, warmup_s + duration_s, arrival)
    else:
        measured = messages if messages is not None else int(duration_s * 10_000)
        warmup_count = measured // 10
        plan = (workload.pick(0.0) for _ in range(warmup_count + measured))
    t0 = time.perf_counter() + START_DELAY_S  # after the numbers are prepared
    measure_from = t0 + warmup_s if paced else float("inf")
    recorder = Recorder(measure_from=measure_from, release=gate.release).start()
    bind(recorder)
    pacer = _Pacer(target, workload, recorder, gate, drain_timeout_s, on_tick, cpu_clock)
    try:
        pacer.send(plan, t0, paced, warmup_count)
        drained = recorder.wait_left_flight(pacer.sent, drain_timeout_s)
        cpu_s = cpu_clock() - pacer.cpu_at_measure_start
        if settle is not None:
            settle()
    finally:
        bind(None)
        recorder.stop()
    unfinished = 0 if drained else recorder.record_unfinished()
    end = recorder.last_measured_final or time.perf_counter()
    return StepResult(
        offered_rate=rate,
        duration_s=duration_s,
        sent=sum(c.sent for c in recorder.stats.values()),
        finals=recorder.measured_finals,
        elapsed_s=max(0.0, end - recorder.measure_from) if pacer.measuring else 0.0,
        cpu_s=cpu_s,
        peak_rss_mb=rss_peak(),
        corridors=recorder.stats,
        send_lag=recorder.send_lag,
        unfinished=unfinished,
        all_sent=pacer.sent,
        stalled=pacer.stalled,
    )


def messages_in_step(rate: float | None, duration_s: float, warmup_s: float,
                     messages: int | None) -> int:
    """About how many messages one step sends (what :meth:`Workload.reserve` prepares numbers for)."""
    if rate is not None:
        return int(rate * (warmup_s + duration_s) * 1.05) + 16
    measured = messages if messages is not None else int(duration_s * 10_000)
    return measured + measured // 10


class Slots:
    """The bench's own in-flight cap: the sender takes slots, the recorder gives one back per message
    that leaves flight.

    In throughput mode the sender takes slots in chunks (:meth:`take` with ``most > 1``) and is woken only
    once ``wake_at`` slots are free, so a full cap costs one thread wake-up per chunk, not one per message
    (the bench shares the interpreter with the engine it measures: every hand-off it causes is CPU the
    engine does not get).
    """

    def __init__(self, limit: int, wake_at: int = 1) -> None:
        self._free = limit
        self._wake_at = max(1, min(wake_at, limit))
        self._waiting = False
        self._cond = threading.Condition(threading.Lock())

    def release(self) -> None:
        with self._cond:
            self._free += 1
            if self._waiting and self._free >= self._wake_at:
                self._cond.notify()

    def take(self, most: int = 1, timeout: float | None = None) -> int:
        """Take between 1 and ``most`` slots (waiting for ``min(most, wake_at)`` to be free); 0 if
        none became free within ``timeout``."""
        need = min(most, self._wake_at)
        with self._cond:
            if self._free < need:
                self._waiting = True
                ok = self._cond.wait_for(lambda: self._free >= need, timeout)
                self._waiting = False
                if not ok:
                    return 0
            got = min(most, self._free)
            self._free -= got
            return got


class _Pacer:
    """The sending loop of one step (runs on the caller's thread)."""

    def __init__(
        self,
        target: Target,
        workload: Workload,
        recorder: Recorder,
        gate: Slots,
        gate_timeout_s: float,
        on_tick: Callable[[Recorder, float], None] | None,
        cpu_clock: Callable[[], float],
    ) -> None:
        self.target, self.workload, self.recorder, self.gate = target, workload, recorder, gate
        self.gate_timeout_s = gate_timeout_s
        self.on_tick = on_tick
        self.sent = 0
        self.stalled = False
        self.measuring = False
        self.cpu_clock = cpu_clock
        self.cpu_at_measure_start = cpu_clock()

    def send(self, plan: Iterator[Planned], t0: float, paced: bool, warmup_count: int) -> None:
        corridors, recorder, target, gate = (
            self.workload.corridors,
            self.recorder,
            self.target,
            self.gate,
        )
        clock, sleep, timeout = time.perf_counter, time.sleep, self.gate_timeout_s
        next_tick = t0
        held = 0  # slots taken ahead (throughput mode takes them in chunks)
        for planned in plan:
            if paced:
                intended = t0 + planned.due
                now = clock()
                if intended > now:
                    sleep(intended - now)
                if not gate.take(1, timeout):
                    self.stalled = True
                    return
            else:
                if self.sent == warmup_count:
                    recorder.measure_from = clock()
                if not held:
                    held = gate.take(256, timeout)
                    if not held:
                        self.stalled = True
                        return
                held -= 1
                intended = clock()
            if not self.measuring and intended >= recorder.measure_from:
                self.measuring = True
                self.cpu_at_measure_start = self.cpu_clock()
            c = corridors[planned.corridor]
            recorder.sent(c.pop, c.country, intended)
            target.submit(recorder, planned, c.pop, c.country, intended)
            self.sent += 1
            if intended >= next_tick:
                next_tick = intended + 0.2
                if self.on_tick is not None:
                    self.on_tick(recorder, intended)
