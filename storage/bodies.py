"""Encrypted transient message bodies of one POP, with a TTL index and crypto-shredding.

Why it exists: the privacy policy (2.3) promises that a body is kept only until the carrier acknowledges it or
its retry window closes, never past 24 hours, encrypted at rest. LMDB does not wipe freed pages, so deleting
a body is not erasing it: every body is sealed (AES-256-GCM, the message id and its expiry as associated data) under the key
of the time window it was written in (``storage.keys``), and the window key is destroyed once every body of the
window is past its TTL. From then on no copy of those bodies (stale pages, ``data.mdb`` copies, backups) can
be read.

Layout, in the POP's LMDB environment:

* ``bodies``: 16-byte message id -> expiry (8-byte big-endian ms) + sealed blob
* ``bodies_ttl``: expiry (8-byte BE ms) + 16-byte message id -> b"" (the sweeper walks it in expiry order)
* ``bodies_meta``: ``ring_id`` -> the id of the key store the bodies were sealed with

Durability contract:

* *Durable:* :meth:`BodyStore.put_many` and :meth:`BodyStore.discard_many` write inside the caller's write
  transaction; the POP commits message records and bodies in one durable commit and acknowledges the
  customer only after it. A window key is durable (``keys.store`` fsynced) before any body sealed under it
  is written.
* *Writers:* the POP actor (put/discard) and the sweeper (:meth:`BodyStore.sweep`, its own write
  transactions, each durable on its own and small enough for the store's reserve, ``storage.headroom``,
  so the sweep runs on a store full for new messages; LMDB serialises the writers). *Readers:* any thread.
* *Bounded:* an expiry is clamped to ``window start + max_ttl`` (the start of the key window the body is
  sealed in, and the TTL of that window's era, ``storage.keys``), and a window's key is shredded at the
  first sweep after ``window start + max_ttl``; so no body outlives ``max_ttl`` from its window's start,
  and every copy of it is unreadable by then plus one sweep interval. Windows are a quarter of
  ``max_ttl`` long (at most an hour, at least a second), so the key in use is never one that is due, and
  a body written late in a window still lives at least three quarters of ``max_ttl``. The engine takes
  ``max_ttl`` = ``body_ttl_seconds`` minus the sweep interval (:func:`body_max_ttl`), so the key is gone
  within ``body_ttl_seconds`` of the write; with a TTL under twice the sweep interval, half the TTL, so
  within half the TTL plus one sweep interval. A restart with another TTL changes only the windows of
  bodies written from then on.
* *Not guaranteed:* a body whose expiry has passed but which the sweeper has not yet purged is still on
  disk (under a live key) until the next sweep; :meth:`BodyStore.get` already reports it as gone.
"""

from __future__ import annotations

import logging
import math
import struct
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice

import lmdb

from engine.errors import CorruptRecord, KeyUnavailable, StoreFull
from engine.ids import PREFIX, id_bytes
from storage.crypto import blob_key_id
from storage.full import refusing_when_full
from storage.headroom import batch_size
from storage.keys import KeyRing
from storage.records import MESSAGE_STORE

__all__ = ["BodyStore", "SweepResult", "body_max_ttl", "durable_write"]

log = logging.getLogger(__name__)

_U64 = struct.Struct(">Q")
_PENDING_CHUNK = 4096
SWEEP_BATCH = 10_000  # bodies purged per write txn


def body_max_ttl(body_ttl_seconds: float, sweep_interval_seconds: float) -> int:
    """The longest a body lives from its window's start (the ``max_ttl_seconds`` of a :class:`BodyStore`):
    the TTL less one sweep interval, so the sweep that shreds its key comes within the TTL; but at least
    half the TTL (and a second), so a TTL under twice the sweep interval still leaves bodies a life."""
    return max(1, int(body_ttl_seconds - sweep_interval_seconds), math.ceil(body_ttl_seconds / 2))


