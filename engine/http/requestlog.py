"""The API request log (privacy policy 2.1): timestamp, endpoint, source IP, HTTP status, response size.

Nothing else is recorded — no bodies, no headers, no API keys, no account id, no query string. The endpoint
is the route template (``POST /v1/messages/{id}``), never the concrete path. Entries are kept 90 days
(policy section 6); :meth:`RequestLog.sweep` deletes older ones and is called by the retention engine.

*Durable:* entries are buffered on the loop for up to a second (or 1000 entries), as plain tuples, and
then written through the HTTP store's group committer (encoded there, on its thread, in one ``putmulti``), so the log costs about one fsync a second, not one per batch
of answers; nobody waits for it. An entry may be lost if the process dies within that second.
*Writers:* the committer thread and :meth:`sweep`. *Readers:* any thread. Keys are time-ordered
(8-byte big-endian microseconds + 4-byte sequence), so a sweep is a range scan from the start.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import Iterator
from functools import partial
from typing import NamedTuple

import lmdb
import msgpack

from engine.http.store import Apply, GroupCommitter, Put
from storage.packing import pack

DB = b"request_log"
RETENTION_SECONDS = 90 * 86400
FLUSH_SECONDS = 1.0
FLUSH_ENTRIES = 1000
_KEY = struct.Struct(">QI")


class RequestLogEntry(NamedTuple):
    at: float  # unix seconds
    endpoint: str  # "METHOD /route/{template}"
    source_ip: str
    status: int
    response_bytes: int


class RequestLog:
    """Append-only request metadata, swept after 90 days."""

    def __init__(self, env: lmdb.Environment, committer: GroupCommitter | None = None) -> None:
        self._env = env
        self._db = env.open_db(DB)
        self._committer = committer
        if committer is not None:
            committer.register(DB, self._db)
        self._seq = itertools.count()
        self._rows: list[tuple] = []  # entries waiting for the next flush

    def _key(self, at: float) -> bytes:
        return _KEY.pack(int(at * 1_000_000), next(self._seq) & 0xFFFFFFFF)

    def _put(self, entry: RequestLogEntry) -> Put:
        return Put(DB, self._key(entry.at), pack(list(entry)))

    def record(self, entry: RequestLogEntry) -> None:
        """Log one answer (from the loop thread, through the committer; never waits for the disk)."""
        self.record_answer(*entry)

    def record_answer(self, at: float, endpoint: str, source_ip: str, status: int,
                      response_bytes: int) -> None:
        """:meth:`record` without an entry object (the customer API's hot path): the five fields are
        buffered as a tuple and encoded at the commit."""
        if self._committer is None:
            self.record_now(RequestLogEntry(at, endpoint, source_ip, status, response_bytes))
            return
        rows = self._rows
        rows.append((at, endpoint, source_ip, status, response_bytes))
        if len(rows) >= FLUSH_ENTRIES:
            self.flush()
        elif len(rows) == 1:
            asyncio.get_running_loop().call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the buffered entries to the committer (loop thread)."""
        if self._rows and self._committer is not None:
            rows, self._rows = self._rows, []
            self._committer.write_later([Apply(partial(self._write_rows, rows))], entries=len(rows))

    def _write_rows(self, rows: list[tuple], txn: lmdb.Transaction) -> None:
        """The buffered entries, keyed and encoded in the committer's transaction (its thread)."""
        key, seq = _KEY.pack, self._seq
        txn.cursor(db=self._db).putmulti([
            (key(int(at * 1_000_000), next(seq) & 0xFFFFFFFF), pack([at, endpoint, ip, status, size]))
            for at, endpoint, ip, status, size in rows])

    def record_now(self, entry: RequestLogEntry) -> None:
        """Log one answer in its own durable transaction (tests, tools)."""
        put = self._put(entry)
        with self._env.begin(write=True) as txn:
            txn.put(put.key, put.value, db=self._db)

    def entries(self, since: float = 0.0) -> Iterator[RequestLogEntry]:
        """Entries at or after ``since``, oldest first."""
        with self._env.begin() as txn:
            cur = txn.cursor(db=self._db)
            if not cur.set_range(_KEY.pack(max(0, int(since * 1_000_000)), 0)):
                return
            for _, value in cur:
                at, endpoint, ip, status, size = msgpack.unpackb(value)
                yield RequestLogEntry(at, endpoint, ip, status, size)

    def sweep(self, now: float) -> int:
        """Delete entries older than 90 days before ``now``; return how many were deleted."""
        cutoff = _KEY.pack(max(0, int((now - RETENTION_SECONDS) * 1_000_000)), 0)
        deleted = 0
        with self._env.begin(write=True) as txn:
            cur = txn.cursor(db=self._db)
            cur.first()
            while cur.key() and cur.key() < cutoff:  # key() is b"" once past the end
                cur.delete()  # moves to the next entry
                deleted += 1
        return deleted
