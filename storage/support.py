"""Support correspondence (policy 2.1): cases and their messages, kept for resolution + 1 year.

A case is opened by staff (from a mail to support@ or privacy@), optionally names an account, collects the
messages exchanged (``in`` from the customer, ``out`` from us) and is resolved; the retention row
``support_correspondence`` (resolution + 1 year) then runs, and :meth:`SupportCases.sweep` deletes it.
An unresolved case is kept.

Records are sealed (the ``support`` store key, the case id as AAD) in the ``support_cases`` db of
``<data_dir>/privacy``.

Erasure (policy 7.1): correspondence is personal data, and a case outlives the erasure of the account it
names (resolution + 1 year). So a case that names an account stores, under the store key, only its
times, who opened it, each message's time, direction and author, and the account's pseudonym
(``pseudonym``: ``psn_…``, the token the ledger's carve-out, the audit log and data-subject requests use);
the account id, the case's subject line and every message text are sealed again, nested, under the
**account's data key** (``storage.account_keys``), which erasure destroys. After the erasure the case
reads ``account_id=""``, an empty subject and empty texts, with its times, directions, authors and
pseudonym intact: the privacy team can still show when a case was opened, answered and resolved, and
nothing in it leads back to the person. It can still be resolved; adding messages is refused (open a
new case). Cases that name no account, and cases of an older version, are read as they were written.

Durability contract (``storage.records_base``): every write commits (fsync)
before it returns. *Writers:* any thread, serialised. *Readers:* any thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import lmdb
import msgpack

from engine.errors import InputError, InvalidTransition, KeyUnavailable, UnknownAccount
from storage.account_keys import DATA, AccountKeys
from storage.crypto import Sealer
from storage.pseudonyms import token_text
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
    account_id: str = ""  # "" for no account, or once the account is erased
    resolved_at: float = 0.0
    messages: list[list] = field(default_factory=list)  # [at, "in" | "out", author, text]
    pseudonym: str = ""  # the account's psn_…: all that names it once it is erased
    sealed: bytes = field(default=b"", repr=False, compare=False)  # under the account's data key

    def public(self) -> dict:
        """The case as staff and the holder see it (without the sealed blob)."""
        fields = asdict(self)
        del fields["sealed"]
        return fields


class SupportCases:
    """Sealed support cases. *Durable:* each write commits (fsync) before it returns. *Writers:* any
    thread, serialised. *Readers:* any thread. *Kept:* resolution + 1 year (``support_correspondence``)."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, account_keys: AccountKeys | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._keys = account_keys
        self._records = SealedRecords(env, sealer, b"support_cases", SupportCase, "support case",
                                      encode=self._encode, decode=self._decode)
        self._clock = clock

    def open(self, subject: str, text: str, *, opened_by: str, account_id: str = "") -> SupportCase:
        now = self._clock()
        _check_text(subject, text)
        pseudonym = ""
        if account_id and self._keys is not None:
            if not self._keys.has(account_id):
                raise UnknownAccount(f"no account {account_id} (or it was erased)")
            pseudonym = token_text(self._keys.token(account_id))
        return self._records.put(SupportCase(
            id="sup_" + secrets.token_hex(8), subject=subject, opened_at=now, opened_by=opened_by,
            account_id=account_id, messages=[[now, "in", opened_by, text]], pseudonym=pseudonym))

    def add_message(self, case_id: str, direction: str, text: str, author: str) -> SupportCase:
        if direction not in ("in", "out"):
            raise InputError("direction is 'in' (from the customer) or 'out' (from us)")
        _check_text("-", text)

        def change(c: SupportCase) -> SupportCase:
            if c.resolved_at:
                raise InvalidTransition("the case is resolved; open a new one")
            if c.pseudonym and not c.account_id:
                raise InvalidTransition("the case's account was erased; open a new one")
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


    def _encode(self, case: SupportCase, key: bytes) -> dict:
        """Stored: times, directions, authors and the pseudonym readable; the account id, subject line
        and texts sealed under the account's data key (kept sealed as they are once it is gone)."""
        doc = case.public()
        if not case.pseudonym:
            return doc
        sealed = case.sealed
        if case.account_id:
            personal = {"account_id": case.account_id, "subject": case.subject,
                        "texts": [m[3] for m in case.messages]}
            sealed = self._keys.sealer_for_token(_token(case.pseudonym), DATA).seal(
                msgpack.packb(personal), key)
        doc.update(account_id="", subject="", sealed=sealed,
                   messages=[[at, direction, author, ""] for at, direction, author, _ in case.messages])
        return doc

    def _decode(self, doc: dict, key: bytes) -> SupportCase:
        case = SupportCase(**doc)
        if not case.pseudonym or self._keys is None:
            return case
        try:
            personal = msgpack.unpackb(self._keys.sealer_for_token(_token(case.pseudonym), DATA).open(
                case.sealed, key))
        except KeyUnavailable:
            return case  # erased: times, directions, authors and the pseudonym
        texts = personal["texts"] + [""] * (len(case.messages) - len(personal["texts"]))
        return replace(case, account_id=personal["account_id"], subject=personal["subject"],
                       messages=[[*m[:3], t] for m, t in zip(case.messages, texts, strict=True)])


def _token(pseudonym: str) -> bytes:
    return bytes.fromhex(pseudonym.removeprefix("psn_"))


def _check_text(subject: str, text: str) -> None:
    if not subject.strip() or not text.strip() or len(subject) > 200 or len(text) > MAX_TEXT:
        raise InputError(f"subject (1-200 characters) and text (1-{MAX_TEXT}) are required")
