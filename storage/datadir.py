"""The data directory as a whole: one engine at a time, and clear errors when it cannot be used.

Two engines writing the same LMDB environments, key ring and routing file would each believe they own
the messages in them (double sends, double recovery). :class:`DataDirLock` makes that impossible: the
engine holds an exclusive ``flock`` on ``<data_dir>/smsroute.lock`` from start to stop. The OS drops the
lock when the process ends however it ends (``kill -9`` included), so a crash never leaves a stale lock
that blocks the restart. The file holds the owner's pid, for the error message only. A key directory
(``[keys] dir``, which may be outside the data directory and so shared by mistake) is locked the same way
(:class:`KeysDirLock`): two processes on one key ring each rewrite it whole with the keys they know, so
one drops the other's keys and what it sealed no longer opens. A local cluster's NATS directory is locked
too (:class:`NatsDirLock`): its server is started, and a leftover one stopped, only under that lock.

:func:`check_topology` refuses a directory whose messages another topology (one process, or a cluster's
workers) keeps. :func:`startup_error` turns what the OS or LMDB raise while a data directory is opened into one typed
error with a sentence an operator can act on (permission, full disk, not a directory).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import lmdb

from engine.errors import (
    ConfigError,
    DataDirInUse,
    DataDirUnusable,
    KeysDirInUse,
    SmsrouteError,
    StorageError,
    StoreFull,
)
from storage.full import is_full_disk

LOCK_FILE = "smsroute.lock"


class DataDirLock:
    """An exclusive, non-blocking OS lock on one data directory, held while an engine runs.

    *Held by:* the engine that acquired it (its open file), until :meth:`release` or process exit.
    *Refused:* a second engine on the same directory, in this process or another (``DataDirInUse``).
    """

    def __init__(self, data_dir: Path, holder: str = "engine") -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        self.holder = holder  # who holds it, written beside the pid: "engine", "compact"...
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``DataDirInUse`` naming the pid that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip().partition(" ")
            os.close(fd)
            raise self._in_use(pid or "unknown", holder or "engine") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.holder}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (idempotent). The file stays: removing it would race a new owner."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _in_use(self, pid: str, holder: str) -> SmsrouteError:
        by = "`smsroute compact`" if holder == "compact" else "another smsroute engine"
        return DataDirInUse(f"data directory {self.data_dir} is in use by {by} (pid {pid}); stop it "
                            "first or use another data directory")


class KeysDirLock(DataDirLock):
    """The same lock on a key directory (``<keys dir>/smsroute.lock``), held while a process uses its
    key ring. *Refused:* a second engine or worker with the same ``[keys] dir`` (``KeysDirInUse``)."""

    def _in_use(self, pid: str, holder: str) -> SmsrouteError:
        if holder == "compact":
            return KeysDirInUse(f"key directory {self.data_dir} is in use by `smsroute compact` (pid "
                                f"{pid}); start again once it has finished")
        return KeysDirInUse(
            f"key directory {self.data_dir} is in use by another smsroute process (pid {pid}); "
            "two processes on one key ring drop each other's keys: give each engine and each worker "
            "its own [keys] dir")


class NatsDirLock(DataDirLock):
    """The same lock on the directory of a local cluster's own NATS server (``<data>/nats``), held by
    the ``smsroute run --workers N`` that runs that server, from before it starts the server (and writes
    its token) until it has stopped it. *Refused:* a second ``smsroute run`` on the data directory, before
    it touches the first's server, token or pid file (``DataDirInUse``, naming the data directory)."""

    def _in_use(self, pid: str, holder: str) -> SmsrouteError:
        return DataDirInUse(f"data directory {self.data_dir.parent} is in use by another smsroute "
                            f"engine (pid {pid}) and its NATS server; stop it first or use another "
                            "data directory")




def check_topology(data_dir: Path, placement: Any) -> None:
    """Refuse a data directory whose messages another topology keeps: a cluster's core opens no
    ``pops/`` (its workers keep the messages under ``workers/w<k>``) and one process opens no
    ``workers/``, so starting the other way round would leave the open messages unsent, the debits
    and refunds still owed unsent, and the records unreadable and beyond erasure's reach."""
    place, data = placement, data_dir
    if place.clustered and place.runs_core and not place.runs_pops and (data / "pops").is_dir():
        raise ConfigError(
            f"{data / 'pops'} holds the messages of the one-process engine that used {data}; a "
            "cluster's core would never send or show them: run it without --workers (its open "
            "messages resume), or start the cluster on another --data-dir")
    if not place.clustered and place.runs_pops:
        kept = sorted(p.parent.name for p in (data / "workers").glob("w*/pops") if p.is_dir())
        if kept:
            raise ConfigError(
                f"{data / 'workers'} holds the messages of a cluster's workers ({', '.join(kept)}) "
                f"that used {data}; one process would never send or show them: run it with "
                f"--workers {max(int(k[1:]) for k in kept) + 1} as before")


def startup_error(exc: BaseException, data_dir: Path) -> SmsrouteError | None:
    """The typed error an operator sees when opening ``data_dir`` failed with ``exc`` (None: not an
    error of the directory, e.g. a bug, which should surface as it is)."""
    if isinstance(exc, SmsrouteError) and not (isinstance(exc, StorageError) and exc.__cause__):
        return exc  # already typed (a port in use, a locked directory, a config error...)
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    if is_full_disk(cause, data_dir):
        return StoreFull(f"no space left on the device of the data directory {data_dir}: free some "
                         "space and start again (nothing stored was lost)")
    if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        where = f" ({cause.filename})" if cause.filename else ""
        return DataDirUnusable(f"cannot use the data directory {data_dir}{where}: {cause.strerror}; "
                               "it must be readable and writable by the user running smsroute")
    if isinstance(cause, NotADirectoryError | FileExistsError):
        return DataDirUnusable(f"cannot use the data directory {data_dir}: {cause.filename or data_dir} "
                               "is not a directory")
    if isinstance(cause, OSError):
        return DataDirUnusable(f"cannot use the data directory {data_dir}: {cause.strerror or cause}")
    if isinstance(exc, SmsrouteError):
        return exc
    if isinstance(cause, lmdb.Error):
        return StorageError(f"cannot open the stores in {data_dir}: {cause}")
    return None


