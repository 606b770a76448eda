"""A store that is full (its LMDB map, or the disk under it) refuses writes with a named ``StoreFull``.

Every user-triggered write outside the POP commit and the ledger (which have their own mapping) goes through
:func:`refusing_when_full`: LMDB aborts the transaction, so nothing committed before is touched, and the
caller answers ``store_full`` (HTTP 503 with ``Retry-After``) instead of an internal error. Each refusal is
logged once with the store's name and counted in :data:`FULL_REFUSALS`, which ``/metrics`` exposes as
``smsroute_store_full_refusals_total{store}``, so an operator knows which map to enlarge
(``[engine] map_size_mb``; ``http_map_size_mb``, ``mail_map_size_mb``, ``privacy_map_size_mb`` for those
stores) or which disk to free. Reads never need space and keep being served.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lmdb

from engine.errors import StoreFull

log = logging.getLogger(__name__)

FULL_ERRORS: tuple[type[BaseException], ...] = (lmdb.MapFullError, lmdb.DiskError)
"""What LMDB raises when a write does not fit: the map is used up, or the device has no space left."""

FULL_DEVICE_BYTES = 1 << 20
"""Less free space than this on a store's file system: a write that failed there failed for lack of it."""

FULL_REFUSALS: Counter[str] = Counter()
"""Writes refused because their store was full, by store name, since the process started."""
_lock = threading.Lock()


def is_full_disk(exc: BaseException, where: str | Path) -> bool:
    """Whether ``exc``, raised by a write under ``where``, means its device has no space left. LMDB says
    so as ``DiskError`` (ENOSPC) - or, writing into a file that cannot grow on a full tmpfs, as a plain
    I/O error: that one counts when ``where``'s file system really has (almost) no space left."""
    if isinstance(exc, lmdb.DiskError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(exc, lmdb.Error) or "Input/output error" not in str(exc):
        return False
    try:
        return shutil.disk_usage(where).free < FULL_DEVICE_BYTES
    except OSError:
        return False


def store_full(store: str, *, logged: bool = True) -> StoreFull:
    """Count and log one refusal of ``store`` and return the error to raise (never says more than the
    store's name: no key or value of the refused write). ``logged=False``: counted only, for a caller
    that logs the state itself (a POP: ``storage.space_watch``, once per change and a periodic summary,
    not once per retried commit)."""
    with _lock:
        FULL_REFUSALS[store] += 1
    if logged:
        log.warning("store %s is full (LMDB map or disk): write refused, nothing stored was lost", store)
    error = StoreFull(f"the {store} store is full: the write was refused and nothing stored was lost; "
                      "retry later")
    error.store = store  # (for a caller that logs the state itself: which store, without parsing)
    return error


@contextmanager
def refusing_when_full(store: str) -> Iterator[None]:
    """Turn LMDB's full-map and full-disk errors raised inside the block into ``StoreFull`` for
    ``store`` (put the whole write transaction, its commit included, inside the block)."""
    try:
        yield
    except FULL_ERRORS:
        raise store_full(store) from None


class FullStores:
    """The stores of this process that refuse new data for lack of space right now, by name (e.g.
    ``message:fra``): ``/readyz`` answers 503 ``store_full`` while there is one. Thread-safe: POPs set and
    clear their names on the actors' thread, the HTTP thread reads them."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def discard(self, name: str) -> None:
        with self._lock:
            self._names.discard(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._names)
