"""The control port's JSON answers that operators' automation parses, defined once as msgspec Structs.

Why: as for the customer API's answers (:class:`engine.http.schemas.BalanceView`, ...), the published
schema is generated from these types (:func:`engine.http.openapi.control_document`), so each answer is
described once and a live test (``tests/engine/http/test_openapi_live_functional.py``) checks that the
servers' answers validate against it. A field a handler always writes is required; one that only some
answers carry (a carrier whose actor did not answer shows only ``carrier``, ``pop`` and ``error``) has a
default and is optional. Answers that are open-ended by nature — per-carrier and per-POP counters, the
engine's stats — document their stable fields and say in :data:`OPEN` what else may appear (JSON Schema
``additionalProperties``), rather than pretend the list is complete.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from engine.http.control_schemas import Role
from engine.http.schemas import SenderRemoved, SenderView

Unset = msgspec.UNSET


# --- accounts ---------------------------------------------------------------------------------------


class DepositAnswer(msgspec.Struct):
    """``POST /v1/accounts/{id}/deposits``: the balance after the deposit (a replay: unchanged)."""

    balance_micro_usd: int


class RestrictionAnswer(msgspec.Struct):
    id: str
    restricted: bool


class ClosedAnswer(msgspec.Struct):
    id: str
    state: Literal["closed"]


# --- carriers and routing ---------------------------------------------------------------------------


class CarrierRow(msgspec.Struct, omit_defaults=True):
    """One carrier's state and counters (further counters by carrier kind: numbers, or counts by
    reason)."""

    carrier: str
    pop: str
    kind: str = ""
    suspended: bool = False
    connected: bool = False
    available: bool = False
    binds: list[dict[str, Any]] = msgspec.field(default_factory=list)
    window: int = 0
    window_in_use: int = 0
    error: str = ""  # its actor did not answer: only carrier, pop and error
    workers: list[dict[str, Any]] = msgspec.field(default_factory=list)  # in a cluster


class CarrierList(msgspec.Struct, omit_defaults=True):
    """In a cluster ``carriers_missing`` names the workers (node -> why) that did not answer within
    2 s: their rows are not in ``carriers``."""

    carriers: list[CarrierRow]
    carriers_missing: dict[str, str] = msgspec.field(default_factory=dict)


class CarrierSwitch(msgspec.Struct):
    """``POST /v1/carriers/{name}/suspend`` and ``/resume``."""

    carrier: str
    suspended: bool


class RouteCarrier(msgspec.Struct):
    carrier: str
    priority: int
    weight: int
    cost_micro_usd: int


class Route(msgspec.Struct):
    match: list[str]
    pop: str
    weight: int
    carriers: list[RouteCarrier]


class RoutingView(msgspec.Struct):
    """The routing table and rate card (micro-USD per segment by region, ``default`` for the rest)."""

    routes: list[Route]
    rates: dict[str, int]


class Stats(msgspec.Struct):
    """Engine counters. The stable fields; further top-level groups (``mail``, ``privacy``, ``ledger``,
    ``workers``, ``transport``, ``worker_transport``, ``pops_missing``, ...) and each POP's counters are open-ended."""

    in_flight: int
    max_in_flight: int
    pending_requests: int
    pops: list[dict[str, Any]]
    sessions: int
    dead_actors: int
    dead_sessions: int


# --- operator tokens --------------------------------------------------------------------------------


class TokenCreated(msgspec.Struct):
    """The new operator token (shown once)."""

    name: str
    roles: list[Role]
    token: str


class TokenView(msgspec.Struct):
    name: str
    roles: list[Role]
    created_at: float
    last_used_at: float | None


class TokenList(msgspec.Struct):
    tokens: list[TokenView]


class TokenRevoked(msgspec.Struct):
    name: str
    revoked: bool


# --- holds ------------------------------------------------------------------------------------------


class NoticeView(msgspec.Struct, omit_defaults=True):
    """A lawful order's notice to its account holders: ``state`` queued, sent, unsent or not_permitted."""

    state: str
    mails: int
    reason: str = ""
    reference: str = ""
    by: str = ""
    at: float = 0.0


class HoldView(msgspec.Struct, omit_defaults=True):
    """One retention exception at one POP shard (``pop``: the shard's address)."""

    pop: str
    hold_id: str
    kind: Literal["legal_hold", "debug_window", "lawful_order"]
    actor: str
    reason: str
    reference: str
    created_at: float
    until: float
    message_ids: list[str]
    account_id: str | None
    ended_at: float | None
    ended_by: str | None
    subject: str
    notice: NoticeView | None | msgspec.UnsetType = Unset  # a lawful order's (GET /v1/holds)


class HoldList(msgspec.Struct):
    holds: list[HoldView]


class HoldsPlaced(msgspec.Struct, omit_defaults=True):
    """``POST /v1/holds``: one hold per POP shard; a lawful order's answer says how notice was given
    (null: asked again, and the first request's notice is gone)."""

    holds: list[HoldView]
    notice: NoticeView | None | msgspec.UnsetType = Unset


class AdjustmentAnswer(msgspec.Struct):
    """``POST /v1/accounts/{id}/adjustments``: ``duplicate`` when the idempotency_key was written
    before (nothing written now)."""

    account_id: str
    amount_micro_usd: int
    balance_micro_usd: int
    duplicate: bool


class DisclosureAnswer(msgspec.Struct):
    hold_id: str
    message_id: str
    body: str


# Every answer type of the control port, in the order its OpenAPI document lists them.
ANSWERS: tuple[type[msgspec.Struct], ...] = (
    DepositAnswer, SenderView, SenderRemoved, RestrictionAnswer, ClosedAnswer, CarrierList,
    CarrierSwitch, RoutingView, Stats, TokenCreated, TokenList, TokenRevoked, HoldList, HoldsPlaced,
    DisclosureAnswer, AdjustmentAnswer)

# Components whose further fields are open-ended by nature: name -> ``additionalProperties``.
OPEN: dict[str, dict[str, Any]] = {
    # counters by carrier kind: numbers (delivered, throughput, ...) or counts by reason (outcomes)
    "CarrierRow": {"type": ["number", "object"]},
    # groups: mail, privacy, ledger, sweeper, actors, transport (objects); workers (a list)
    "Stats": {"type": ["object", "array"]},
}
