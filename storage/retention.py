"""The retention table (privacy policy section 6) as data, and the contract of what enforces it.

Why it exists: retention promises are scattered over stores owned by different actors. Writing them down once,
as one declarative table, lets the sweeper enforce every row, lets an operator see what is due and when, and
makes a change of policy a change of one line. Each row says which store enforces it; a row the engine does
not hold would say so (``held_by_engine=False``; today every row is held).

A store that enforces a row implements :class:`Sweepable` and asks :func:`cutoff` for its boundary, so the
number of days lives here and nowhere else.

>>> RETENTION["api_request_logs"].seconds == 90 * 86400
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, runtime_checkable

from engine.errors import ConfigError

__all__ = ["RETENTION", "RetentionRule", "Start", "Sweepable", "calendar_years", "cutoff", "due_at",
           "operator_view", "with_body_ttl"]

DAY = 86400
YEAR = 365 * DAY  # the engine's own rows (no period in the policy): a nominal year


def calendar_years(n: int) -> int:
    """The longest ``n`` calendar years can be, in seconds (365 days each plus every leap day they may
    span: one per started four years). The policy's periods in years are a minimum the law sets (the
    ledger) or a promise to keep (support correspondence); ``n * 365`` days would end them a day or two
    early whenever a 29 February falls inside, so a row due after this many seconds has always been held
    its full ``n`` years, and at most two days longer."""
    return n * YEAR + -(-n // 4) * DAY


class Start(StrEnum):
    """From which event a retention period runs."""

    WRITTEN = "written"  # the record's creation (message accepted, request served, entry posted)
    CLOSURE = "account_closure"  # while active: kept; from closure: the period runs
    RESOLUTION = "resolution"  # a case's close: support case resolved, request answered, incident closed
    ENDED = "end"  # a retention exception's release or expiry
    LAST_ENTRY = "last_ledger_entry"  # an account's newest ledger entry (once the account is deleted)
    LAST_USE = "last_use"  # a credential's last use (its creation if never used)


@dataclass(frozen=True, slots=True)
class RetentionRule:
    category: str
    seconds: int
    start: Start
    policy_text: str
    reason: str
    enforced_by: str  # the store (and its sweep) that deletes or shreds on time; "" if not held
    held_by_engine: bool = True


_ROWS = (
    RetentionRule("message_bodies", DAY, Start.WRITTEN, "Up to 24 hours (default)",
                  "Operational retries, support reproduction",
                  "storage.bodies.BodyStore.sweep (TTL purge + window key shredding); exceptions: "
                  "storage.holds"),
    RetentionRule("delivery_receipt_metadata", 90 * DAY, Start.WRITTEN, "90 days",
                  "Dispute resolution, carrier-complaint response, customer-facing reporting",
                  "storage.records (Sweepable)"),
    RetentionRule("api_request_logs", 90 * DAY, Start.WRITTEN, "90 days",
                  "Debugging, abuse investigation", "engine.http request log (Sweepable)"),
    RetentionRule("account_records", 90 * DAY, Start.CLOSURE, "Active plus 90 days after closure",
                  "Reactivation, post-closure support", "storage.accounts (Sweepable)"),
    RetentionRule("billing_ledger", calendar_years(7), Start.WRITTEN, "7 years",
                  "AML / tax / audit requirements applicable to payment-handling entities",
                  "storage.ledger (Sweepable; on erasure the identifiers are shredded, amounts kept)"),
    RetentionRule("staff_access_audit_logs", YEAR, Start.WRITTEN,
                  "Not in the policy's table: 1 year (engine default)",
                  "Policy 9: staff access is audit-logged; kept long enough for a yearly review",
                  "storage.audit.AuditLog (Sweepable): control-port requests and retention "
                  "exceptions"),
    RetentionRule("ended_retention_exceptions", YEAR, Start.ENDED,
                  "Not in the policy's table: 1 year after the hold ends (engine default)",
                  "The record of an ended legal hold, debugging window or lawful order backs its audit "
                  "trail; its reason and reference are sealed under a key shredded with it",
                  "storage.holds.Holds (Sweepable); a debugging window's notes are shredded at once "
                  "when its account is erased"),
    RetentionRule("balances_of_deleted_accounts", calendar_years(7), Start.LAST_ENTRY,
                  "With the ledger: deleted with the account's last entry (7 years)",
                  "A balance is derived from ledger entries; once the account is deleted and its last "
                  "entry swept, nothing is left to account for",
                  "storage.ledger (Sweepable): the balance row and the account's ledger key go with "
                  "its last entry; an active account's balance is never swept"),
    RetentionRule("operator_tokens", 90 * DAY, Start.LAST_USE,
                  "Not in the policy's table: 90 days without use (engine default)",
                  "A control-port credential nobody uses is a risk, not a convenience; a revoked token "
                  "is deleted at revocation",
                  "engine.http.tokens.TokenStore (Sweepable)"),
    RetentionRule("support_correspondence", calendar_years(1), Start.RESOLUTION, "Resolution + 1 year",
                  "Audit, recurrence detection",
                  "storage.support.SupportCases (Sweepable): cases held on the control port"),
    RetentionRule("data_subject_requests", YEAR, Start.RESOLUTION,
                  "Not in the policy's table: answered + 1 year (engine default)",
                  "Policy 7.5: the record that a request was answered, and when",
                  "storage.dsar.DsarStore (Sweepable; unverified requests lapse)"),
    RetentionRule("security_incidents", 5 * YEAR, Start.RESOLUTION,
                  "Not in the policy's table: closure + 5 years (engine default)",
                  "Policy 9: incident records and their notifications (GDPR Art. 33(5))",
                  "storage.incidents.IncidentStore (Sweepable)"),
    RetentionRule("outbound_mail", 3 * DAY, Start.WRITTEN,
                  "Not in the policy's table: until sent, at most 3 days (engine default)",
                  "Customer e-mail waiting for the SMTP server",
                  "storage.outbox.Outbox (Sweepable; a sent mail is deleted at once)"),
    RetentionRule("webhook_events", DAY, Start.WRITTEN,
                  "Not in the policy's table: until delivered, at most 1 day (engine default)",
                  "Status-change webhooks waiting for the customer's endpoint (the retry window)",
                  "storage.webhook_outbox.WebhookOutbox (Sweepable; a delivered event is deleted "
                  "with the POP's next commit)"),
)

RETENTION: Mapping[str, RetentionRule] = {rule.category: rule for rule in _ROWS}


@runtime_checkable
class Sweepable(Protocol):
    """A store that deletes (or shreds) what its retention row says is due; returns how many."""

    def sweep(self, now: float) -> int: ...


def with_body_ttl(seconds: int, table: Mapping[str, RetentionRule] = RETENTION
                  ) -> dict[str, RetentionRule]:
    """The table with a shorter body TTL (configurable downwards only: the policy's 24 h is a ceiling)."""
    if not 0 < seconds <= DAY:
        raise ConfigError(f"body TTL must be between 1 s and {DAY} s (policy: 24 h), got {seconds}")
    updated = dict(table)
    updated["message_bodies"] = replace(table["message_bodies"], seconds=seconds)
    return updated


def cutoff(category: str, now: float, table: Mapping[str, RetentionRule] = RETENTION) -> float:
    """Records of ``category`` whose period started before this instant are due for deletion."""
    return now - _rule(category, table).seconds


def due_at(category: str, started: float, table: Mapping[str, RetentionRule] = RETENTION) -> float:
    """When a record whose period started at ``started`` falls due."""
    return started + _rule(category, table).seconds


def operator_view(now: float, oldest: Mapping[str, float | None] | None = None,
                  table: Mapping[str, RetentionRule] = RETENTION) -> list[dict[str, object]]:
    """One row per category for the control port: the rule, the current cutoff, and (given the start of
    the oldest record a store holds) when its next deletion falls due and whether it is overdue."""
    oldest = oldest or {}
    view = []
    for rule in table.values():
        row: dict[str, object] = {
            "category": rule.category, "retention": rule.policy_text, "seconds": rule.seconds,
            "starts_at": rule.start.value, "reason": rule.reason,
            "enforced_by": rule.enforced_by or "not held by the engine",
            "held_by_engine": rule.held_by_engine,
        }
        if rule.held_by_engine:
            row["cutoff"] = now - rule.seconds
            started = oldest.get(rule.category)
            row["next_due_at"] = None if started is None else started + rule.seconds
            row["overdue"] = started is not None and started + rule.seconds <= now
        view.append(row)
    return view


def _rule(category: str, table: Mapping[str, RetentionRule]) -> RetentionRule:
    try:
        rule = table[category]
    except KeyError:
        raise ConfigError(f"no retention rule for {category!r}") from None
    if not rule.held_by_engine:
        raise ConfigError(f"{category!r} is not held by the engine")
    return rule
