"""engine.delivery.owed: what a POP sends the ledger again, and when."""

from __future__ import annotations

from engine.delivery.owed import OwedToLedger


def test_everything_owed_at_start_is_due_at_once():
    owed = OwedToLedger(resend_after=10)
    owed.owed_at_start([3, 4], ["msg_a"])
    assert owed.due(now=0.0) == ([3, 4], ["msg_a"])


def test_a_batch_is_sent_again_only_after_resend_after_without_an_answer():
    owed = OwedToLedger(resend_after=10)
    owed.debit_sent(1, now=100.0)
    owed.refunds_sent(["msg_a"], now=100.0)
    assert owed.due(now=105.0) == ([], [])
    assert owed.due(now=110.0) == ([1], ["msg_a"])


def test_an_answered_batch_is_never_due_and_is_forgotten_once():
    owed = OwedToLedger(resend_after=10)
    owed.debit_sent(1, now=0.0)
    owed.refunds_sent(["msg_a"], now=0.0)
    assert owed.debits_recorded([1, 2]) == [1]  # 2 was never owed (a duplicate answer)
    assert owed.debits_recorded([1]) == []
    owed.refunds_recorded(["msg_a"])
    assert owed.due(now=1000.0) == ([], [])
