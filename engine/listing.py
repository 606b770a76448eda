"""Listing an account's messages across the POPs: newest first, a cursor, filters, a bounded cost.

Each POP's record store keeps an index by account (``storage.records``); a page asks every POP for up to
``limit`` records below the cursor and merges them by id (ids are time-ordered). A POP reads at most
:data:`SCAN_LIMIT` records for one page, so a filter that matches little costs a bounded amount: the
page may then hold fewer than ``limit`` messages, and the cursor resumes exactly where the furthest-behind
POP stopped (nothing is skipped, nothing is listed twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.errors import InputError
from engine.ids import id_bytes, id_from_bytes, is_message_id, min_key_for_time
from engine.status import STATUSES

SCAN_LIMIT = 2000  # records one POP reads for one page of a filtered list
MAX_LIMIT = 200  # messages per page (the customer API's bound too)
MAX_UNIX_TIME = 1e11  # since/until stay below it (the year 5138)


def store_pages(pop_stores: Iterable[Any], account_id: str, before: bytes | None, after: bytes,
                limit: int, statuses: frozenset[str] | None, max_scan: int
                ) -> list[tuple[list[Any], bytes | None]]:
    """Each local POP store's part of a page: ``(records, where it stopped or None)``."""
    return [store.records.page(account_id, before=before, after=after, limit=limit,
                               statuses=statuses, max_scan=max_scan) for store in pop_stores]


def page(fetch: Callable[..., list[tuple[list[Any], bytes | None]]], account_id: str, *,
         limit: int = 50, cursor: str | None = None, statuses: frozenset[str] | None = None,
         since: float | None = None, until: float | None = None) -> tuple[list[Any], str | None]:
    """One page of the account's message records, newest first, and the next cursor (None: the last
    page). ``fetch(account_id, before, after, limit, statuses, max_scan)`` returns every POP shard's part
    (:func:`store_pages` here; the workers' in a cluster). ``cursor`` is a previous page's; ``statuses``
    filters; ``since``/``until`` bound the submission time (unix seconds). ``InputError`` for a
    value outside these (the embedding API's callers get the customer API's rules)."""
    statuses = _checked(limit, cursor, statuses, since, until)
    before = id_bytes(cursor) if cursor is not None else None
    if until is not None:
        bound = min_key_for_time(until)
        before = bound if before is None else min(before, bound)
    after = min_key_for_time(since) if since is not None else b""
    found: list[Any] = []
    frontier: bytes | None = None  # the highest key a POP stopped at: nothing below it is known yet
    for records, resume in fetch(account_id, before, after, limit, statuses, SCAN_LIMIT):
        found.extend(records)
        if resume is not None and (frontier is None or resume > frontier):
            frontier = resume
    found.sort(key=lambda r: r.message_id, reverse=True)
    if frontier is not None:
        found = [r for r in found if id_bytes(r.message_id) >= frontier]
    if len(found) > limit:
        return found[:limit], found[limit - 1].message_id
    return found, id_from_bytes(frontier) if frontier is not None else None


def _checked(limit: Any, cursor: Any, statuses: Any, since: Any, until: Any) -> frozenset[str] | None:
    """The page's arguments checked (a typed error, never a ValueError from deep inside); the statuses
    as a set."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"limit must be 1-{MAX_LIMIT}")
    if cursor is not None and not (isinstance(cursor, str) and is_message_id(cursor)):
        raise InputError("cursor is the next_cursor of a previous page")
    for name, t in (("since", since), ("until", until)):
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)
                              or not 0 <= t < MAX_UNIX_TIME):
            raise InputError(f"{name} must be unix seconds")
    if statuses is None:
        return None
    if isinstance(statuses, str) or not all(isinstance(x, str) for x in statuses) \
            or not set(statuses) <= set(STATUSES):
        raise InputError(f"status must be one of {', '.join(STATUSES)}")
    return frozenset(statuses)