@contextmanager
def durable_write(env: lmdb.Environment) -> Iterator[lmdb.Transaction]:
    """A write txn committed (fsynced) on exit, aborted on error; a full map at any point (a put or the
    commit itself) becomes ``StoreFull`` after the abort, so nothing committed before is touched."""
    txn = env.begin(write=True)
    try:
        yield txn
        txn.commit()
    except lmdb.MapFullError:
        txn.abort()
        raise StoreFull(f"LMDB environment {env.path()} is full (map_size "
                        f"{env.info()['map_size']} bytes): the transaction was rolled back") from None
    except BaseException:
        txn.abort()
        raise


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did (counts only: never ids or bodies)."""

    purged: int
    shredded_windows: tuple[int, ...]
    live_windows: int
    pending: int
    seconds: float
    held_purged: int = 0  # due bodies that live on as a held copy (storage.holds)

    def as_log(self) -> dict[str, int | float]:
        return {"purged": self.purged, "shredded_windows": len(self.shredded_windows),
                "live_windows": self.live_windows, "pending": self.pending,
                "held_purged": self.held_purged, "seconds": round(self.seconds, 6)}


@dataclass
class _Alarms:
    counts: Counter = field(default_factory=Counter)

    def raise_(self, kind: str, message_id: str, reason: str) -> None:
        self.counts[kind] += 1
        log.error("body store alarm", extra={"alarm": kind, "message_id": message_id,
                                             "reason": reason, "count": self.counts[kind]})


class BodyStore:
    """Encrypted transient message bodies of one POP, in that POP's LMDB environment (+ a TTL index)."""

    def __init__(self, env: lmdb.Environment, keys: KeyRing, *, max_ttl_seconds: int = 86400,
                 clock: Callable[[], float] = time.time) -> None:
        if max_ttl_seconds <= 0:
            raise ValueError("max_ttl_seconds must be positive")
        self.env = env
        self.keys = keys
        self.max_ttl_seconds = max_ttl_seconds
        self._clock = clock
        self._bodies = env.open_db(b"bodies")
        self._ttl = env.open_db(b"bodies_ttl")
        self._meta = env.open_db(b"bodies_meta")
        with env.begin(db=self._ttl) as txn:
            cursor = txn.cursor()
            latest = _U64.unpack_from(cursor.key())[0] / 1000 if cursor.last() else None
        keys.use_body_windows(max_ttl_seconds, latest_expiry=latest)
        self.alarms = _Alarms()
        # set by storage.holds.Holds: message keys with a held copy (for the sweep log), and the hook
        # that copies bodies of accounts under an account-scoped hold (None while there is none)
        self.held: Container[bytes] = frozenset()
        self.capture: Callable[[lmdb.Transaction, list[tuple[bytes, str, str]]], int] | None = None
        self._check_ring()

    def _check_ring(self) -> None:
        with self.env.begin(write=True) as txn:
            recorded = txn.get(b"ring_id", db=self._meta)
            if recorded is not None and recorded != self.keys.ring_id:
                if txn.stat(self._bodies)["entries"]:
                    raise KeyUnavailable(
                        f"the bodies in {self.env.path()} were sealed with key store "
                        f"{bytes(recorded).hex()}, but {self.keys.path} is key store "
                        f"{self.keys.ring_id.hex()}: the key store is missing or was replaced"
                    )
            txn.put(b"ring_id", self.keys.ring_id, db=self._meta)

    # --- write path (the POP actor) ---------------------------------------------------------------

    def put_many(self, txn: lmdb.Transaction, items: Iterable[Sequence]) -> None:
        """Seal and write ``(message_id, body, expires_at)`` items inside the caller's write txn.

        An item may carry a 4th element, the account id: while that account is under an account-scoped
        hold (``storage.holds``), its body is also copied under the hold's key in the same txn.
        Raises ``StoreFull`` (the caller aborts its txn; nothing committed before is touched) - also
        when the current window's key cannot be stored (the key store's disk is full): a body is never
        sealed under a key that is not durable -, ``KeyUnavailable`` if the current window key cannot be
        made, ``ValueError`` for a bad id."""
        now = self._clock()
        window = self.keys.body_window(now)
        seal = self.keys.body_sealer(window).seal
        cap_ms = int(self.keys.window_horizon(window) * 1000)
        pack = _U64.pack
        fromhex = bytes.fromhex
        capture = self.capture
        rows, ttl_rows, captured = [], [], []
        for item in items:
            message_id, body, expires_at = item[0], item[1], item[2]
            key = fromhex(message_id[4:])  # a cheaper check than id_bytes (0.3 us a message)
            if len(key) != 16 or len(message_id) != 36 or message_id[:4] != PREFIX:
                key = id_bytes(message_id)  # raises ValueError with the offending id
            exp = pack(min(int(expires_at * 1000), cap_ms))
            rows.append((key, exp + seal(body.encode(), exp + key)))  # the expiry is authenticated
            ttl_rows.append((exp + key, b""))
            if capture is not None and len(item) > 3:
                captured.append((key, item[3], body))
        try:
            txn.cursor(db=self._bodies).putmulti(rows)
            txn.cursor(db=self._ttl).putmulti(ttl_rows)
            if captured:
                capture(txn, captured)
        except lmdb.MapFullError:
            raise StoreFull(
                f"body store {self.env.path()} is full (LMDB map_size "
                f"{self.env.info()['map_size']} bytes): batch of {len(rows)} bodies not written"
            ) from None

    def can_seal(self) -> bool:
        """Whether new bodies can be sealed now: the key of the current window is durable, made now if
        need be. False while it cannot be stored (``StoreFull``: no space for the key store): a POP's
        store is not ready for new messages then, whatever room its LMDB map has (``space_watch``)."""
        try:
            self.keys.body_sealer(self.keys.body_window(self._clock()))
        except StoreFull:
            return False
        return True

    def discard_many(self, txn: lmdb.Transaction, message_ids: Iterable[str]) -> None:
        """The carrier acknowledged these messages: delete their bodies and TTL entries."""
        bodies, ttl = self._bodies, self._ttl
        for message_id in message_ids:
            key = id_bytes(message_id)
            value = txn.pop(key, db=bodies)
            if value is not None:
                txn.delete(value[:8] + key, db=ttl)

    # --- read path (any thread) -------------------------------------------------------------------

    def get(self, message_id: str) -> str | None:
        """The body, or None if discarded, expired or shredded. ``CorruptRecord`` if it was tampered
        with (and an alarm); ``KeyUnavailable`` if its key is missing from a lost key store."""
        key = id_bytes(message_id)
        with self.env.begin(db=self._bodies) as txn:
            value = txn.get(key)
            if value is None:
                return None
            value = bytes(value)
        return self._open(message_id, key, value, self._clock())

    def _open(self, message_id: str, key: bytes, value: bytes, now: float) -> str | None:
        if len(value) < 8:
            self.alarms.raise_("corrupt_record", message_id, "truncated value")
            raise CorruptRecord(f"body of {message_id} is truncated ({len(value)} bytes)")
        expiry_ms = _U64.unpack_from(value)[0]
        if expiry_ms <= int(now * 1000):
            return None
        blob = value[8:]
        try:
            window = blob_key_id(blob)
            self._check_window(window, expiry_ms / 1000, now)
            sealer = self.keys.body_sealer(window, create=False)
        except CorruptRecord as exc:
            self.alarms.raise_("corrupt_record", message_id, exc.message)
            raise CorruptRecord(f"body of {message_id}: {exc.message}") from None
        except KeyUnavailable as exc:
            if self.keys.is_shredded(window):
                return None
            self.alarms.raise_("key_unavailable", message_id, exc.message)
            raise
        try:
            return sealer.open(blob, value[:8] + key).decode()
        except CorruptRecord as exc:
            self.alarms.raise_("corrupt_record", message_id, exc.message)
            raise CorruptRecord(f"body of {message_id}: {exc.message}") from None

    def _check_window(self, window: int, expiry: float, now: float) -> None:
        """A body is sealed under the window it was written in: no later than now, and no earlier than
        its expiry minus the longest TTL. Anything else is a damaged key id, not a missing key."""
        earliest = self.keys.body_window(expiry - max(self.max_ttl_seconds, 86400))
        if not earliest <= window <= self.keys.body_window(now):
            raise CorruptRecord(f"key id {window} cannot belong to a body expiring at {expiry}")

    def pending_ids(self) -> Iterator[str]:
        """Ids with a body still stored, in id (time) order; reads in chunks, no long-lived txn."""
        start = b""
        while True:
            with self.env.begin(db=self._bodies) as txn:
                cursor = txn.cursor()
                if not cursor.set_range(start):
                    return
                keys = islice(cursor.iternext(keys=True, values=False), _PENDING_CHUNK)
                chunk = [bytes(k) for k in keys]
            yield from (PREFIX + k.hex() for k in chunk)
            if len(chunk) < _PENDING_CHUNK:
                return
            start = chunk[-1] + b"\x00"

    def count(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._bodies)["entries"]

    # --- sweeper ----------------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> SweepResult:
        """Purge every due body (TTL order), then shred each window key that can hold no live body.

        Purges in transactions of at most ``SWEEP_BATCH`` bodies, so the POP's group commits (which wait
        for LMDB's single writer lock) are never held up for long by a large backlog, and of no more than
        the store's reserve holds (``storage.headroom``), so it runs on a store full for new messages."""
        started = time.perf_counter()
        self.keys.save_unsaved_shreds()  # a shred the full disk kept in memory only (StoreFull: retried)
        now = self._clock() if now is None else now
        limit = _U64.pack(int(now * 1000))
        purged = held_purged = 0
        size = min(SWEEP_BATCH, batch_size(self.env, pages_per_item=2))  # bodies and TTL index
        while True:
            n, held, oldest, pending = self._purge_batch(limit, size)
            purged, held_purged = purged + n, held_purged + held
            if n < size:
                break
        shredded = self._shred_finished_windows(now, oldest)
        # make the next window's key now, so the POP's commit at the turn of the window never waits
        # for the key store's fsync (StoreFull while the key store cannot be saved: the sweeper retries
        # every tick; at the turn, new bodies are refused until their window's key is durable)
        self.keys.body_sealer(self.keys.body_window(now) + 1)
        result = SweepResult(purged, tuple(shredded), len(self.keys.live_windows()), pending,
                             time.perf_counter() - started, held_purged)
        log.info("body sweep", extra={"sweep": result.as_log()})
        return result

    def _purge_batch(self, limit: bytes, max_items: int) -> tuple[int, int, float | None, int]:
        """One write txn: purge up to ``max_items`` due bodies; returns (purged, held, oldest expiry
        left, bodies left)."""
        held, purged, held_purged = self.held, 0, 0
        with refusing_when_full(MESSAGE_STORE), self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._ttl)
            found = cursor.first()
            while found and purged < max_items:
                k = cursor.key()
                if k[:8] > limit:
                    break
                key = k[8:]
                txn.delete(key, db=self._bodies)
                purged += 1
                if key in held:
                    held_purged += 1
                    log.info("held body's transient copy purged; held copy kept",
                             extra={"message_id": PREFIX + bytes(key).hex()})
                found = cursor.delete() and bool(cursor.key())
            oldest = _U64.unpack_from(cursor.key())[0] / 1000 if cursor.first() else None
            return purged, held_purged, oldest, txn.stat(self._bodies)["entries"]

    def _shred_finished_windows(self, now: float, oldest_expiry: float | None) -> list[int]:
        shredded = []
        for window in self.keys.live_windows():
            # each window by its own era's start and TTL (a later era may have a shorter TTL)
            horizon = self.keys.window_horizon(window)
            if horizon > now:
                continue
            if oldest_expiry is not None and oldest_expiry < horizon:
                continue  # a body that may belong to this window is still indexed
            self.keys.shred_window(window)
            shredded.append(window)
        return shredded
