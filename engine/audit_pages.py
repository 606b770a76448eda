"""Pages of audit trails (``GET /v1/audit``): which entries are about one account, and where a page ends.

A page merges several append-only logs by time - the control port's, the core's data-subject log and
each POP shard's retention-exception log, in a cluster on the workers. Each log is in time order, so a
page reads no log further than the page: one process merges its logs lazily, and in a cluster each
worker answers its part of a page with at most the page's size of entries after the cursor
(``LocalShards.hold_audit_page``) instead of its whole trail since the cursor, which the core used to
fetch, whole, for every page.

The cursor is a time, ``next_since``: the next page is the entries at or after it. A page that would
end between two entries of the same instant ends before that instant, and ``next_since`` is that
instant: the next page starts with all of its entries, so paging gives each entry once. (Only if more
than ``limit`` entries shared one instant would the rest of that instant be skipped rather than the
same page be answered for ever: entries are timed with the wall clock's sub-microsecond resolution,
one clock reading each.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

About = tuple[str, str]  # (the account's pseudonym, its id or "" - an erased account's is unknown)


def is_about(entry: Any, about: About) -> bool:
    """An entry about the account: by its pseudonym, or (an entry of an older version, ids in plaintext)
    by its id in the actor or target."""
    subject, account = about
    if getattr(entry, "subject", ""):
        return entry.subject == subject
    return bool(account) and (account in (entry.target, entry.actor.partition(":")[2])
                              or f"id={account}" in entry.target.split(","))


def entries_before(entries: Iterable[Any], until: float, about: About | None) -> Iterator[Any]:
    """The entries of one log (in time order, read from the cursor on) before ``until``, only those
    about one account with ``about``; it stops reading at ``until``."""
    for entry in entries:
        if entry.ts >= until:
            return
        if about is None or is_about(entry, about):
            yield entry


def page_end(rows: list[T], limit: int, ts: Callable[[T], float]) -> tuple[list[T], float | None]:
    """``(the page, next_since)`` from the first ``limit + 1`` rows in time order (``next_since`` None:
    there is no further entry). The page ends before the instant of the first row it cannot hold, so
    the next page, from that instant, repeats none of it (see the module's docstring)."""
    if len(rows) <= limit:
        return rows, None
    boundary = ts(rows[limit])
    shown = [row for row in rows[:limit] if ts(row) < boundary]
    if not shown:  # more than ``limit`` rows at one instant
        return rows[:limit], math.nextafter(boundary, math.inf)
    return shown, boundary
