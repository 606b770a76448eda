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

from engine.http import control_privacy_answers
from engine.http.control_privacy_answers import MailOutcome
from engine.http.control_schemas import Role
from engine.http.schemas import KeyView, SenderRemoved, SenderView

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


class AccountView(msgspec.Struct):
    """``GET /v1/accounts/{id}`` (and an export's ``account``): the record as its holder may see it —
    no key digests, each webhook secret only as its last four characters (``…abcd``). Times are unix
    seconds, 0 for never; ``receipt_statuses`` null: every status change is sent."""

    id: str
    email: str
    created_at: float
    state: Literal["active", "restricted", "closed"]
    closed_at: float
    key_hints: list[str]
    senders: list[str]
    webhook_url: str | None
    webhook_secrets: list[str]
    webhook_secret_rotated_at: float
    receipt_statuses: list[str] | None
    objections: list[str]
    email_confirmed_at: float
    webhook_batch_max: int
    webhook_batch_wait_ms: int
    webhook_disabled_url: str | None
    webhook_disabled_at: float


class LedgerItem(msgspec.Struct):
    """One ledger item of an export: ``kind`` debit, deposit, refund or adjustment; the amount is
    signed (debits negative); ``reference`` the message id, tx hash or adjustment key."""

    seq: int
    kind: str
    account_id: str
    amount_micro_usd: int
    reference: str
    at: float
    chain: str
    from_address: str
    item: int
    reason: str


class DebugWindowRow(msgspec.Struct):
    """One of the holder's open debugging windows at one POP."""

    hold_id: str
    pop: str
    created_at: float
    until: float


class FormerRecord(msgspec.Struct):
    """In an export of an account whose record was deleted at the end of its retention."""

    status: Literal["deleted_after_retention"]
    note: str


class AccountExport(msgspec.Struct, omit_defaults=True):
    """``GET /v1/accounts/{id}/export`` (access and portability): everything held about the account.
    Its top-level fields are these; the records inside ``messages`` (message metadata, never a body),
    ``support_cases``, ``privacy_requests`` and ``incidents`` are each store's own record and may gain
    fields, so they are documented as objects only (see :data:`OPEN`: a later version may add top-level
    groups as the policy adds data it keeps). An account whose record was deleted at the end of its
    retention (closed 90 days ago, ``engine.privacy.former``) has ``account`` null, ``account_record``
    saying so and its ``pseudonym``; the rest is what is still held."""

    account: AccountView | None
    messages: list[dict[str, Any]]
    ledger: list[LedgerItem]
    balance_micro_usd: int
    low_balance_threshold_micro_usd: int
    debug_windows: list[DebugWindowRow]
    api_keys: list[KeyView]
    support_cases: list[dict[str, Any]]
    privacy_requests: list[dict[str, Any]]
    incidents: list[dict[str, Any]]
    account_record: FormerRecord | None = None
    pseudonym: str | None = None


class AccountCreated(msgspec.Struct):
    """``POST /v1/accounts`` (201): the new account, its first API key and its webhook signing secret
    (shown this once), and ``mail``, what became of its confirmation link (``engine.mail.delivery``:
    ``queued``, or ``not_delivered`` without a mail server)."""

    id: str
    api_key: str
    webhook_secret: str
    mail: MailOutcome


class Rectified(msgspec.Struct):
    """``POST /v1/accounts/{id}/rectify``: which fields were corrected, and ``mail``, what became of
    the confirmation link mailed to a new address (``engine.mail.delivery``); null when the address
    was the same (nothing mailed)."""

    id: str
    rectified: list[Literal["email"]]
    mail: MailOutcome | None


class ObjectionAnswer(msgspec.Struct):
    id: str
    purpose: str
    objected: bool


class Erased(msgspec.Struct):
    """``POST /v1/accounts/{id}/erase``: what was deleted, and the pseudonym (``ledger_token``) the
    ledger rows are kept under for 7 years."""

    account: str
    message_records_deleted: int
    queued_mails_deleted: int
    pending_links_deleted: int
    pending_challenges_deleted: int
    ledger_entries_pseudonymised: int
    ledger_token: str
    account_record: Literal["erased", "deleted_after_retention"]  # the latter: already gone (swept)
    kept: str  # what the erasure keeps, and why (the 7-year ledger carve-out)


# --- health, audit, reconciliation ------------------------------------------------------------------


