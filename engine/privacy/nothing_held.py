"""Data-subject requests of an account that nothing the engine holds names any more (policy 7, 7.5).

Why it exists: a request record names its account by an id sealed under the account's data key and again
under its ledger key (``storage.dsar``). Once both keys are gone — the account erased while the request
was open, its record swept 90 days after closure with no ledger rows to keep (it never deposited: the
sweep shreds the ledger key at once), or the ledger's last row swept after 7 years — the record reads
``account_id=""`` beside its pseudonym. The request is still owed an answer within its deadline, and the
honest one is that nothing about the holder is held any more. What remains is named only by the
pseudonym: the request records themselves, support cases (times and directions; their texts were sealed
under the data key), the incidents that named the account, and the ledger's pseudonymous rows (kind,
amount, time) if it had any; the answer lists exactly that.

- access, portability: :func:`export` — the keys of an account's export (``engine.accounts``), with
  ``account`` None and ``account_record`` ``{"status": "not_held", "note": …}``;
- erasure: :func:`erasure` — nothing left to erase (what remains is kept by its own retention row);
- rectification, restriction, objection: nothing to act on (:func:`cannot_fulfil`); staff refuse them.

No mail goes (there is no address): staff answer through the channel the holder wrote from.

A request written by an older version, whose account was swept before the request had its ledger copy,
reads ``""`` too while the ledger still holds the account's rows under the ledger key: those rows name the
account (:func:`account_in_ledger`), so it is answered as a former account's (``engine.privacy.former``)
and never told that nothing is held.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.errors import InvalidTransition
from engine.privacy.incidents import incident_for_holder
from storage.dsar import DsarRecord
from storage.incidents import Incident
from storage.ledger import LedgerStore
from storage.support import SupportCase

__all__ = ["NOT_HELD", "account_in_ledger", "cannot_fulfil", "erasure", "export"]

NOT_HELD = "not_held"
_WHY = ("nothing the engine holds names the account any more: its record and its keys were deleted "
        "(erased, or deleted 90 days after its closure with no billing-ledger rows to keep)")


def account_in_ledger(ledger: LedgerStore, pseudonym: str) -> str:
    """The account id the ledger's rows under ``pseudonym`` still name (its ledger key exists), or
    ``""`` when they name none (no rows, or their identifiers shredded)."""
    if not pseudonym:
        return ""
    return next((e.account_id for e in ledger.entries(pseudonym) if e.account_id != pseudonym), "")


def export(pseudonym: str, ledger: LedgerStore, requests: Iterable[DsarRecord],
           cases: Iterable[SupportCase], incidents: Iterable[Incident]) -> dict:
    """Access and portability: that nothing names the holder any more, and what is still kept under
    the account's pseudonym (each store read whole: the control port's privacy routes only)."""
    row = ledger.balance_row(pseudonym)
    return {
        "account": None,
        "account_record": {
            "status": NOT_HELD,
            "note": f"Nothing is held about you any more: {_WHY}. What is left is named only by the "
                    "pseudonym below and listed here: the record of your data-subject requests, "
                    "support cases (their times; the texts can no longer be read), the security "
                    "incidents that named the account, and billing-ledger rows without identifiers "
                    "(kind, amount, time), kept for their own retention periods."},
        "pseudonym": pseudonym,
        "messages": [], "ledger": [e._asdict() for e in ledger.entries(pseudonym)],
        "balance_micro_usd": row.balance, "low_balance_threshold_micro_usd": row.threshold,
        "debug_windows": [], "api_keys": [],
        "support_cases": sorted((c.public() for c in cases if c.pseudonym == pseudonym),
                                key=lambda c: c["opened_at"]),
        "privacy_requests": sorted((r.public() for r in requests if r.subject == pseudonym),
                                   key=lambda r: r["received_at"]),
        "incidents": sorted((incident_for_holder(i) for i in incidents if pseudonym in i.subjects),
                            key=lambda i: i["detected_at"])}


def erasure(pseudonym: str, ledger: LedgerStore) -> dict:
    """Erasure: nothing left to erase; the answer has the keys of an erasure's (``engine.accounts``)."""
    kept = sum(1 for _ in ledger.entries(pseudonym))
    return {"account": "", "account_record": NOT_HELD, "message_records_deleted": 0,
            "queued_mails_deleted": 0, "pending_links_deleted": 0, "pending_challenges_deleted": 0,
            "ledger_entries_pseudonymised": kept, "ledger_token": pseudonym,
            "kept": "billing ledger (7 years, AML/tax): each row's kind, amount and time under "
                    "ledger_token; its identifiers were already shredded",
            "note": f"Nothing was left to erase: {_WHY}."}


def cannot_fulfil(request_type: str) -> InvalidTransition:
    """Why a rectification, restriction or objection cannot be carried out (staff refuse it)."""
    return InvalidTransition(f"cannot fulfil a {request_type} request: {_WHY}; there is nothing to act "
                             "on: refuse it stating why")
