"""SweeperActor: enforces the retention table on every store, on the clock's ticks.

Role: on a ``Tick`` (at most once per ``interval_seconds``) it sweeps every POP's body store (TTL purge, then
window key shredding), then every other :class:`~storage.retention.Sweepable` (hold expiry, receipt records,
request logs, closed accounts, ledger), logs one structured line per store with counts, and keeps the last
sweep's stats for the control port.

Messages in: ``Tick`` (bytes, ``tell``; its ``now`` is the clock's monotonic time, used only as a wake-up:
expiries are wall-clock, read from the injected ``clock``). Messages out: none. ``stats()`` and
``sweep_now()`` are called through a proxy (``ask``): the control port and tests only, never the hot path.

A store added after the sweeper started (``add_sweepables``: the engine's mail, privacy and HTTP stores,
and the account sweep, which waits for the privacy stores: ``engine._engine``) is swept on the next tick
when a sweep already ran without it, not a whole interval later (an engine restarted more often than
``interval_seconds`` would otherwise never sweep it).

Threads: every method runs in the actor's own thread. A store whose sweep raises — anything, a bug
included — is logged (with its traceback for an unexpected error), counted (``totals["failures"]`` and
per store in ``failures``) and swept again on the next tick rather than a whole interval later; it never
stops the actor or the other stores' sweeps. A sweep refused for lack of space (``StoreFull``: the disk, or
an LMDB map; e.g. the key store cannot be saved while the next body key window is made) is logged by a
:class:`~storage.full_alarm.FullAlarm` of that store: one ALARM, a summary a minute, one line when it sweeps
again. Before, each retry - every tick, for every POP - logged a full traceback (``error=OSError``).

Liveness: the sweeper stamps a :class:`~actors.sweep_watch.SweepWatch` (``watch``) as it sweeps (a sweep
began, each store's sweep finished, the sweep ended), so ``/readyz`` and a worker's heartbeat see a
sweeper that stopped working without asking it anything (it could not answer).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lmdb
import pykka

from actors.sweep_watch import SweepWatch
from engine import messages as m
from engine.errors import ConfigError, SmsrouteError, StoreFull
from storage.bodies import BodyStore
from storage.full import FULL_ERRORS
from storage.full_alarm import FullAlarm
from storage.retention import RETENTION, RetentionRule, Sweepable, operator_view

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 60.0
FULL_SUMMARY_SECONDS = 60.0  # a store whose sweeps are refused for lack of space: a summary this often


class SweeperActor(pykka.ThreadingActor):
    """Runs every retention sweep; see the module docstring."""

    use_daemon_thread = True  # never keeps a host process alive (the engine's exit hook stops it)

    def __init__(self, pop_stores: Mapping[str, BodyStore],
                 retention: Mapping[str, RetentionRule] = RETENTION,
                 clock: Callable[[], float] = time.time, *,
                 sweepables: Mapping[str, Sweepable] | Sequence[Sweepable] = (),
                 interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
                 watch: SweepWatch | None = None) -> None:
        super().__init__()
        self._watch = watch if watch is not None else SweepWatch(interval_seconds)
        self._bodies = dict(pop_stores)
        self._retention = retention
        self._clock = clock
        self._others = _named(sweepables)
        self._interval = interval_seconds
        self._last_run: float | None = None
        self._last: dict[str, Any] = {}
        self._totals: dict[str, int] = {"sweeps": 0, "failures": 0}
        self._failures: dict[str, int] = {}  # per store, since start
        self._retry: set[str] = set()  # stores whose last sweep failed: swept again next tick
        self._added: set[str] = set()  # stores added since the last sweep ran: swept next tick
        self._removed_by_store: dict[str, int] = {}  # bodies purged / records removed, per store
        self._full: dict[str, FullAlarm] = {}  # per store whose sweep was refused for lack of space
        body_limit = retention["message_bodies"].seconds
        for pop, store in self._bodies.items():
            if store.max_ttl_seconds > body_limit:
                raise ConfigError(f"POP {pop}: body TTL {store.max_ttl_seconds} s exceeds the "
                                  f"retention table's {body_limit} s")

    def on_receive(self, raw: bytes) -> None:
        msg = m.decode_or_drop(raw, "sweeper")
        match msg:
            case None:
                pass  # malformed: logged and dropped
            case m.Tick():
                now = self._clock()
                if self._last_run is None or now - self._last_run >= self._interval:
                    self._sweep(now)
                elif self._retry or self._added:
                    self._sweep_pending(now)
            case _:
                log.error("sweeper: unexpected %s", type(msg).__name__)
        return None

    # --- proxy API (control port, tests) ----------------------------------------------------------

    def add_sweepables(self, sweepables: Mapping[str, Sweepable]) -> list[str]:
        """Sweep these stores too from now on (stores of components started after the sweeper, e.g.
        the HTTP servers' request log); returns every store name swept. Once a sweep has run they are
        swept on the next tick, then with the others."""
        added = _named(sweepables)
        if self._last_run is not None:
            self._added.update(added)
        self._others.update(added)
        return sorted([*(f"bodies:{p}" for p in self._bodies), *self._others])

    def sweep_now(self) -> dict[str, Any]:
        """Sweep everything now, whatever the interval; returns the stats."""
        self._sweep(self._clock())
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """The last sweep's counts per store, running totals, each POP's body-store alarms (corrupt
        records, missing keys) and, per retention category, what is due."""
        return {"last_run": self._last_run, "last": dict(self._last), "totals": dict(self._totals),
                "failures": dict(self._failures), "retrying": sorted(self._retry),
                "removed_by_store": dict(self._removed_by_store),
                "alarms": {pop: dict(store.alarms.counts) for pop, store in self._bodies.items()},
                "retention": operator_view(self._clock(), table=self._retention)}

    # --- the sweep --------------------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        self._last_run = now
        self._totals["sweeps"] += 1
        self._retry.clear()
        self._added.clear()
        self._watch.began()
        try:
            results = {name: self._guarded(name, run, now) for name, run in self._runs().items()}
        finally:
            self._watch.ended()
        self._last = results
        for name, counts in results.items():
            log.info("retention sweep", extra={"store": name, "counts": counts})

    def _sweep_pending(self, now: float) -> None:
        """Between intervals: sweep only the stores whose last sweep failed and those added since."""
        runs = self._runs()
        self._watch.began(full=False)
        try:
            for name in sorted(self._retry | self._added):
                message = "retention sweep retried" if name in self._retry else "retention sweep"
                self._retry.discard(name)
                self._added.discard(name)
                self._last[name] = self._guarded(name, runs[name], now)
                log.info(message, extra={"store": name, "counts": self._last[name]})
        finally:
            self._watch.ended()

    def _runs(self) -> dict[str, Callable[[float], dict[str, Any]]]:
        runs: dict[str, Callable[[float], dict[str, Any]]] = {
            f"bodies:{pop}": (lambda now, s=store: s.sweep(now).as_log())
            for pop, store in self._bodies.items()}
        for name, sweepable in self._others.items():
            runs[name] = lambda now, s=sweepable: {"removed": s.sweep(now)}
        return runs

    def _guarded(self, name: str, run: Callable[[float], dict[str, Any]], now: float
                 ) -> dict[str, Any]:
        try:
            counts = run(now)
        except Exception as exc:  # one store's failure, even a bug, must not stop the others
            self._watch.store_done()
            self._totals["failures"] += 1
            self._failures[name] = self._failures.get(name, 0) + 1
            self._retry.add(name)
            if isinstance(exc, (StoreFull, *FULL_ERRORS)):  # once, then a summary a minute
                self._full_alarm(name, exc).refused("swept again every tick until it can write")
                return {"error": "StoreFull"}
            expected = isinstance(exc, SmsrouteError | lmdb.Error)
            log.error("retention sweep failed", exc_info=None if expected else exc,
                      extra={"store": name, "error": type(exc).__name__,
                             "reason": str(exc) if expected else "unexpected"})
            return {"error": type(exc).__name__}
        if name in self._full:
            self._full[name].wrote()
        self._watch.store_done()
        for key in ("purged", "removed"):
            if key in counts:
                self._totals[key] = self._totals.get(key, 0) + counts[key]
                self._removed_by_store[name] = self._removed_by_store.get(name, 0) + counts[key]
        return counts

    def _full_alarm(self, name: str, exc: BaseException) -> FullAlarm:
        alarm = self._full.get(name)
        if alarm is None:
            store = getattr(exc, "store", "") or name  # the keys store, a POP's message store, ...
            alarm = self._full[name] = FullAlarm(f"retention sweep {name}", store,
                                                 FULL_SUMMARY_SECONDS)
        return alarm


def _named(sweepables: Mapping[str, Sweepable] | Sequence[Sweepable]) -> dict[str, Sweepable]:
    if isinstance(sweepables, Mapping):
        return dict(sweepables)
    named = {}
    for i, s in enumerate(sweepables):
        name = getattr(s, "category", None) or f"{type(s).__name__}#{i}"
        named[name] = s
    return named
