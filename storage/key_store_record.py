"""Which key store sealed an environment's data: recorded in it, checked at every start.

Every LMDB environment that holds sealed data (the core's, every POP's, a worker's too) records the id of
the key store (``storage.keys.KeyRing.ring_id``) it was first opened with, in its ``key_store`` database.
A start with another key store - a wrong ``[keys] dir``, an empty or new key directory - is refused with
``KeyUnavailable`` instead of starting, saying it is ready, and then failing on every record and body it
had sealed before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lmdb

from engine.errors import KeyUnavailable


def check_key_store(env: Any, keys: Any, keys_dir: Path, marker: str) -> None:
    """Record ``keys``' id in ``env`` (first start), or refuse if ``env`` was sealed with another key store.

    A store that holds data but no record (written before the record existed) takes the key store it is
    opened with now - unless that one lacks ``marker``, the named key every key store that ever opened
    such a store made at its first start (``ledger``: the core's, ``holds``: a POP's): an empty or new key
    directory is refused so. Another engine's key directory is not told apart (it has the key too): that
    needs the record, written at the first start after the upgrade."""
    meta = env.open_db(b"key_store")
    with env.begin(write=True) as txn:
        recorded = txn.get(b"ring_id", db=meta)
        foreign = recorded is None and not keys.has_named(marker) and _holds_data(txn)
        if recorded is None and not foreign:
            txn.put(b"ring_id", keys.ring_id, db=meta)
    env.sync(True)
    if foreign:
        raise KeyUnavailable(
            f"the data in {env.path()} was sealed with another key store than the one in {keys_dir} "
            f"(it has no {marker!r} key, which every key store that opened this data has): is "
            "[keys] dir right? (restore the key directory; a new one can read nothing)")
    if recorded is not None and bytes(recorded) != keys.ring_id:
        raise KeyUnavailable(
            f"the data in {env.path()} was sealed with key store {bytes(recorded).hex()}, but "
            f"{keys_dir} holds key store {keys.ring_id.hex()}: is [keys] dir right? (restore "
            "the key directory; a new one can read nothing)")


def _holds_data(txn: lmdb.Transaction) -> bool:
    """Whether an environment was written before: its main database names a database other than
    ``key_store`` (a new one names none yet when the key store is checked)."""
    with txn.cursor() as cursor:
        return any(bytes(key) != b"key_store" for key in cursor.iternext(values=False))
