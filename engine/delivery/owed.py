"""What a POP has told the ledger and not yet heard back about: debit batches and refunds.

The POP keeps, durably, every debit and refund it owes (``storage.owed_debits``, ``storage.refunds``) until
the ledger answers that it has made them durable (``DebitsRecorded``, ``RefundsRecorded``). The transport
between them may lose a message (the ledger may be in another process, across NATS; it may restart), so
:class:`OwedToLedger` remembers when each was last sent and says which to send again: everything owed at
start-up at once, then whatever stays unanswered for ``resend_after`` seconds. The ledger's entries are
idempotent on message id, so sending again never bills or refunds twice.
"""

from __future__ import annotations

from collections.abc import Iterable

RESEND_AFTER_S = 10.0


class OwedToLedger:
    def __init__(self, resend_after: float = RESEND_AFTER_S) -> None:
        self.resend_after = resend_after
        self.debits: dict[int, float] = {}  # batch -> when last sent (monotonic)
        self.refunds: dict[str, float] = {}  # message id -> when last sent
        self.resent = 0  # batches and refunds sent again (a metric)

    def owed_at_start(self, batches: Iterable[int], refund_ids: Iterable[str]) -> None:
        """What the POP's store says is owed after a restart: all of it is due now."""
        for batch in batches:
            self.debits[batch] = float("-inf")
        for mid in refund_ids:
            self.refunds[mid] = float("-inf")

    def debit_sent(self, batch: int, now: float) -> None:
        self.debits[batch] = now

    def refunds_sent(self, message_ids: Iterable[str], now: float) -> None:
        for mid in message_ids:
            self.refunds[mid] = now

    def debits_recorded(self, batches: Iterable[int]) -> list[int]:
        """The ledger has these batches: returns those that were still owed (to forget durably)."""
        return [b for b in batches if self.debits.pop(b, None) is not None]

    def refunds_recorded(self, message_ids: Iterable[str]) -> None:
        for mid in message_ids:
            self.refunds.pop(mid, None)

    def due(self, now: float) -> tuple[list[int], list[str]]:
        """The debit batches and refunds to send again now (their last send is ``resend_after`` old)."""
        cutoff = now - self.resend_after
        batches = [b for b, at in self.debits.items() if at <= cutoff]
        refunds = [mid for mid, at in self.refunds.items() if at <= cutoff]
        self.resent += len(batches) + len(refunds)
        return batches, refunds
