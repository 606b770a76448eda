"""``[privacy]``: data-subject requests (policy 7.5) — how many unverified requests one source or account
may open per hour (5), and how long a wallet-signature challenge (900 s) and an e-mailed verification link
(a day) stay usable, each once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from engine.typed_tables import Range, typed_table


@dataclass(frozen=True)
class PrivacySettings:
    """``[privacy]``: data-subject requests (policy 7.5)."""

    # per source address and per account
    unverified_requests_per_hour: Annotated[int, Range(1, 1_000_000)] = 5
    # a wallet-signature challenge is usable this long, once
    challenge_ttl_seconds: Annotated[int, Range(60, 86400)] = 900
    # an e-mailed verification link is usable this long, once (and a challenge staff mail to a holder)
    link_ttl_seconds: Annotated[int, Range(60, 7 * 86400)] = 86400


def privacy_from_table(table: Any) -> PrivacySettings:
    """``[privacy]``, typed (each key's range is on its field)."""
    return typed_table(PrivacySettings, table, "privacy")
