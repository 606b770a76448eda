"""Append-only audit log: who did what to which target, when, and with what result.

Why it exists: the policy makes every exception to body retention (legal hold, debugging window, lawful
order) and every operator access "audit-logged" (2.3, 9). The log is an LMDB database ``audit`` in the
environment it is given: 8-byte big-endian sequence number -> msgpack ``[ts, actor, action, target, result,
detail]``. This module offers no update and no delete.

It never holds message bodies, API keys, secrets or tokens: :meth:`AuditLog.append` refuses a ``detail`` whose
keys name such things, and callers pass counts and ids, not content.

Durability contract:

* *Durable:* :meth:`AuditLog.append` without ``txn`` commits (fsync) before it returns; with ``txn`` the
  entry commits or aborts with the caller's change, so an action and its audit entry are never apart.
* *Writers:* any thread (LMDB serialises write txns). *Readers:* any thread.
* *Ordered:* sequence numbers are dense and increasing in commit order.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, InputError, StoreFull

__all__ = ["AuditEntry", "AuditLog"]

_SEQ = struct.Struct(">Q")
_FORBIDDEN = ("body", "text", "content", "secret", "token", "password", "api_key", "apikey", "key_material")


class AuditEntry(NamedTuple):
    seq: int
    ts: float
    actor: str
    action: str
    target: str
    result: str
    detail: dict[str, Any]


class AuditLog:
    """Append-only audit entries in the ``audit`` db of ``env``."""

    def __init__(self, env: lmdb.Environment, *, clock: Callable[[], float] = time.time) -> None:
        self.env = env
        self._db = env.open_db(b"audit")
        self._clock = clock

    def append(self, actor: str, action: str, target: str, result: str,
               detail: dict[str, Any] | None = None, *, txn: lmdb.Transaction | None = None) -> int:
        """Record one entry; returns its sequence number. ``detail`` must be msgpack-able and carry no
        body or secret (``InputError`` otherwise)."""
        detail = dict(detail or {})
        _check_detail(detail)
        for name, value in (("actor", actor), ("action", action), ("target", target),
                            ("result", result)):
            if not isinstance(value, str) or not value:
                raise InputError(f"audit {name} must be a non-empty string")
        record = msgpack.packb([self._clock(), actor, action, target, result, detail])
        if txn is not None:
            return self._append_in(txn, record)
        try:
            with self.env.begin(write=True) as own:
                return self._append_in(own, record)
        except lmdb.MapFullError:
            raise StoreFull(f"audit log in {self.env.path()} is full") from None

    def _append_in(self, txn: lmdb.Transaction, record: bytes) -> int:
        cursor = txn.cursor(db=self._db)
        seq = _SEQ.unpack(cursor.key())[0] + 1 if cursor.last() else 1
        txn.put(_SEQ.pack(seq), record, db=self._db, append=True)
        return seq

    def entries(self, since: float | None = None) -> list[AuditEntry]:
        """Every entry (or those at or after ``since``), oldest first."""
        return list(self.iter_entries(since))

    def iter_entries(self, since: float | None = None) -> Iterator[AuditEntry]:
        with self.env.begin(db=self._db) as txn:
            for key, value in txn.cursor():
                entry = _decode(key, value)
                if since is None or entry.ts >= since:
                    yield entry

    def sweep(self, now: float, retention_seconds: float = 365 * 86400) -> int:
        """Delete entries older than the retention period (oldest first; the log is in time order)."""
        cutoff = now - retention_seconds
        removed = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._db)
            while cursor.first():
                if _decode(cursor.key(), cursor.value()).ts >= cutoff:
                    break
                cursor.delete()
                removed += 1
        return removed

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db)["entries"]


def _check_detail(detail: dict[str, Any]) -> None:
    for key, value in detail.items():
        lowered = str(key).lower()
        if any(word in lowered for word in _FORBIDDEN):
            raise InputError(f"audit detail key {key!r} suggests a body or a secret: not logged")
        if isinstance(value, dict):
            _check_detail(value)


def _decode(key: bytes, value: bytes) -> AuditEntry:
    try:
        ts, actor, action, target, result, detail = msgpack.unpackb(value, raw=False)
        return AuditEntry(_SEQ.unpack(key)[0], ts, actor, action, target, result, detail)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptRecord(f"audit entry {bytes(key).hex()} is unreadable: {exc!r}") from None
