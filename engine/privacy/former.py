"""Former accounts: an account whose record was swept 90 days after closure, while the ledger keeps it.

Why it exists: the account record ends 90 days after closure (policy 6), but the billing ledger keeps the
account's rows for 7 years (AML/tax), with its id, transaction hashes and wallets sealed under the
account's ledger key. Section 7 applies the rights "subject to the retention exceptions in Section 6": the
ledger may be kept, but its holder may still see it (access, portability) and ask for everything else to
go (erasure). So the data-subject routes must tell a former account from an id the engine never knew.

How the engine tells: the record is gone, the ledger's balance row says its account was deleted (the
sweep marks it) and the account's ledger key still exists (erasure destroys it; so does the ledger's own
sweep with the account's last row). An erased account, or a swept one whose ledger rows are gone too, is
not a former account: nothing held names it any more, and it answers like an unknown id (404).
"""

from __future__ import annotations

from typing import Any

from storage.account_keys import LEDGER

__all__ = ["DELETED_AFTER_RETENTION", "is_former", "record_note"]

DELETED_AFTER_RETENTION = "deleted_after_retention"


def is_former(runtime: Any, account_id: str) -> bool:
    """Whether ``account_id`` (whose record the caller found missing) is a swept account the ledger still
    holds. Two reads of the core's stores: for the control port's privacy routes, never the hot path."""
    return (runtime.ledger_store.balance_row(account_id).deleted
            and runtime.account_keys.has(account_id, LEDGER))


def record_note() -> dict[str, str]:
    """What an export of a former account says in place of the record."""
    return {"status": DELETED_AFTER_RETENTION,
            "note": "The account record (e-mail address, settings, API keys, sender IDs, webhook "
                    "settings) was deleted 90 days after the account was closed, as the retention "
                    "policy says. The billing ledger keeps the account's rows for 7 years (AML/tax); "
                    "what is still held is listed here."}
