"""The control port's retention status (``GET /v1/retention``) and de-identified analytics
(``GET /v1/analytics``), as msgspec Structs.

Why: as :mod:`engine.http.control_answers`, the published schema is generated from these types and a
live test checks each answer against it. Both answers are open-ended in part, and say so instead of
pretending to a complete list: the last sweep's counts differ by store (a body store counts purged
bodies and shredded windows, the others what they removed; a failed sweep shows only ``error``), and a
later version may add a further de-identified aggregate. Kept apart from ``control_answers`` because
they import its :class:`~engine.http.control_answers.HoldView`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.http.control_answers import HoldView


class RetentionRow(msgspec.Struct, omit_defaults=True):
    """One category of the retention table (``storage.retention.operator_view``): the policy's text,
    the period in seconds and from which event it runs; for a category the engine holds, the current
    cutoff (unix seconds) and, given the oldest record, when the next deletion falls due (null: none
    held) and whether it is overdue."""

    category: str
    retention: str
    seconds: int
    starts_at: str
    reason: str
    enforced_by: str
    held_by_engine: bool
    cutoff: float | msgspec.UnsetType = msgspec.UNSET
    next_due_at: float | None | msgspec.UnsetType = msgspec.UNSET
    overdue: bool | msgspec.UnsetType = msgspec.UNSET


class SweeperView(msgspec.Struct):
    """One process's retention sweeper (``actors.sweeper.SweeperActor.stats``): ``last_run`` unix
    seconds (null: not yet); ``last`` the last sweep's counts by store (numbers by store kind, or
    ``{"error": name}`` for a store whose sweep failed, swept again next tick: ``retrying``);
    ``totals`` running counts (sweeps, failures, purged, removed); ``failures`` and
    ``removed_by_store`` since start by store; ``alarms`` each POP body store's counts by alarm
    (corrupt_record, key_unavailable)."""

    last_run: float | None
    last: dict[str, dict[str, float | str]]
    totals: dict[str, int]
    failures: dict[str, int]
    retrying: list[str]
    removed_by_store: dict[str, int]
    alarms: dict[str, dict[str, int]]
    retention: list[RetentionRow]


class RetentionStatus(SweeperView):
    """``GET /v1/retention``: the sweeper here and the active retention exceptions (``holds``, a lawful
    order's with its notice). In a cluster also each worker's sweeper (``workers``, by node) and the
    workers that did not answer within 2 s (``workers_missing``, ``holds_missing``: node -> why)."""

    holds: list[HoldView]
    workers: dict[str, SweeperView] = msgspec.field(default_factory=dict)
    workers_missing: dict[str, str] = msgspec.field(default_factory=dict)
    holds_missing: dict[str, str] = msgspec.field(default_factory=dict)


class CorridorAggregate(msgspec.Struct):
    """One corridor (POP, destination country) with enough messages from enough accounts:
    ``delivery_rate`` 0-1, ``median_latency_ms`` submit to delivery (null: none delivered)."""

    pop: str
    country: str
    messages: int
    delivery_rate: float
    median_latency_ms: float | None


class CarrierAggregate(msgspec.Struct):
    carrier: str
    messages: int
    success_rate: float


class Analytics(msgspec.Struct):
    """``GET /v1/analytics`` (``engine.analytics``): only groups of at least ``min_group`` messages
    from at least ``min_accounts`` accounts, none above ``max_account_share`` of them; never an
    account, number, sender or body. A later version may add a further aggregate (see :data:`OPEN`)."""

    min_group: int
    min_accounts: int
    max_account_share: float
    corridors: list[CorridorAggregate]
    carriers: list[CarrierAggregate]


ANSWERS: tuple[type[msgspec.Struct], ...] = (RetentionStatus, Analytics)

# Components whose further fields are open-ended: name -> ``additionalProperties``.
OPEN: dict[str, dict[str, Any]] = {
    # a further de-identified aggregate, suppressed by the same rules
    "Analytics": {"type": ["array", "number"]},
}
