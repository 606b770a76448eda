"""Filling an LMDB environment to its last page, for the tests of full stores."""

from __future__ import annotations

import contextlib

import lmdb


def fill(env: lmdb.Environment) -> None:
    """Use up every page of ``env`` with filler records (db ``filler``), halving the record size until not
    even a one-byte record fits, several times in a row (pages a commit frees become usable two commits
    later)."""
    with env.begin(write=True) as txn:  # open the db inside a write txn of our own (no interpreter stall)
        env.open_db(b"filler", txn=txn)
    db = env.open_db(b"filler")
    size, n, refused = 16 << 10, 0, 0
    while refused < 4:
        try:
            with env.begin(write=True) as txn:
                txn.put(n.to_bytes(8, "big"), b"x" * size, db=db)
            n, refused = n + 1, 0
        except lmdb.MapFullError:
            size, refused = max(1, size // 2), refused + (size == 1)
    for extra in range(12):  # the last few pages: too few for a split of the filler db, enough for a small db
        with contextlib.suppress(lmdb.MapFullError), env.begin(write=True) as txn:
            txn.put(b"x", b"x", db=env.open_db(b"filler-%d" % extra, txn=txn))
