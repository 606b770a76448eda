"""A POP whose message store is full: not ready while it refuses new messages, and how it sees space return.

Why: a full store - its disk, or its LMDB map down to the reserve (``storage.headroom``) - refuses every new
message ``store_full``, yet ``/readyz`` answered 200, so a load balancer kept sending the instance traffic it
could only refuse. From the first refusal for lack of space until a write of new data succeeds again, the
POP's store is named in its process's :class:`storage.full.FullStores` (``/readyz``: 503 ``store_full``).

Space coming back is seen by the next commit that writes new messages, or - since a load balancer sends
none to an instance that is not ready - by a probe: every :data:`PROBE_SECONDS` the POP writes
:data:`PROBE_BYTES` of fresh data into a database of its own (``space_probe``), commits, and deletes it again
(:func:`room_for_new`). A probe needs fresh pages as a batch of new messages does (a status update alone
often fits in pages LMDB freed, so it proves nothing); between probes nothing is written.

A probe also asks the body store whether new bodies can be sealed (``can_seal``: the key of the current
body window is durable, or can be made so now): on a full disk an LMDB file with freed pages inside may
take the probe's 64 KiB while the key store, which needs fresh blocks, cannot be saved - and without a
durable key no new body is sealed (``storage.keys``). Without that check the POP would say "ready" every
second and refuse the next commit again.

A smaller probe, :meth:`SpaceWatch.takes_status_changes`, asks whether a write of the size of a status change
commits (:data:`STATUS_PROBE_BYTES`, written and deleted in one transaction): while it does not, the POP
starts no carrier attempt (``actors.pop``: a carrier's acknowledgement that cannot be stored is lost with
a restart, and the message sent twice).

Logging: one ALARM when the store starts refusing, a summary every :data:`SUMMARY_SECONDS` while it goes
on (new messages refused, commits failed), one line when it takes new messages again. Before, every
retried commit logged an ALARM - five a second at the default tick, most saying "0 new messages refused".
Each line names the store that refused (``StoreFull.store``): ``message`` (the POP's LMDB map or its disk)
or ``keys`` (the key directory: no durable key for the window new bodies are sealed in). Before, a full
key store was reported as ``store message is full``, and the operator freed the wrong disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lmdb

from storage.full import FullStores
from storage.headroom import has_headroom

log = logging.getLogger(__name__)

PROBE_SECONDS = 1.0
PROBE_BYTES = 64 << 10  # about what a batch of a hundred new messages needs
SUMMARY_SECONDS = 60.0
STATUS_PROBE_BYTES = 512  # about a status change: a record rewritten in place
_PROBE_DB = b"space_probe"
_WHERE = {"message": "disk or LMDB map", "keys": "the key directory's disk: no durable key for new bodies"}
_PROBE_KEY = b"probe"


def room_for_new(env: Any, db: Any) -> bool:
    """Whether ``env`` takes new data again: its map has its reserve, and :data:`PROBE_BYTES` written
    into ``db`` commit (then they are deleted). Any LMDB error means no."""
    try:
        if not has_headroom(env):
            return False
        with env.begin(write=True) as txn:
            txn.put(_PROBE_KEY, bytes(PROBE_BYTES), db=db)
    except lmdb.Error:
        return False
    try:
        with env.begin(write=True) as txn:
            txn.delete(_PROBE_KEY, db=db)
    except lmdb.Error:
        pass  # left for the next probe to overwrite: 64 KiB, and the store did take a write
    return True


def takes_writes(env: Any, db: Any, size: int) -> bool:
    """Whether a write of ``size`` bytes into ``db`` commits now (it is deleted again in the same
    transaction, which still needs fresh pages for every page it touches). Any LMDB error means no."""
    try:
        with env.begin(write=True) as txn:
            txn.put(_PROBE_KEY, bytes(size), db=db)
            txn.delete(_PROBE_KEY, db=db)
    except lmdb.Error:
        return False
    return True


class SpaceWatch:
    """One POP's message store: full (refusing new messages) or not; named ``message:<pop>`` in ``board``
    while full."""

    def __init__(self, pop: str, env: Any, board: FullStores,
                 can_seal: Callable[[], bool] | None = None) -> None:
        self.name, self.pop, self.env, self.board = f"message:{pop}", pop, env, board
        self.can_seal = can_seal  # the body store's: new bodies can be sealed under a durable key
        self.full = False
        self.store = "message"  # the store that refused (storage.full.store_full's name): the log says it
        self._db: Any = None
        self._next_probe = 0.0
        self._next_summary = 0.0
        self._refused = 0  # new messages refused since the last log line
        self._failed = 0  # commits refused since the last log line

    def refused(self, messages: int, now: float, store: str = "message") -> None:
        """A commit failed, or left its new messages out, for lack of space in ``store`` (``message``, or
        ``keys`` when the key of the body window could not be stored; ``now``: monotonic)."""
        self._refused += messages
        self._failed += 1
        self.store = store
        if self.full:
            if now >= self._next_summary:
                self._summary(now)
            return
        self.full = True
        self.board.add(self.name)
        self._next_probe = now + PROBE_SECONDS
        self._next_summary = now + SUMMARY_SECONDS
        log.error("pop %s: ALARM store %s is full (%s): %d new messages refused; not ready (/readyz 503 "
                  "store_full) until a write of new data succeeds", self.pop, store, _WHERE.get(store, "disk"),
                  messages)
        self._refused = self._failed = 0

    def wrote_new(self) -> None:
        """A commit wrote new data: the store has room again."""
        if not self.full:
            return
        self.full = False
        self.board.discard(self.name)
        log.warning("pop %s: store %s takes new messages again (%d refused, %d commits failed "
                    "since the last report); ready", self.pop, self.store, self._refused, self._failed)
        self._refused = self._failed = 0

    def tick(self, now: float) -> None:
        """While full, probe for space every :data:`PROBE_SECONDS` (``now``: monotonic)."""
        if not self.full or now < self._next_probe:
            return
        self._next_probe = now + PROBE_SECONDS
        if self._probe():
            self.wrote_new()
        elif now >= self._next_summary:
            self._summary(now)

    def stopped(self) -> None:
        """The POP stops: its store no longer speaks for this process's readiness."""
        self.board.discard(self.name)

    def takes_status_changes(self) -> bool:
        """Whether a write of the size of a status change commits now (the reserve does not matter:
        status changes may use it)."""
        return self._open_probe_db() and takes_writes(self.env, self._db, STATUS_PROBE_BYTES)

    def _probe(self) -> bool:
        return (self._open_probe_db() and room_for_new(self.env, self._db)
                and (self.can_seal is None or self.can_seal()))

    def _open_probe_db(self) -> bool:
        if self._db is None:
            try:
                self._db = self.env.open_db(_PROBE_DB)
            except lmdb.Error:  # creating it is a write too
                return False
        return True

    def _summary(self, now: float) -> None:
        self._next_summary = now + SUMMARY_SECONDS
        log.error("pop %s: ALARM store %s still full: %d new messages refused, %d commits failed "
                  "in the last %.0f s", self.pop, self.store, self._refused, self._failed, SUMMARY_SECONDS)
        self._refused = self._failed = 0
