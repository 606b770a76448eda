"""The HTTP layer's own LMDB environment (``<data_dir>/http``) and its group-committing writer.

The HTTP servers keep four small stores next to the engine's: idempotency records, operator token digests,
the API request log and the control port's audit log. They share one environment, opened by :func:`storage.env.open_env` (durable:
every commit is fsynced).

:class:`GroupCommitter` lets the asyncio loop write without blocking on fsync: writes queue up, one worker
thread commits everything queued in one transaction (plain puts, or an :class:`Apply` for a write that
needs the transaction, such as an audit append), then resolves each write's asyncio future on the loop.
*Durable:* a write's future resolves only after the transaction that holds it is synced. *Bounded:* writes
callers wait for are bounded by the requests admitted (the customer port's door); batches nobody waits
for (:meth:`GroupCommitter.write_later`: the request log) are not, so at most :data:`MAX_LATER` of them
wait; beyond that one is dropped and counted (:attr:`GroupCommitter.later_dropped`, in puts) — when the
disk stalls, the request log loses entries rather than the process growing without bound. *Writers:* the
committer's thread (the rare synchronous writers — token creation, sweeps — use their own short
transactions; LMDB serialises writers). *Readers:* any thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import lmdb

from engine.errors import StorageError
from storage.env import open_env
from storage.full import FULL_ERRORS, store_full

log = logging.getLogger(__name__)

HTTP_MAP_SIZE = 256 << 20
MAX_BATCH = 4096
MAX_LATER = 64  # write_later batches waiting (a request-log batch holds up to 1,000 entries)
LOG_EVERY = 100  # dropped write_later batches: the first is logged, then one line per this many


class Put(NamedTuple):
    db: bytes  # database name
    key: bytes
    value: bytes | None  # None deletes the key


class Apply(NamedTuple):
    """A write that needs the transaction itself (e.g. an audit append, which numbers its entry)."""

    fn: Callable[[lmdb.Transaction], object]


def open_http_env(data_dir: str | Path, map_size: int = HTTP_MAP_SIZE) -> lmdb.Environment:
    """Open (creating) the HTTP layer's environment under ``data_dir``; ``map_size`` in bytes
    (``[engine] http_map_size_mb``: an existing environment grows to a larger size)."""
    return open_env(Path(data_dir) / "http", map_size=map_size)


class GroupCommitter:
    """Batches puts from one asyncio loop into durable LMDB transactions on one worker thread."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self._dbs: dict[bytes, object] = {}
        self._pending: list[tuple[list[Put | Apply], asyncio.Future[None] | None]] = []
        self.commits = 0  # transactions committed (each one fsync)
        self._later = 0  # write_later batches queued or being committed
        self.later_dropped = 0  # puts of write_later batches dropped over MAX_LATER
        self._later_dropped_batches = 0
        self._running = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="http-commit")
        self._idle = asyncio.Event()
        self._idle.set()

    def register(self, name: bytes, handle: object) -> None:
        """A database the committer writes to, opened by its store at construction.

        Never opened here on demand: py-lmdb's ``open_db`` begins a write transaction while holding
        the interpreter lock, so opening one on the loop thread while the commit thread holds the
        environment's write lock (and waits for the interpreter lock to go on) froze the process."""
        self._dbs[name] = handle

    def _db(self, name: bytes):
        try:
            return self._dbs[name]
        except KeyError:
            raise KeyError(f"database {name!r} is not registered with the committer") from None

    def write(self, puts: list[Put | Apply]) -> asyncio.Future[None]:
        """Queue puts; the returned future resolves once they are durable (or fails with StorageError)."""
        fut = asyncio.get_running_loop().create_future()
        self._enqueue(puts, fut)
        return fut

    def write_later(self, puts: list[Put | Apply], entries: int | None = None) -> None:
        """Queue puts nobody waits for (they still commit durably, in the next batch); dropped and
        counted when :data:`MAX_LATER` such batches already wait (the disk is not keeping up).
        ``entries``: how many entries the batch holds, when not one per put (an :class:`Apply` that
        writes many); that is what :attr:`later_dropped` counts."""
        if self._later >= MAX_LATER:
            dropped = len(puts) if entries is None else entries
            if not self._later_dropped_batches % LOG_EVERY:
                log.warning("http store not keeping up: %d unwaited writes dropped so far "
                            "(request log entries)", self.later_dropped + dropped)
            self._later_dropped_batches += 1
            self.later_dropped += dropped
            return
        self._later += 1
        self._enqueue(puts, None)

    def _enqueue(self, puts: list[Put | Apply], fut: asyncio.Future[None] | None) -> None:
        for put in puts:
            if isinstance(put, Put):
                self._db(put.db)  # a put to a database nobody registered fails here, not in a commit
        self._pending.append((puts, fut))
        if not self._running:
            self._running = True
            self._idle.clear()
            asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    error = await loop.run_in_executor(self._executor, self._commit, batch)
                finally:
                    self._later -= sum(1 for _, fut in batch if fut is None)
                for _, fut in batch:
                    if fut is not None and not fut.done():
                        if error is None:
                            fut.set_result(None)
                        else:
                            fut.set_exception(type(error)(error.message))  # one per waiter
        finally:
            self._running = False
            self._idle.set()

    def _commit(self, batch: list[tuple[list[Put | Apply], asyncio.Future[None] | None]]
                ) -> StorageError | None:
        """Commit the batch; the error every write of it fails with (``StoreFull`` when the map or the
        disk is full: the writes are refused, the records already there stay), or None."""
        try:
            with self._env.begin(write=True) as txn:
                for puts, _ in batch:
                    for put in puts:
                        if isinstance(put, Apply):
                            put.fn(txn)
                        elif put.value is None:
                            txn.delete(put.key, db=self._dbs[put.db])
                        else:
                            txn.put(put.key, put.value, db=self._dbs[put.db])
        except FULL_ERRORS:
            return store_full("http")
        except Exception as exc:  # lmdb errors, or a bug in an Apply: every write of the batch fails
            log.error("http store commit failed: %s", type(exc).__name__)
            return StorageError(f"http store commit failed: {type(exc).__name__}")
        self.commits += 1
        return None

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        await self._idle.wait()

    def close(self) -> None:
        self._executor.shutdown(wait=True)
