"""Retention exceptions and retention status, engine-wide (policy 2.3 and section 6).

Each POP keeps its own bodies, so each POP has its own :class:`storage.holds.Holds`. A hold on messages is
placed at the POP that holds each message; a hold on an account (a debugging window, or a lawful order naming
an account) is placed at every POP, one hold id per POP. Every placement, read, release and expiry is in the
audit log with who, why, reference and until (``storage.audit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from engine.credentials import require_active
from engine.errors import InputError, UnknownAccount
from storage.holds import HoldKind


class OpenedTrail:
    """A POP's audit log as an auditor reads it: each entry's sealed hold notes (reason, reference)
    opened, or ``"shredded"`` once the hold's notes key is gone."""

    def __init__(self, log: Any, holds: Any) -> None:
        self._log = log
        self._holds = holds

    def iter_entries(self, since: float | None = None) -> Iterator[Any]:
        for entry in self._log.iter_entries(since):
            yield entry._replace(detail=self._holds.open_notes(entry.detail))


class HoldManager:
    """Mixed into :class:`engine.Engine`; needs ``self.runtime`` (its ``holds`` and ``sweeper``)."""

    def place_hold(self, kind: str, *, actor: str, reason: str, reference: str, until: float,
                   message_ids: list[str] | None = None, account_id: str | None = None) -> dict:
        """Place a legal hold, a debugging window or a lawful order; returns the holds placed."""
        try:
            kind = HoldKind(kind)
        except ValueError:
            raise InputError(f"hold kind is one of {', '.join(k.value for k in HoldKind)}") from None
        message_ids = list(message_ids or [])
        if account_id is not None:
            record = self.runtime.accounts.get(account_id)  # UnknownAccount if there is none
            if kind == HoldKind.DEBUG_WINDOW:
                require_active(record)  # the customer's own opt-in: a change of settings
        placed = []
        if message_ids:
            by_pop: dict[str, list[str]] = {}
            for mid in message_ids:
                rec = self.status(mid)
                if rec is None:
                    raise UnknownAccount(f"no message {mid}")
                by_pop.setdefault(rec.pop, []).append(mid)
            for pop, ids in by_pop.items():
                placed.append((pop, self._place_at(pop, kind, actor, reason, reference, until,
                                                   ids, account_id if kind != HoldKind.LEGAL_HOLD
                                                   else None)))
        elif account_id is not None and kind != HoldKind.LEGAL_HOLD:
            for pop in self.runtime.holds:
                placed.append((pop, self._place_at(pop, kind, actor, reason, reference, until,
                                                   [], account_id)))
        else:
            raise InputError("a legal hold names message_ids; a debug window or order an account")
        return {"holds": [{"pop": pop, **asdict(h)} for pop, h in placed]}

    def _place_at(self, pop, kind, actor, reason, reference, until, ids, account_id):
        holds = self.runtime.holds[pop]
        if kind == HoldKind.LEGAL_HOLD:
            return holds.place_legal_hold(ids, actor=actor, reason=reason, reference=reference,
                                          until=until)
        if kind == HoldKind.DEBUG_WINDOW:
            return holds.open_debug_window(account_id, actor=actor, reason=reason,
                                           reference=reference, until=until)
        return holds.register_lawful_order(actor=actor, reason=reason, reference=reference,
                                           until=until, message_ids=ids, account_id=account_id)

    def release_hold(self, hold_id: str, *, actor: str, reason: str) -> dict:
        for pop, holds in self.runtime.holds.items():
            if holds.get(hold_id) is not None:
                return {"pop": pop, **asdict(holds.release(hold_id, actor=actor, reason=reason))}
        raise UnknownAccount(f"no hold {hold_id}")

    def read_held_body(self, hold_id: str, message_id: str, *, actor: str) -> str:
        """The exception's own path to a held body (audit-logged)."""
        for holds in self.runtime.holds.values():
            if holds.get(hold_id) is not None:
                return holds.read_held_body(hold_id, message_id, actor)
        raise UnknownAccount(f"no hold {hold_id}")

    def active_holds(self) -> list[dict]:
        return [{"pop": pop, **asdict(h)} for pop, holds in self.runtime.holds.items()
                for h in holds.active()]

    def audit_trails(self) -> dict[str, list[Any]]:
        """The engine's audit logs by kind: data-subject and account actions (``data_subject``, the core
        log) and retention exceptions (``retention_exception``, one log per POP)."""
        return {"data_subject": [self.runtime.core_audit],
                "retention_exception": [OpenedTrail(self.runtime.audits[pop], holds)
                                        for pop, holds in self.runtime.holds.items()]}

    def retention_status(self) -> dict[str, Any]:
        """The retention table, what each sweep removed, alarms, and the active exceptions."""
        stats = self.runtime.sweeper.proxy().stats().get(timeout=10)
        return {**stats, "holds": self.active_holds()}

    def sweep_now(self) -> dict[str, Any]:
        """Run every retention sweep now (operators and tests)."""
        return self.runtime.sweeper.proxy().sweep_now().get(timeout=60)
