"""A reserve of free pages in every LMDB map, kept for the writes that free space.

Why: LMDB is copy-on-write, so even a delete needs new pages (every page it changes is copied, and the
freed ones become usable only to later transactions). A map used to its last page therefore refuses the
very writes an operator needs most when it is full: an erasure, a retention sweep, a compaction. So
ordinary writes — anything that stores something new — call :func:`ensure_headroom` once per transaction
and are refused with ``StoreFull`` (``storage.full``) once fewer than :func:`reserve_pages` pages are left;
deletes, erasures, sweeps and compaction never call it and may use the reserve.

Where it applies today: the core's accounts and API keys; the privacy stores (data-subject requests,
incidents, support cases, links and challenges, whose erasure and sweep delete in batches that fit the
reserve); and the POP message stores (one check per commit round, ``actors.group_commit``: a round's NEW
messages are refused ``store_full`` while the environment is down to its reserve, and everything else the
round carries - status updates, body discards, refund and debit bookkeeping, webhook events of messages
already accepted - is written, into the reserve if need be, because it finishes messages the customer was
already told about; the erasure of an account's records and the sweeps of records, bodies and webhook
events delete in batches that fit the reserve). Not yet: the ledger, the mail outbox, the HTTP store, and
the holds and audit trail kept in a POP's environment.

The reserve: :data:`RESERVE_FRACTION` of the map, at least :data:`RESERVE_FLOOR_BYTES`, at most a
quarter of the map (so a tiny map still takes writes). A 1 GiB map keeps ~51 MiB back, a 256 MiB one
~13 MiB, a 1 MiB one 256 KiB.

Cost: one ``env.info()`` (reads the meta page, well under a microsecond) while the map's high-water mark
is below the limit — the usual case. Only past it are the free pages counted: the pages of every database
(their records in the main database, at most ``max_dbs`` of them) subtracted from the high-water mark, so
pages freed by deletes count as room again.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from storage.full import refusing_when_full, store_full

RESERVE_FRACTION = 0.05
RESERVE_FLOOR_BYTES = 1 << 20
META_PAGES = 2  # pages 0 and 1: LMDB's two meta pages
T = TypeVar("T")
_DB_RECORD = struct.Struct("=IHHQQQQQ")  # LMDB's MDB_db: pad, flags, depth, branch, leaf, overflow, entries, root


def reserve_pages(map_size: int, page_size: int) -> int:
    """How many pages of a map of ``map_size`` bytes ordinary writes leave free."""
    pages = map_size // page_size
    return min(max(int(pages * RESERVE_FRACTION), RESERVE_FLOOR_BYTES // page_size), pages // 4)


def free_pages(env: Any) -> int:
    """Pages of ``env``'s map a write can still use: those never used yet, plus those freed by deletes
    (the high-water mark less the pages every database holds). Slightly generous: it does not count the
    pages of LMDB's free list itself, nor freed pages an old reader still sees."""
    info, main = env.info(), env.stat()
    high = info["last_pgno"] + 1
    used = META_PAGES + main["branch_pages"] + main["leaf_pages"] + main["overflow_pages"]
    with env.begin() as txn:
        for _, value in txn.cursor():  # the main database: one record per named database
            if len(value) == _DB_RECORD.size:
                _, _, _, branch, leaf, overflow, _, _ = _DB_RECORD.unpack(value)
                used += branch + leaf + overflow
    return info["map_size"] // main["psize"] - high + max(0, high - used)


def has_headroom(env: Any) -> bool:
    """Whether an ordinary write may still go into ``env`` without eating into its reserve."""
    info, psize = env.info(), env.stat()["psize"]
    reserve = reserve_pages(info["map_size"], psize)
    if info["map_size"] // psize - (info["last_pgno"] + 1) >= reserve:
        return True  # the high-water mark is below the limit: nothing to count
    return free_pages(env) >= reserve


def ensure_headroom(env: Any, store: str) -> None:
    """Raise ``StoreFull`` naming ``store`` (counted and logged, ``storage.full``) if an ordinary write
    would eat into ``env``'s reserve. Call once per write transaction or batch, before it."""
    if not has_headroom(env):
        raise store_full(store)


@contextmanager
def storing_new(env: Any, store: str) -> Iterator[None]:
    """The block around a transaction that stores something new: refused up front while ``env`` is down
    to its reserve, and LMDB's full errors inside it turned into ``StoreFull`` (``refusing_when_full``)."""
    ensure_headroom(env, store)
    with refusing_when_full(store):
        yield


def batch_size(env: Any, pages_per_item: int = 1) -> int:
    """How many items a deleting transaction of ``env`` may take so that it fits the reserve, each item
    changing up to ``pages_per_item`` pages (one per database it deletes from).

    Why a quarter: a delete copies every leaf it changes, and the pages it frees are reusable only two
    commits later, so one transaction deleting entries spread over the whole tree needs about as many
    free pages as the tree has leaves. A quarter of the reserve per transaction keeps two in flight well
    inside it; a full map still shrinks."""
    reserve = reserve_pages(env.info()["map_size"], env.stat()["psize"])
    return max(1, reserve // 4 // max(1, pages_per_item))


def in_batches(env: Any, items: Sequence[T], pages_per_item: int = 1) -> Iterator[Sequence[T]]:
    """``items`` in slices of :func:`batch_size`: one deleting transaction each."""
    size = batch_size(env, pages_per_item)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def delete_in_batches(env: Any, db: Any, keys: list[bytes], store: str) -> int:
    """Delete ``keys`` from ``db`` in transactions small enough for ``env``'s reserve (:func:`batch_size`);
    how many were there. Each batch is durable on its own (an interrupted erasure or sweep is finished by
    the next run: the keys it chose stay chosen)."""
    removed = 0
    for batch in in_batches(env, keys):
        with refusing_when_full(store), env.begin(write=True) as txn:
            removed += sum(1 for key in batch if txn.delete(key, db=db))
    return removed
