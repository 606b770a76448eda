"""``smsroute compact``: rewrite every LMDB environment of a stopped engine's data directory compactly.

Why: LMDB never wipes a freed page and never shrinks its file. A deleted key or value (the account ids
an older version used as keys, moved to keyed tokens when the stores open; anything a sweep deleted)
stays readable in ``data.mdb`` until its page happens to be reused, and the file keeps the size of its
largest burst. A compacting copy (``mdb_env_copy2`` with ``MDB_CP_COMPACT``) writes only the pages the
current state reaches, so what is freed is left behind and the file is as small as the data.

Offline only: the data directory's lock (:class:`storage.datadir.DataDirLock`), every key directory's
(:class:`storage.datadir.KeysDirLock`) and every nested directory's lock (a cluster's workers) are taken
and held throughout, so no engine starts meanwhile and none may be running; an environment another
process has open (its ``lock.mdb`` is locked by LMDB) is refused too. Nothing is changed unless every
lock was taken.

Crash safety, per environment: the copy is written to ``data.mdb.compacting`` beside ``data.mdb``,
fsynced, renamed over ``data.mdb`` (atomic) and the directory fsynced, so ``data.mdb`` is at every
instant either the old file or the new one, whole; a leftover ``data.mdb.compacting`` (a crash before
the rename) is deleted by the next run and never read by the engine. ``lock.mdb`` describes the old
file (its last transaction id); it is re-initialised from the new file by opening the new environment
once while this process still holds its lock, and LMDB re-initialises it on its first exclusive open
anyway (after a crash between the rename and that). What the engine reads is unchanged: the copy holds
every database and every key and value of the last committed transaction.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import lmdb

from engine.errors import DataDirInUse, DataDirUnusable, StorageError
from storage.datadir import LOCK_FILE, DataDirLock, KeysDirLock
from storage.keys import KEY_STORE_FILE

DATA_FILE = "data.mdb"
LMDB_LOCK_FILE = "lock.mdb"
PARTIAL_SUFFIX = ".compacting"


@dataclass(frozen=True)
class Compacted:
    """One environment: its directory relative to the data directory, its file's size before and after."""

    name: str
    before: int
    after: int


def environments(data_dir: Path) -> list[Path]:
    """Every LMDB environment directory under ``data_dir`` (core, pops/*, http, mail, privacy, a
    cluster's workers/w*/... and edges/e*/...): wherever a ``data.mdb`` is, found rather than listed,
    so a store added later is not forgotten."""
    return sorted(p.parent for p in data_dir.rglob(DATA_FILE) if p.is_file())


def compact(data_dir: Path, keys_dirs: tuple[Path, ...] = ()) -> list[Compacted]:
    """Compact every environment under ``data_dir`` (``keys_dirs``: key directories outside it, locked
    too). Raises ``DataDirInUse``/``KeysDirInUse`` before changing anything while any of it is in use."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataDirUnusable(f"{data_dir} is not a data directory (it does not exist or is not a "
                              "directory): is --data-dir right?")
    envs = environments(data_dir)
    if not envs:  # before any lock: a mistyped path gets no lock file
        raise DataDirUnusable(f"{data_dir} holds no smsroute store (no data.mdb under it): is "
                              "--data-dir right?")
    with _offline(data_dir, keys_dirs, envs):
        return [_compact_one(data_dir, env) for env in envs]


@contextmanager
def _offline(data_dir: Path, keys_dirs: tuple[Path, ...], envs: list[Path]) -> Iterator[None]:
    """Hold every smsroute lock under ``data_dir`` (and of ``keys_dirs``) and every environment's
    ``lock.mdb`` for the whole run; raise the first refusal."""
    with ExitStack() as held:
        top = DataDirLock(data_dir, holder="compact")
        top.acquire()
        held.callback(top.release)
        nested = sorted(p.parent for p in data_dir.rglob(LOCK_FILE) if p.parent != data_dir)
        for directory in [*nested, *(k for k in keys_dirs if (k / LOCK_FILE).exists())]:
            lock = (KeysDirLock if _is_keys_dir(directory) else DataDirLock)(directory, holder="compact")
            lock.acquire()
            held.callback(lock.release)
        for env in envs:
            fd = _lock_environment(data_dir, env)
            if fd is not None:
                held.callback(os.close, fd)
        yield


def _is_keys_dir(directory: Path) -> bool:
    return directory.name == "keys" or (directory / KEY_STORE_FILE).exists()


def _lock_environment(data_dir: Path, env: Path) -> int | None:
    """LMDB keeps a shared ``fcntl`` lock on byte 0 of ``lock.mdb`` while a process has the environment
    open: take it exclusively (None: no lock file, nobody has it open) or refuse."""
    path = env / LMDB_LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
    except OSError:
        os.close(fd)
        raise DataDirInUse(f"the store {env.relative_to(data_dir)} in {data_dir} is open in another "
                           "process; stop it first") from None
    return fd


def _compact_one(data_dir: Path, env: Path) -> Compacted:
    current, partial = env / DATA_FILE, env / (DATA_FILE + PARTIAL_SUFFIX)
    before = current.stat()
    partial.unlink(missing_ok=True)  # a crash of an earlier run before its rename
    try:
        _write_copy(env, partial, before.st_mode & 0o777)
        os.replace(partial, current)
        _fsync_dir(env)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _reset_lock_file(env)
    return Compacted(str(env.relative_to(data_dir)), before.st_size, current.stat().st_size)


def _write_copy(env: Path, target: Path, mode: int) -> None:
    """The compacting copy of ``env`` in ``target``, fsynced. Opened without LMDB's lock file: this
    process holds it (``_lock_environment``) and no other has the environment open."""
    try:
        source = lmdb.open(str(env), readonly=True, lock=False, subdir=True, max_dbs=0)
    except lmdb.Error as exc:
        raise StorageError(f"cannot open the store {env}: {exc}") from exc
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        try:
            source.copyfd(fd, compact=True)
            os.fsync(fd)
        except lmdb.Error as exc:
            raise StorageError(f"cannot write a compacted copy of {env} (nothing was changed): "
                               f"{exc}") from exc
        finally:
            os.close(fd)
    finally:
        source.close()


def _reset_lock_file(env: Path) -> None:
    """Open the new environment once: this process holds ``lock.mdb`` exclusively, so LMDB takes it as
    the only user and re-initialises it (transaction id, reader table) from the new ``data.mdb``."""
    if not (env / LMDB_LOCK_FILE).exists():
        return
    try:
        lmdb.open(str(env), readonly=True, lock=True, subdir=True, max_dbs=0).close()
    except lmdb.Error as exc:
        raise StorageError(f"the compacted store {env} does not open: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
