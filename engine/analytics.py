"""De-identified routing analytics (policy 3, "Service improvement").

Aggregates only: per corridor (POP, destination country) the message count, delivery rate and median
submit-to-final latency; per carrier the success rate. No account id, number, sender ID or body ever appears
in the output; a group is reported only when it holds at least ``MIN_GROUP`` messages from at least
``MIN_ACCOUNTS`` different accounts and no one account contributes more than ``max_account_share`` of its
messages (``[engine] analytics_max_account_share``, 50 % by default), so no single customer's volume or
delivery rate can be read off it, nor isolated by comparing a cell before and after a burst of its traffic;
accounts that objected to analytics (policy 7.1, Art. 21) or whose processing is restricted (Art. 18) are
left out entirely. Bodies are never read (they are not in the records at all).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable

from engine.status import DELIVERED, FINAL
from storage.records import MessageRecord

MIN_GROUP = 5
MIN_ACCOUNTS = 3
MAX_ACCOUNT_SHARE = 0.5


def corridor_analytics(records: Iterable[MessageRecord], excluded_accounts: set[str],
                       max_account_share: float = MAX_ACCOUNT_SHARE) -> dict:
    corridors: dict[tuple[str, str], list[MessageRecord]] = defaultdict(list)
    carriers: dict[str, list[MessageRecord]] = defaultdict(list)
    for rec in records:
        if rec.account_id in excluded_accounts or rec.status not in FINAL:
            continue
        corridors[(rec.pop, rec.country)].append(rec)
        if rec.carrier:
            carriers[rec.carrier].append(rec)
    def shown(recs: list[MessageRecord]) -> bool:
        return _reportable(recs, max_account_share)

    return {
        "min_group": MIN_GROUP,
        "min_accounts": MIN_ACCOUNTS,
        "max_account_share": max_account_share,
        "corridors": [_corridor(pop, country, recs)
                      for (pop, country), recs in sorted(corridors.items()) if shown(recs)],
        "carriers": [{"carrier": name, "messages": len(recs), "success_rate": _rate(recs)}
                     for name, recs in sorted(carriers.items()) if shown(recs)],
    }


def _reportable(recs: list[MessageRecord], max_account_share: float) -> bool:
    """Enough messages, from enough accounts, none of which dominates the cell."""
    per_account = Counter(r.account_id for r in recs)
    return (len(recs) >= MIN_GROUP and len(per_account) >= MIN_ACCOUNTS
            and max(per_account.values()) <= max_account_share * len(recs))


def _corridor(pop: str, country: str, recs: list[MessageRecord]) -> dict:
    latencies = [(r.updated_at - r.submitted_at) * 1000 for r in recs if r.status == DELIVERED]
    return {"pop": pop, "country": country, "messages": len(recs), "delivery_rate": _rate(recs),
            "median_latency_ms": round(statistics.median(latencies), 3) if latencies else None}


def _rate(recs: list[MessageRecord]) -> float:
    return round(sum(1 for r in recs if r.status == DELIVERED) / len(recs), 4)
