"""Helpers for incident tests: a sealer that counts what it opens, and an incident as the version with a
row per holder but no counts in the record (0e38d14) wrote it."""

from __future__ import annotations

import lmdb
import msgpack

from storage.incidents import NOTICES_DB, Incident
from storage.records_base import SealedRecords

ROWS_WITHOUT_COUNTS_FIELDS = (
    "id", "summary", "detected_at", "opened_at", "opened_by", "accounts", "authority_deadline",
    "authority_notified_at", "authority_reference", "customers_notified_at", "customers_notified",
    "closed_at", "subjects", "sealed_accounts", "customers_not_delivered", "customers_unsent",
    "notice_mails")


class CountingSealer:
    """The store's sealer, counting the blobs it opens (each a record or a holder's row read)."""

    def __init__(self, inner) -> None:
        self._inner, self.opened = inner, 0

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        return self._inner.seal(plaintext, aad)

    def open(self, blob: bytes, aad: bytes = b"") -> bytes:
        self.opened += 1
        return self._inner.open(blob, aad)


def put_with_rows_without_counts(env: lmdb.Environment, sealer, incident: Incident,
                                 rows: list[list[str]]) -> None:
    """The record without holder_counts, notice_layout, next_notice_row; the rows ``<id>/<n>`` =
    sealed ``[customer, mail id, outcome]``."""
    SealedRecords(env, sealer, b"incidents", Incident, "incident",
                  encode=lambda i, key: {k: getattr(i, k) for k in ROWS_WITHOUT_COUNTS_FIELDS}
                  ).put(incident)
    db = env.open_db(NOTICES_DB)
    with env.begin(write=True) as txn:
        for n, row in enumerate(rows):
            key = f"{incident.id}/".encode() + n.to_bytes(8, "big")
            txn.put(key, sealer.seal(msgpack.packb(row), key), db=db)
