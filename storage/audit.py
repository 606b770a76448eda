"""Append-only audit log: who did what to which target, when, and with what result.

Why it exists: the policy makes every exception to body retention (legal hold, debugging window, lawful
order) and every operator access "audit-logged" (2.3, 9). The log is an LMDB database ``audit`` in the
environment it is given: 8-byte big-endian sequence number -> msgpack ``[ts, actor, action, target, result,
detail]``. This module offers no update and no delete.

It never holds message bodies, API keys, secrets or tokens: :meth:`AuditLog.append` refuses a ``detail`` whose
keys name such things, and callers pass counts and ids, not content.

Accounts (policy 7.1, 9): the log is kept a year, longer than an erased account may be named, so it never
stores an account id readable. An entry about an account (``append(..., account=acc_…)``) names it by its
keyed pseudonym (``psn_…``, :meth:`storage.pseudonyms.Pseudonyms.pseudonym`: the token the ledger's
carve-out and the data-subject request records use): the id is replaced by the pseudonym wherever it
occurs in ``actor`` and ``target`` (``customer:acc_…``, ``id=acc_…``), the pseudonym is kept as
``subject``, and the id itself is sealed under the **account's data key** (``storage.account_keys``), which
erasure destroys. Stored: ``[ts, actor, action, target, result, detail, subject, sealed_account]``.

Read while the account exists, an entry shows its account id (``account_id``, and in ``actor`` /
``target`` where it was written) and its ``subject``. After erasure an entry keeps its time, action,
result, detail, the staff member who acted, and the pseudonym (in ``subject``, ``actor`` / ``target``);
``account_id`` reads ``""`` and nothing in the log opens to the id again. Staff follow an erased
account's history by its pseudonym (the erasure's answer, ``ledger_token``, names it). Entries of an
older version (six fields, ids in plaintext) are still read as they were written (``subject`` ``""``),
and age out with the year's retention.

Durability contract:

* *Durable:* :meth:`AuditLog.append` without ``txn`` commits (fsync) before it returns; with ``txn`` the
  entry commits or aborts with the caller's change, so an action and its audit entry are never apart.
* *Writers:* any thread (LMDB serialises write txns). *Readers:* any thread.
* *Ordered:* sequence numbers are dense and increasing in commit order.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import lmdb
import msgpack

from engine.errors import CorruptRecord, InputError, KeyUnavailable, StoreFull
from storage.account_keys import DATA
from storage.pseudonyms import token_text

__all__ = ["AuditEntry", "AuditLog"]

_SEQ = struct.Struct(">Q")
_FORBIDDEN = ("body", "text", "content", "secret", "token", "password", "api_key", "apikey", "key_material")


class AuditEntry(NamedTuple):
    seq: int
    ts: float
    actor: str
    action: str
    target: str
    result: str
    detail: dict[str, Any]
    subject: str = ""  # the account's pseudonym (psn_…); "" for an entry about no account
    account_id: str = ""  # while the account exists; "" once it is erased


class AuditLog:
    """Append-only audit entries in the ``audit`` db of ``env``. With ``accounts``
    (:class:`storage.account_keys.AccountKeys`), entries about an account name it by its pseudonym and
    seal its id under its data key; without (a stand-in, a test), they keep the id as given."""

    def __init__(self, env: lmdb.Environment, *, clock: Callable[[], float] = time.time,
                 accounts: Any = None) -> None:
        self.env = env
        self._db = env.open_db(b"audit")
        self._clock = clock
        self._accounts = accounts

    def append(self, actor: str, action: str, target: str, result: str,
               detail: dict[str, Any] | None = None, *, account: str | None = None,
               subject: str | None = None, txn: lmdb.Transaction | None = None) -> int:
        """Record one entry; returns its sequence number. ``detail`` must be msgpack-able and carry no
        body or secret (``InputError`` otherwise). ``account``: the account the entry is about, named
        in ``actor`` / ``target`` by its pseudonym only (see the module's docstring). ``subject``
        instead: the pseudonym (``psn_…``) of an account nothing names any more (its keys gone), which
        the entry is about: listed with that account's entries, no id to seal."""
        detail = dict(detail or {})
        _check_detail(detail)
        for name, value in (("actor", actor), ("action", action), ("target", target),
                            ("result", result)):
            if not isinstance(value, str) or not value:
                raise InputError(f"audit {name} must be a non-empty string")
        fields = [self._clock(), actor, action, target, result, detail]
        if account and self._accounts is not None:
            fields = self._pseudonymised(fields, account)
        elif subject:
            if not (isinstance(subject, str) and subject.startswith("psn_")):
                raise InputError("an audit subject is a pseudonym (psn_…)")
            fields = [*fields, subject, b""]
        record = msgpack.packb(fields)
        if txn is not None:
            return self._append_in(txn, record)
        try:
            with self.env.begin(write=True) as own:
                return self._append_in(own, record)
        except lmdb.MapFullError:
            raise StoreFull(f"audit log in {self.env.path()} is full") from None

    def _append_in(self, txn: lmdb.Transaction, record: bytes) -> int:
        cursor = txn.cursor(db=self._db)
        seq = _SEQ.unpack(cursor.key())[0] + 1 if cursor.last() else 1
        txn.put(_SEQ.pack(seq), record, db=self._db, append=True)
        return seq

    def _pseudonymised(self, fields: list[Any], account: str) -> list[Any]:
        """``fields`` with ``account`` replaced by its pseudonym, plus the pseudonym and the id sealed
        under the account's data key (``b""`` when it has none: unknown, or already erased)."""
        subject = token_text(self._accounts.token(account))
        ts, actor, action, target, result, detail = fields
        try:
            sealed = self._accounts.sealer(account, DATA).seal(account.encode(), _aad(subject))
        except KeyUnavailable:
            sealed = b""
        return [ts, actor.replace(account, subject), action, target.replace(account, subject),
                result, detail, subject, sealed]

    def entries(self, since: float | None = None) -> list[AuditEntry]:
        """Every entry (or those at or after ``since``), oldest first."""
        return list(self.iter_entries(since))

    def iter_entries(self, since: float | None = None) -> Iterator[AuditEntry]:
        opened: dict[str, str] = {}  # pseudonym -> account id ("" once erased), for this read
        with self.env.begin(db=self._db) as txn:
            for key, value in txn.cursor():
                entry = _decode(key, value)
                if since is None or entry.ts >= since:
                    yield self._opened(entry, value, opened)

    def _opened(self, entry: AuditEntry, value: bytes, opened: dict[str, str]) -> AuditEntry:
        """An entry about an account with its id opened while the account's data key lives."""
        if not entry.subject or self._accounts is None:
            return entry
        account = opened.get(entry.subject)
        if account is None:
            sealed = msgpack.unpackb(value, raw=False)[7]
            account = ""
            if sealed:
                token = bytes.fromhex(entry.subject.removeprefix("psn_"))
                try:
                    account = self._accounts.sealer_for_token(token, DATA).open(
                        sealed, _aad(entry.subject)).decode()
                except KeyUnavailable:
                    account = ""
            opened[entry.subject] = account
        if not account:
            return entry
        return entry._replace(actor=entry.actor.replace(entry.subject, account),
                              target=entry.target.replace(entry.subject, account),
                              account_id=account)

    def sweep(self, now: float, retention_seconds: float = 365 * 86400) -> int:
        """Delete entries older than the retention period (oldest first; the log is in time order)."""
        cutoff = now - retention_seconds
        removed = 0
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor(db=self._db)
            while cursor.first():
                if _decode(cursor.key(), cursor.value()).ts >= cutoff:
                    break
                cursor.delete()
                removed += 1
        return removed

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db)["entries"]


def _check_detail(detail: dict[str, Any]) -> None:
    for key, value in detail.items():
        lowered = str(key).lower()
        if any(word in lowered for word in _FORBIDDEN):
            raise InputError(f"audit detail key {key!r} suggests a body or a secret: not logged")
        if isinstance(value, dict):
            _check_detail(value)


def _aad(subject: str) -> bytes:
    return b"smsroute audit account\x00" + subject.encode()


def _decode(key: bytes, value: bytes) -> AuditEntry:
    """An entry as stored (an account named by its pseudonym; an older entry: as written)."""
    try:
        fields = msgpack.unpackb(value, raw=False)
        ts, actor, action, target, result, detail = fields[:6]
        subject = fields[6] if len(fields) == 8 else ""
        if len(fields) not in (6, 8):
            raise ValueError(f"{len(fields)} fields")
        return AuditEntry(_SEQ.unpack(key)[0], ts, actor, action, target, result, detail, subject)
    except Exception as exc:  # msgpack raises several unrelated types
        raise CorruptRecord(f"audit entry {bytes(key).hex()} is unreadable: {exc!r}") from None
