"""Data-subject requests (policy 7.5): what was asked, how it was verified, where it stands, by when.

A request moves through a small state machine (each illegal step is refused with
:class:`~engine.errors.InvalidTransition`)::

    awaiting_verification ──verify──▶ open ──complete──▶ completed
            │                          │  └──refuse────▶ refused
            └──(link expired: sweep)──▶ lapsed          └──extend (once, +60 days; stays open)

The deadline is 30 days from receipt, extendable once by 60 for complex requests (with a notice mail,
sent by the caller). Overdue: not closed and past its deadline.

Records are sealed (the ``dsar`` store key, the request id as AAD) in the ``dsar`` db of the environment
given (``<data_dir>/privacy``). A closed request is kept for the retention row
``data_subject_requests`` (closure + 1 year: the record that we answered), then swept.

Erasure (policy 7.1): the record of an erasure request must outlive the account it erased, but not name
it. So the account id is never stored readable under the store key: it is sealed again, nested, under the
**account's own keys** (``storage.account_keys``: erasure destroys both), and the record names its account
by the keyed pseudonym only (``subject``: ``psn_…``, ``storage.pseudonyms``, the token the ledger's
carve-out and the erasure's answer use). Once the account is erased its requests read ``account_id=""``
with their pseudonym, types, states, times and outcomes intact: staff still see that a request was
received, verified and answered on time. No record holds an e-mail address.

Why both keys: a closed account's record is swept 90 days after closure and its *data* key with it, but
the ledger keeps the account's rows, under its *ledger* key, for 7 years (``engine.privacy.former``). A
request still open at the sweep must still be answered (export and erasure of what the ledger keeps), and
a former holder may open one then; so the id is sealed under the data key (``sealed_account``) and under
the ledger key (``ledger_sealed_account``), and read from whichever still exists. A request of a former
account has only the ledger copy. Records of an older version (the account id under the store key, or
under the data key alone) are still read; those of the second kind get their ledger copy when the store
is opened, while their account's keys are both there.

Durability contract (``storage.records_base``): every write commits (fsync) before it returns, so a
recorded step survives ``kill -9``. *Writers:* any thread, read-modify-write serialised by a lock.
*Readers:* any thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import lmdb

from engine.errors import InputError, InvalidTransition, KeyUnavailable, StoreFull, UnknownAccount
from storage.account_keys import DATA, LEDGER, AccountKeys
from storage.crypto import Sealer
from storage.pseudonyms import token_text
from storage.records_base import SealedRecords
from storage.retention import cutoff

__all__ = ["DEADLINE_SECONDS", "EXTENSION_SECONDS", "REQUEST_TYPES", "DsarRecord", "DsarStore"]

DAY = 86400
DEADLINE_SECONDS = 30 * DAY
EXTENSION_SECONDS = 60 * DAY
REQUEST_TYPES = ("access", "portability", "rectification", "erasure", "restriction", "objection")
AWAITING, OPEN, COMPLETED, REFUSED, LAPSED = (
    "awaiting_verification", "open", "completed", "refused", "lapsed")
CLOSED_STATES = (COMPLETED, REFUSED, LAPSED)


@dataclass(frozen=True)
class DsarRecord:
    id: str
    account_id: str  # "" once nothing names the account any more (erased: both its keys gone)
    type: str  # one of REQUEST_TYPES
    channel: str  # "email" (verification link) | "wallet" (signed challenge)
    verification: str  # "pending" | "email_link" | "wallet:evm" | "wallet:tron"
    status: str
    received_at: float
    deadline: float
    verify_by: float = 0.0  # an unverified request lapses after this
    verified_at: float = 0.0
    extended: bool = False
    extension_reason: str = ""
    closed_at: float = 0.0
    outcome: str = ""  # what was done, or why it was refused
    opened_by: str = ""  # "customer" or the operator who registered it
    notes: dict = field(default_factory=dict)
    subject: str = ""  # the account's pseudonym (psn_…): all that names it once it is erased
    sealed_account: bytes = field(default=b"", repr=False, compare=False)  # under its data key
    ledger_sealed_account: bytes = field(default=b"", repr=False, compare=False)  # its ledger key

    def overdue(self, now: float) -> bool:
        return self.status not in CLOSED_STATES and now > self.deadline

    def public(self) -> dict:
        fields = asdict(self)
        del fields["sealed_account"], fields["ledger_sealed_account"]
        return fields

    def view(self, now: float) -> dict:
        return {**self.public(), "overdue": self.overdue(now),
                "seconds_to_deadline": round(self.deadline - now)}


class DsarStore:
    """Sealed data-subject request records and their transitions.

    *Durable:* each step commits (fsync) before it returns. *Writers:* any thread, serialised.
    *Readers:* any thread. *Kept:* closed requests for a year (``data_subject_requests``).
    """

    def __init__(self, env: lmdb.Environment, sealer: Sealer, account_keys: AccountKeys, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._keys = account_keys
        self._records = SealedRecords(env, sealer, b"dsar", DsarRecord, "data-subject request",
                                      encode=self._encode, decode=self._decode)
        self._clock = clock
        self._add_ledger_copies()

    def create(self, account_id: str, request_type: str, *, channel: str, verified_by: str | None,
               opened_by: str, verify_by: float = 0.0) -> DsarRecord:
        """A new request: open at once when ``verified_by`` names the proof, else awaiting it. The
        account needs one of its keys (a former account has its ledger key only: the caller decides
        whether it may ask)."""
        if request_type not in REQUEST_TYPES:
            raise InputError(f"request type is one of {', '.join(REQUEST_TYPES)}")
        if not (self._keys.has(account_id, DATA) or self._keys.has(account_id, LEDGER)):
            raise UnknownAccount(f"no account {account_id} (or it was erased)")
        now = self._clock()
        return self._records.put(DsarRecord(
            id="dsr_" + secrets.token_hex(8), account_id=account_id, type=request_type,
            subject=token_text(self._keys.token(account_id)),
            channel=channel, verification=verified_by or "pending",
            status=OPEN if verified_by else AWAITING, received_at=now,
            deadline=now + DEADLINE_SECONDS, verify_by=verify_by,
            verified_at=now if verified_by else 0.0, opened_by=opened_by))

    def get(self, request_id: str) -> DsarRecord:
        return self._records.get(request_id)

    def all(self) -> Iterator[DsarRecord]:
        return self._records.all()

    def verify(self, request_id: str, how: str) -> DsarRecord:
        return self._change(request_id, (AWAITING,), "verify",
                            lambda r, now: replace(r, status=OPEN, verification=how, verified_at=now))

    def extend(self, request_id: str, reason: str) -> DsarRecord:
        def change(r: DsarRecord, now: float) -> DsarRecord:
            if r.extended:
                raise InvalidTransition("a request's deadline can be extended only once")
            return replace(r, extended=True, extension_reason=reason,
                           deadline=r.deadline + EXTENSION_SECONDS)

        return self._change(request_id, (OPEN,), "extend", change)

    def close(self, request_id: str, status: str, outcome: str) -> DsarRecord:
        if status not in (COMPLETED, REFUSED):
            raise InputError("a request closes as completed or refused")
        step = "fulfil" if status == COMPLETED else "refuse"  # what staff asked for, in the refusal
        return self._change(request_id, (OPEN,), step,
                            lambda r, now: replace(r, status=status, closed_at=now, outcome=outcome))

    def sweep(self, now: float) -> int:
        """Lapse unverified requests past ``verify_by``; delete closed ones past their retention."""
        lapsed = [r.id for r in self.all()
                  if r.status == AWAITING and r.verify_by and r.verify_by < now]
        for request_id in lapsed:
            self._change(request_id, (AWAITING,), "lapse", lambda r, t: replace(
                r, status=LAPSED, closed_at=t, outcome="not verified in time"))
        keep_after = cutoff("data_subject_requests", now)
        return len(lapsed) + self._records.delete_where(
            lambda r: r.status in CLOSED_STATES and r.closed_at < keep_after)

    def _encode(self, record: DsarRecord, key: bytes) -> dict:
        """Stored: the pseudonym readable, the account id sealed under each of the account's keys that
        still exists (each copy sealed once and then kept as it is by every later step, also after its
        key is gone)."""
        doc = record.public()
        account_id = doc.pop("account_id")
        doc["sealed_account"] = record.sealed_account or self._seal(account_id, DATA, key)
        doc["ledger_sealed_account"] = (record.ledger_sealed_account
                                        or self._seal(account_id, LEDGER, key))
        return doc

    def _seal(self, account_id: str, purpose: str, key: bytes) -> bytes:
        if not account_id:  # nothing names the account any more: nothing to seal
            return b""
        try:
            return self._keys.sealer(account_id, purpose).seal(account_id.encode(), key)
        except KeyUnavailable:  # swept (data key) or erased: the other copy, if any, names it
            return b""

    def _decode(self, doc: dict, key: bytes) -> DsarRecord:
        if "account_id" in doc:  # an older record: the id under the store key
            doc.setdefault("subject", token_text(self._keys.token(doc["account_id"])))
            return DsarRecord(**doc)
        token = bytes.fromhex(doc["subject"].removeprefix("psn_"))
        account_id = ""  # erased (or swept with nothing left in the ledger): the pseudonym alone
        for purpose, blob in ((DATA, doc["sealed_account"]),
                              (LEDGER, doc.get("ledger_sealed_account", b""))):
            if not blob:
                continue
            try:
                account_id = self._keys.sealer_for_token(token, purpose).open(blob, key).decode()
                break
            except KeyUnavailable:
                continue
        return DsarRecord(account_id=account_id, **doc)

    def _add_ledger_copies(self) -> None:
        """Records written before the ledger copy existed get it now, while their account's ledger key
        exists (a request open at the account's sweep is then still answered). Rewritten as they are;
        on a full store (``StoreFull``, logged by ``storage.full``) the rest keep what they had until
        the next start, and the engine starts anyway."""
        missing = [r.id for r in self.all() if r.account_id and not r.ledger_sealed_account
                   and self._keys.has(r.account_id, LEDGER)]
        try:
            for request_id in missing:
                self._records.update(request_id, lambda r: r)
        except StoreFull:
            pass

    def _change(self, request_id: str, allowed_from: tuple[str, ...], step: str,
                change: Callable[[DsarRecord, float], DsarRecord]) -> DsarRecord:
        def checked(old: DsarRecord) -> DsarRecord:
            if old.status not in allowed_from:
                raise InvalidTransition(f"cannot {step} a request that is {old.status}")
            return change(old, self._clock())

        return self._records.update(request_id, checked)
