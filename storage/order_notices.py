"""What was done about telling the account holder of a lawful order (policy 5), per hold.

Why it exists: "where legally permitted we notify the affected account holder before disclosure". When an
order is registered, either its notice mails are queued (their outbox ids are kept here, and the
disclosure path asks the outbox whether each was sent) or the operator records that notice is not legally
permitted, with why and under which reference (a gag order, say). One :class:`OrderNotice` per hold id:
an order over several POP shards is several holds sharing one notice.

Records hold no account id and no address (the mails name their account; a record only their ids). The
reason and reference of a waiver can name people, so records are sealed (the ``order_notices`` store
key, the hold id as AAD) in the ``order_notices`` db of ``<data_dir>/privacy``. A record is swept with its
hold's: ``ENDED_RETENTION_SECONDS`` after the order's end.

Durability contract (``storage.records_base``): every write commits (fsync) before it returns.
*Writers:* any thread, serialised. *Readers:* any thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lmdb

from engine.errors import UnknownAccount
from storage.crypto import Sealer
from storage.holds import ENDED_RETENTION_SECONDS
from storage.records_base import SealedRecords

__all__ = ["OrderNotice", "OrderNotices"]


@dataclass(frozen=True, slots=True)
class OrderNotice:
    """The notice of one lawful order's hold: the mails queued, or why there is none."""

    id: str  # the hold's id
    actor: str
    created_at: float
    until: float  # the order's end: the record is swept ENDED_RETENTION_SECONDS after it
    mail_ids: list[str] = field(default_factory=list)  # none (and not not_permitted): no holder left
    not_permitted: bool = False
    reason: str = ""  # why notice is not legally permitted (only with not_permitted)
    reference: str = ""  # e.g. the non-disclosure order's reference

    def public(self) -> dict:
        """The record as ``GET /v1/holds`` shows it; ``state`` here is what was done when it was
        written (``engine.lawful_notice`` replaces ``queued`` with the mails' outcome)."""
        state = "not_permitted" if self.not_permitted else "queued" if self.mail_ids else "no_holders"
        return {"state": state,
                "mails": len(self.mail_ids), "reason": self.reason, "reference": self.reference,
                "by": self.actor, "at": self.created_at}


class OrderNotices:
    def __init__(self, env: lmdb.Environment, sealer: Sealer) -> None:
        self._records = SealedRecords(env, sealer, b"order_notices", OrderNotice, "order notice")

    def put(self, notice: OrderNotice) -> OrderNotice:
        return self._records.put(notice)

    def put_many(self, notices: list[OrderNotice]) -> list[OrderNotice]:
        """The records of one order's holds, in one transaction: every hold has its record or none."""
        return self._records.put_many(notices)

    def put_back(self, previous: dict[str, OrderNotice | None]) -> None:
        """Undo :meth:`put_many` (hold id -> its record before, None for none), in one transaction:
        records written for mails that could then not be queued must not say a notice was given."""
        self._records.put_many([n for n in previous.values() if n is not None],
                               delete=[h for h, n in previous.items() if n is None])

    def get(self, hold_id: str) -> OrderNotice | None:
        try:
            return self._records.get(hold_id)
        except UnknownAccount:
            return None

    def sweep(self, now: float) -> int:
        """Delete the records of orders that ended more than ``ENDED_RETENTION_SECONDS`` ago."""
        return self._records.delete_where(lambda r: r.until < now - ENDED_RETENTION_SECONDS)

