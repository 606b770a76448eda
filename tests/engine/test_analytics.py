"""De-identified analytics: which cells are shown, and which are suppressed so no customer stands out."""

from __future__ import annotations

from engine.analytics import corridor_analytics
from engine.ids import IdGenerator
from storage.records import MessageRecord

IDS = IdGenerator()


def _msgs(account_id: str, n: int, country: str = "DE", carrier: str = "fra-telekom") -> list:
    return [MessageRecord(IDS.new(), account_id, "+4915112345678", "ACME", country, "fra", carrier,
                          "GSM-7", 1, 75000, 100.0, 100.5, "delivered", "", 30, None, 1, 100.1)
            for _ in range(n)]


def test_a_cell_with_enough_messages_from_enough_accounts_none_dominant_is_shown():
    records = _msgs("acc_a", 2) + _msgs("acc_b", 2) + _msgs("acc_c", 2)
    report = corridor_analytics(records, set())
    assert [(c["pop"], c["country"], c["messages"]) for c in report["corridors"]] == [("fra", "DE", 6)]
    assert report["carriers"][0]["messages"] == 6


def test_a_cell_where_one_account_sends_more_than_half_is_suppressed():
    """Three accounts and many messages, but one account's traffic would be readable off the cell."""
    records = _msgs("acc_big", 6) + _msgs("acc_b", 2) + _msgs("acc_c", 2)  # 60 % from one account
    report = corridor_analytics(records, set())
    assert report["corridors"] == [] and report["carriers"] == []
    assert report["max_account_share"] == 0.5


def test_exactly_the_configured_share_is_shown_and_the_share_is_configurable():
    records = _msgs("acc_a", 4) + _msgs("acc_b", 2) + _msgs("acc_c", 2)  # 50 %: at the bound
    assert len(corridor_analytics(records, set())["corridors"]) == 1
    assert corridor_analytics(records, set(), max_account_share=0.4)["corridors"] == []


def test_cells_are_judged_separately():
    shown = _msgs("acc_a", 2) + _msgs("acc_b", 2) + _msgs("acc_c", 2)
    dominated = _msgs("acc_a", 8, country="AT") + _msgs("acc_b", 1, "AT") + _msgs("acc_c", 1, "AT")
    report = corridor_analytics(shown + dominated, set())
    assert [c["country"] for c in report["corridors"]] == ["DE"]
