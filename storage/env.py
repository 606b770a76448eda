"""Opening LMDB environments: every flag in one place.

Durability contract (what every store built on these environments inherits):

* ``sync=True, metasync=True``: a write transaction's ``commit()`` returns only after the data and the meta
  page are fsynced. Anything acknowledged after a commit survives ``kill -9`` and power loss.
* One writer per environment at a time (LMDB's own rule); smsroute gives each environment one writing actor,
  so writers never wait on each other. Readers may run in any thread and never block the writer.
* Commits are grouped: stores expose ``*_many`` writes that take a batch, so one fsync covers many messages.
* ``sync=False`` (the core environment only): a commit fsyncs the data pages it wrote but not the meta
  page that makes them current (LMDB's ``MDB_NOMETASYNC``). It survives ``kill -9`` of the process; a
  power loss may undo the last commits before the next ``env.sync(True)`` (or the next commit's fsync), but
  never corrupts the environment: the pages a meta page points to are on disk before it. Writers that
  acknowledge something (account changes, deposits) call ``env.sync(True)`` before they answer; the only
  writes whose meta page is left to the ledger's tick are debits (each commit still costs its fsync of
  the data pages), which their POPs keep owing until the ledger has synced them (``storage.owed_debits``).
  (Not ``MDB_NOSYNC``: without any fsync the kernel may write the meta page before the pages it points
  to, and a power loss then leaves a corrupt environment, not merely an older one.)
* LMDB does not wipe freed pages. A deleted value can still be read from ``data.mdb`` until its page is reused,
  so deletion is never relied on as erasure; message bodies are encrypted and erased by destroying their key
  (see ``storage.bodies``).
"""

from __future__ import annotations

import os
from pathlib import Path

import lmdb

from engine.errors import StorageError

DEFAULT_MAP_SIZE = 1 << 30  # 1 GiB of address space; the file grows only as pages are used
MAX_DBS = 32


def open_env(path: str | os.PathLike[str], *, map_size: int = DEFAULT_MAP_SIZE,
             max_dbs: int = MAX_DBS, sync: bool = True) -> lmdb.Environment:
    """Open (creating if needed, mode 0700) an LMDB environment directory at ``path``; every commit is
    fsynced (data and meta page) unless ``sync=False``: then the data pages only (see the module
    docstring for who may use that)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return lmdb.open(
            str(directory),
            map_size=map_size,
            max_dbs=max_dbs,
            subdir=True,
            sync=True,
            metasync=sync,
            writemap=False,
            map_async=False,
            readahead=False,
            max_readers=256,
            lock=True,
            mode=0o600,
        )
    except lmdb.Error as exc:
        raise StorageError(f"cannot open LMDB environment at {directory}: {exc}") from exc
