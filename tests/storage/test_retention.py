"""The retention table mirrors policy section 6 and answers what is due and when."""

from __future__ import annotations

import dataclasses

import pytest

from engine.errors import ConfigError
from storage.retention import (
    RETENTION,
    Start,
    Sweepable,
    cutoff,
    due_at,
    operator_view,
    with_body_ttl,
)

DAY = 86400


def test_the_table_has_one_row_per_policy_category_with_the_policys_periods():
    assert {c: r.seconds for c, r in RETENTION.items()} == {
        "message_bodies": DAY, "delivery_receipt_metadata": 90 * DAY, "api_request_logs": 90 * DAY,
        "account_records": 90 * DAY, "billing_ledger": (7 * 365 + 2) * DAY,  # the longest 7 years
        "support_correspondence": 366 * DAY,
        # the engine's own rows: the policy gives no period
        "staff_access_audit_logs": 365 * DAY, "data_subject_requests": 365 * DAY,
        "security_incidents": 5 * 365 * DAY, "outbound_mail": 3 * DAY,
        "ended_retention_exceptions": 365 * DAY, "balances_of_deleted_accounts": (7 * 365 + 2) * DAY,
        "operator_tokens": 90 * DAY, "webhook_events": DAY,
    }
    assert RETENTION["support_correspondence"].start is Start.RESOLUTION
    assert RETENTION["account_records"].start is Start.CLOSURE
    assert all(r.reason and r.policy_text for r in RETENTION.values())


def test_every_category_the_engine_holds_names_the_store_that_enforces_it():
    held = [r for r in RETENTION.values() if r.held_by_engine]
    assert all(r.enforced_by for r in held)
    assert RETENTION["support_correspondence"].held_by_engine  # support cases live in the engine


def _with_a_row_not_held() -> dict:
    row = dataclasses.replace(RETENTION["support_correspondence"], category="paper_files",
                              enforced_by="", held_by_engine=False)
    return {**RETENTION, "paper_files": row}


def test_cutoff_and_due_at_follow_the_period():
    assert cutoff("api_request_logs", 100 * DAY) == 10 * DAY
    assert due_at("message_bodies", 5.0) == 5.0 + DAY


def test_a_category_not_held_or_unknown_has_no_cutoff():
    with pytest.raises(ConfigError, match="not held"):
        cutoff("paper_files", 0.0, _with_a_row_not_held())
    with pytest.raises(ConfigError, match="no retention rule"):
        cutoff("selfies", 0.0)


def test_the_body_ttl_can_be_shortened_but_never_lengthened():
    assert with_body_ttl(3600)["message_bodies"].seconds == 3600
    assert RETENTION["message_bodies"].seconds == DAY  # the original is untouched
    for bad in (0, DAY + 1):
        with pytest.raises(ConfigError, match="24 h"):
            with_body_ttl(bad)


def test_the_operator_view_shows_cutoffs_and_what_is_overdue():
    now = 200 * DAY
    view = {row["category"]: row for row in operator_view(
        now, {"api_request_logs": now - 91 * DAY, "delivery_receipt_metadata": now - DAY},
        _with_a_row_not_held())}
    assert view["api_request_logs"]["overdue"] is True
    assert view["delivery_receipt_metadata"]["overdue"] is False
    assert view["delivery_receipt_metadata"]["next_due_at"] == now + 89 * DAY
    assert view["billing_ledger"]["next_due_at"] is None
    assert view["paper_files"]["enforced_by"] == "not held by the engine"
    assert "cutoff" not in view["paper_files"]


def test_a_store_with_a_sweep_method_satisfies_sweepable():
    class Logs:
        def sweep(self, now: float) -> int:
            return 0

    assert isinstance(Logs(), Sweepable)


@pytest.mark.parametrize("category, years", [("billing_ledger", 7), ("balances_of_deleted_accounts", 7),
                                             ("support_correspondence", 1)])
def test_a_period_in_years_never_ends_before_that_many_calendar_years(category, years):
    """Policy 6 counts the ledger (a legal minimum, 7.1's carve-out) and support correspondence in
    years, not in 365-day units: a row written on 1 March 2020 must still be held on 28 February 2027,
    when 7 × 365 days have passed but 7 years have not (2024 has a 29 February)."""
    from datetime import UTC, datetime

    for year in range(2019, 2031):
        for month, day in ((1, 1), (2, 28), (3, 1), (12, 31)):
            start = datetime(year, month, day, 12, tzinfo=UTC)
            anniversary = start.replace(year=year + years)
            assert due_at(category, start.timestamp()) >= anniversary.timestamp(), start
            assert due_at(category, start.timestamp()) <= anniversary.timestamp() + 2 * DAY
