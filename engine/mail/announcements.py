"""Mailings to every account: privacy-policy changes (policy 13) and price changes (policy 2.1).

A policy change takes effect no earlier than 30 days after the notice: :func:`policy_change` refuses an
earlier effective date with :class:`~engine.errors.NoticeTooShort` before anything is sent. A price change
is announced when an operator replaces the rate card (``Engine.replace_routing``): :func:`rate_changes`
lists every destination whose per-segment price changed, and the notice is queued before the new rates
are swapped in, so a full outbox refuses the change rather than changing prices silently.
"""

from __future__ import annotations

from engine.errors import InputError, NoticeTooShort
from engine.mail.notices import Notices
from engine.routing import RoutingTable

MIN_POLICY_NOTICE_SECONDS = 30 * 86400
OTHER_DESTINATIONS = "other destinations"


def policy_change(notices: Notices, effective_at: float, summary: str, now: float) -> int:
    """Mail every account not closed; how many. ``effective_at`` must be ≥ 30 days after ``now``."""
    if isinstance(effective_at, bool) or not isinstance(effective_at, int | float):
        raise InputError("effective_at is a unix time")
    if effective_at < now + MIN_POLICY_NOTICE_SECONDS:
        raise NoticeTooShort("a policy change takes effect at least 30 days after the notice "
                             f"(the earliest now is {int(now + MIN_POLICY_NOTICE_SECONDS)})")
    if not isinstance(summary, str) or not summary.strip() or len(summary) > 4000:
        raise InputError("a policy change states what changes (1-4000 characters)")
    return notices.to_accounts("policy_change", None, effective_at=float(effective_at),
                               summary=summary)


def rate_changes(old: RoutingTable, new: RoutingTable) -> list[tuple[str, int | None, int]]:
    """(destination, old price or None, new price) per segment for every price that changes."""
    changes = []
    for country in sorted(set(old.rates) | set(new.rates)):
        before = old.rates.get(country, old.default_rate)
        after = new.rates.get(country, new.default_rate)
        if after is not None and before != after:
            changes.append((country, before, after))
    if new.default_rate is not None and old.default_rate != new.default_rate:
        changes.append((OTHER_DESTINATIONS, old.default_rate, new.default_rate))
    return changes
