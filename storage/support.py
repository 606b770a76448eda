"""Support correspondence (policy 2.1): cases and their messages, kept for resolution + 1 year.

A case is opened by staff (from a mail to support@ or privacy@), optionally names an account, collects the
messages exchanged (``in`` from the customer, ``out`` from us) and is resolved; the retention row
``support_correspondence`` (resolution + 1 year) then runs, and :meth:`SupportCases.sweep` deletes it.
An unresolved case is kept.

Records are sealed (the ``support`` store key, the case id as AAD) in the ``support_cases`` db of
``<data_dir>/privacy``. Durability contract (``storage.records_base``): every write commits (fsync)
before it returns. *Writers:* any thread, serialised. *Readers:* any thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import lmdb

from engine.errors import InputError, InvalidTransition
from storage.crypto import Sealer
from storage.records_base import SealedRecords
from storage.retention import cutoff

__all__ = ["SupportCase", "SupportCases"]

MAX_TEXT = 20000
MAX_MESSAGES = 500


@dataclass(frozen=True)
class SupportCase:
    id: str
    subject: str
    opened_at: float
    opened_by: str
    account_id: str = ""
    resolved_at: float = 0.0
    messages: list[list] = field(default_factory=list)  # [at, "in" | "out", author, text]


class SupportCases:
    """Sealed support cases. *Durable:* each write commits (fsync) before it returns. *Writers:* any
    thread, serialised. *Readers:* any thread. *Kept:* resolution + 1 year (``support_correspondence``)."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._records = SealedRecords(env, sealer, b"support_cases", SupportCase, "support case")
        self._clock = clock

    def open(self, subject: str, text: str, *, opened_by: str, account_id: str = "") -> SupportCase:
        now = self._clock()
        _check_text(subject, text)
        return self._records.put(SupportCase(
            id="sup_" + secrets.token_hex(8), subject=subject, opened_at=now, opened_by=opened_by,
            account_id=account_id, messages=[[now, "in", opened_by, text]]))

    def add_message(self, case_id: str, direction: str, text: str, author: str) -> SupportCase:
        if direction not in ("in", "out"):
            raise InputError("direction is 'in' (from the customer) or 'out' (from us)")
        _check_text("-", text)

        def change(c: SupportCase) -> SupportCase:
            if c.resolved_at:
                raise InvalidTransition("the case is resolved; open a new one")
            if len(c.messages) >= MAX_MESSAGES:
                raise InputError(f"a case holds at most {MAX_MESSAGES} messages")
            return replace(c, messages=[*c.messages, [self._clock(), direction, author, text]])

        return self._records.update(case_id, change)

    def resolve(self, case_id: str) -> SupportCase:
        def change(c: SupportCase) -> SupportCase:
            if c.resolved_at:
                raise InvalidTransition("the case is already resolved")
            return replace(c, resolved_at=self._clock())

        return self._records.update(case_id, change)

    def get(self, case_id: str) -> SupportCase:
        return self._records.get(case_id)

    def all(self) -> Iterator[SupportCase]:
        return self._records.all()

    def sweep(self, now: float) -> int:
        """Delete cases resolved more than a year ago (policy 6); unresolved cases stay."""
        keep_after = cutoff("support_correspondence", now)
        return self._records.delete_where(lambda c: bool(c.resolved_at) and c.resolved_at < keep_after)


def _check_text(subject: str, text: str) -> None:
    if not subject.strip() or not text.strip() or len(subject) > 200 or len(text) > MAX_TEXT:
        raise InputError(f"subject (1-200 characters) and text (1-{MAX_TEXT}) are required")
