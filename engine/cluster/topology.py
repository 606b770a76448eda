"""Which workers may hold an account's messages: every worker count the cluster's core ran with.

An account belongs to worker ``crc32(account id) mod N`` (``engine.cluster.placement``), and its
messages stay where they were written. A cluster may grow (more workers than before starts; fewer is
refused while the others hold messages, ``LocalCluster``), so after ``--workers 1`` then ``--workers 2``
half of the accounts belong to w1 while their earlier messages are still on w0. A read of one account's
messages (its listing, its export, its usage, a status read for it) must ask both, and only those: a
worker that holds none of the account's messages neither slows nor fails the answer (one hung worker
then affects only the accounts it holds).

The core keeps the worker counts it started with in ``<data>/topology.json`` (written atomically
before the core opens its stores, so a count is recorded before any message is routed by it):
``{"worker_counts": [1, 2], "complete": true, "last": 2}``. A core whose data directory has stores but no
such file (written by a version that kept none) or an unreadable one does not know its history:
``complete`` is false and every worker may hold every account's messages (all are asked, as before).

Fewer workers than the cluster last ran with (``last``; a file without it: its largest count) is refused
at start: what the missing workers hold would silently vanish from their accounts' reads. Before, a
``--role core`` restarted with fewer workers started and simply asked no missing worker. The operator
accepts the shrink with ``--accept-fewer-workers`` (recorded as the new ``last``, so it is asked once);
a supervising core (``smsroute run --workers N``) needs no flag when the missing workers' directories,
which it keeps, hold no messages (``LocalCluster`` refuses to start otherwise).
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError
from storage.keys import atomic_write

log = logging.getLogger(__name__)

FILE = "topology.json"


@dataclass(frozen=True)
class TopologyHistory:
    """The worker counts a cluster ran with (None: not known, so any worker may hold any account)."""

    counts: tuple[int, ...] | None = None

    def holders(self, account_id: str, workers: tuple[str, ...]) -> tuple[str, ...]:
        """The workers of ``workers`` (``w0 .. w<N-1>``, in partition order) that may hold
        ``account_id``'s messages, in that order: its worker under each count of the history and the
        current one. (A count larger than the workers there are now names workers that no longer run:
        what they hold cannot be asked, and is not.)"""
        if self.counts is None:
            return workers
        h = zlib.crc32(account_id.encode())
        indexes = {h % n for n in self.counts} | {h % len(workers)}
        return tuple(node for i, node in enumerate(workers) if i in indexes)


def record(data_dir: Path, workers: int, *, fresh: bool, accept_fewer: bool = False
           ) -> TopologyHistory:
    """The core's history with ``workers`` added, written to ``<data_dir>/topology.json`` if it
    changed. ``fresh``: the core has no stores yet, so no earlier worker count holds anything.
    ConfigError for fewer workers than the cluster last ran with, unless ``accept_fewer`` or the
    missing workers' directories are here and hold no messages (see the module docstring)."""
    path = data_dir / FILE
    saved = _read(path)
    if saved is None:
        counts, complete, last = [workers], fresh, workers
        if not fresh:
            log.warning("no record of the worker counts this cluster ran with (a data directory from "
                        "before %s was kept): every worker is asked for each account's messages", FILE)
    else:
        counts, complete, last = saved
        if workers < last:
            _check_fewer(data_dir, path, workers, last, accept_fewer)
        if workers in counts and workers == last:
            return TopologyHistory(tuple(counts) if complete else None)
        if workers not in counts:
            if counts:
                log.warning("the cluster now runs %d workers (before: %s); accounts' earlier messages "
                            "are read where they were written", workers, ", ".join(map(str, counts)))
            counts = [*counts, workers]
    atomic_write(path, json.dumps({"worker_counts": counts, "complete": complete,
                                   "last": workers}).encode())
    return TopologyHistory(tuple(counts) if complete else None)


def _check_fewer(data_dir: Path, path: Path, workers: int, last: int, accepted: bool) -> None:
    missing = [f"w{k}" for k in range(workers, last)]
    kept = data_dir / "workers"
    if kept.is_dir() and not any((kept / node / "pops").exists() for node in missing):
        return  # a supervising core's own workers, holding nothing (LocalCluster checked them)
    if not accepted:
        raise ConfigError(
            f"the cluster last ran with {last} workers (recorded in {path}); with --workers {workers} "
            f"the messages of {', '.join(missing)} would be left out of their accounts' reads (listing, "
            f"exports, usage, status): start with --workers {last}, or, if those workers are gone for "
            "good, add --accept-fewer-workers to accept that")
    log.warning("started with %d workers, fewer than the %d the cluster last ran with (accepted): the "
                "messages of %s are left out of their accounts' reads", workers, last, ", ".join(missing))


def _read(path: Path) -> tuple[list[int], bool, int] | None:
    """``(counts, complete, last)`` from the file; None if there is none. One that cannot be read is an
    unknown history (every worker asked, no count to keep to), never a reason not to start."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        counts = [int(n) for n in data["worker_counts"]]
        if not counts or min(counts) < 1:
            raise ValueError("no worker count")
        last = int(data.get("last", max(counts)))  # (a file from before "last": its largest count)
        return counts, bool(data["complete"]), last
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("%s is unreadable (%s): every worker is asked for each account's messages",
                    path.name, type(exc).__name__)
        return [], False, 0