class Health(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    status: Literal["ready"]


class AuditEntryView(msgspec.Struct):
    """One entry of an audit trail (``kind``: which one). ``subject``: the pseudonym of the account it
    is about ("" for none), ``account_id`` its id while the account exists (""). ``detail`` depends on
    the action; a sealed value the trail could not open is shown as ``"sealed"``."""

    kind: Literal["control", "data_subject", "retention_exception"]
    seq: int
    ts: float
    actor: str
    action: str
    target: str
    result: str
    detail: dict[str, Any]
    subject: str
    account_id: str


class AuditPage(msgspec.Struct, omit_defaults=True):
    """``GET /v1/audit``: ``next_since`` (null after the last entry) is where the next page starts,
    the instant of the first entry not on this page (a page ends before an instant it cannot hold
    whole: paging repeats no entry); in a cluster ``workers_missing`` names the workers (node -> why)
    that did not answer within 2 s: their retention-exception entries are not in the page."""

    entries: list[AuditEntryView]
    next_since: float | None
    workers_missing: dict[str, str] | None = None


class ReconciliationCounts(msgspec.Struct):
    """What was checked, and what could not be (counted, not reported)."""

    ledger_items: int
    accounts: int
    records: int
    records_too_recent: int
    items_pseudonymous: int
    items_past_record_retention: int
    debits_owed: int
    refunds_owed: int


class ReconciliationDifference(msgspec.Struct, omit_defaults=True):
    """One disagreement between the message records and the ledger (``engine.billing.reconcile``):
    ``kind`` e.g. balance_mismatch, message_without_debit, duplicate_debit, refund_missing;
    ``account`` its id or pseudonym (psn_…) where the identifiers are shredded; ``expected`` and
    ``found`` (micro-USD) where amounts disagree."""

    kind: str
    account: str
    message_id: str = ""
    expected: int | msgspec.UnsetType = Unset
    found: int | msgspec.UnsetType = Unset
    detail: str = ""


class ReconciliationReport(msgspec.Struct):
    """``GET /v1/ledger/reconciliation``: ``records_checked`` false when no POP store was read (a
    cluster core's data directory); at most 10,000 differences are listed, ``differences_total``
    counts them all."""

    ok: bool
    started_at: float
    finished_at: float
    records_checked: bool
    counts: ReconciliationCounts
    differences_total: int
    differences: list[ReconciliationDifference]


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


class RoutingReplaced(RoutingView):
    """``PUT /v1/routing``: the table now, ``price_notices_queued`` (one mail per account not closed
    when a price changes, else 0) and ``mail``, what became of those mails (``engine.mail.delivery``;
    null when none was queued). The answer may be sent back as the next ``PUT`` as it is: the two
    fields are read-only there, taken and ignored (``control_schemas.RoutingTable``)."""

    price_notices_queued: int
    mail: MailOutcome | None


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
    """A lawful order's notice to its account holders: ``state`` queued, sent, not_delivered (only
    logged: no mail server configured, nobody told), unsent, not_permitted, no_holders (no account
    holder was left to tell: no mail) or placement_incomplete (the order's placement did not complete,
    e.g. it reached only some workers of a cluster: no notice yet; place it again with its
    Idempotency-Key)."""

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


class HoldList(msgspec.Struct, omit_defaults=True):
    """``GET /v1/holds``; in a cluster ``holds_missing`` names the workers (node -> why) that did not
    answer within 2 s: their holds are not in ``holds``."""

    holds: list[HoldView]
    holds_missing: dict[str, str] | None = None


class HoldsPlaced(msgspec.Struct, omit_defaults=True):
    """``POST /v1/holds``: one hold per POP shard; a lawful order's answer says how notice was given
    (null: asked again, and the first request's notice is gone)."""

    holds: list[HoldView]
    notice: NoticeView | None | msgspec.UnsetType = Unset


class NoticeGiven(msgspec.Struct):
    """``POST /v1/holds/{id}/notice``: every hold of the lawful order (one per POP shard) and the
    notice now given (queued) or recorded as not permitted."""

    hold_ids: list[str]
    notice: NoticeView


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
    DepositAnswer, SenderView, SenderRemoved, RestrictionAnswer, ClosedAnswer, AccountView,
    AccountCreated, AccountExport, Rectified, ObjectionAnswer, Erased, KeyView, Health, Readiness, AuditPage,
    ReconciliationReport, CarrierList, CarrierSwitch, RoutingView, RoutingReplaced, Stats,
    TokenCreated, TokenList, TokenRevoked, HoldList, HoldsPlaced, NoticeGiven, DisclosureAnswer, AdjustmentAnswer,
    *control_privacy_answers.ANSWERS)

# Components whose further fields are open-ended by nature: name -> ``additionalProperties``.
OPEN: dict[str, dict[str, Any]] = {
    # counters by carrier kind: numbers (delivered, throughput, ...) or counts by reason (outcomes)
    "CarrierRow": {"type": ["number", "object"]},
    # groups: mail, privacy, ledger, sweeper, actors, transport (objects); workers (a list)
    "Stats": {"type": ["object", "array"]},
    # further groups of data a later version keeps about a holder (each a list of records)
    "AccountExport": {"type": ["array", "object"]},
    # a counter a later reconciliation adds
    "ReconciliationCounts": {"type": "integer"},
}
