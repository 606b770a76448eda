"""Security incident records (policy 9): what happened, whom it affects, and the notification clock.

An incident names what happened, when it was detected and which accounts it affects (a list, or every
account: ``["*"]``). The supervisory authority must be notified within 72 hours of detection (GDPR
Art. 33); the record keeps that deadline, when (and under which reference) the authority was notified, and
when the affected customers' notice was queued and what became of its mails.

Customer notices are counted by what the mail server did, not by what was queued (before, every mail
queued counted as a customer notified, also with no mail server configured): the ids of the notice mails
still waiting are kept (``notice_mails``, 16 bytes each: no address, no account), and
:func:`settled` moves each one whose outcome is known (the outbox's receipt, ``storage.outbox.outcome``)
into ``customers_notified`` (the server accepted it), ``customers_not_delivered`` (only logged: no mail
server) or ``customers_unsent`` (refused, swept unsent after 3 days, or its account erased).
``customers_queued`` (in :meth:`Incident.public`) is how many still wait. Records of an older version
load with no waiting mails; their ``customers_notified`` is what was queued then. Closing an incident starts its retention
(``security_incidents``: closure + 5 years), after which :meth:`IncidentStore.sweep` deletes it.

Records are sealed (the ``incidents`` store key, the id as AAD) in the ``incidents`` db of
``<data_dir>/privacy``.

Erasure (policy 7.1): an incident outlives the erasure of the accounts it affects (closure + 5 years), so
with the per-account keys given it names each affected account by its pseudonym (``subjects``:
``psn_…``, the token of the ledger's carve-out and the audit log) and seals each id, nested, under that
**account's data key** (``storage.account_keys``), which erasure destroys. While an account exists the
incident lists its id in ``accounts``; once it is erased only its pseudonym remains. Records of an older
version (ids under the store key) are read as they were written.

Durability contract (``storage.records_base``): every write commits (fsync) before
it returns. *Writers:* any thread, serialised. *Readers:* any thread.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import lmdb

from engine.errors import InvalidTransition, KeyUnavailable
from storage.account_keys import DATA, AccountKeys
from storage.crypto import Sealer
from storage.pseudonyms import token_text
from storage.records_base import SealedRecords
from storage.retention import cutoff

__all__ = ["ALL_ACCOUNTS", "AUTHORITY_DEADLINE_SECONDS", "Incident", "IncidentStore", "settled"]

AUTHORITY_DEADLINE_SECONDS = 72 * 3600
CLOSE_WARNING_SECONDS = 24 * 3600  # "close to the deadline": the alerting metric counts these
ALL_ACCOUNTS = "*"
MAIL_ID_BYTES = 16  # an outbox mail id (storage.outbox)


@dataclass(frozen=True)
class Incident:
    id: str
    summary: str
    detected_at: float
    opened_at: float
    opened_by: str
    accounts: list[str] = field(default_factory=list)  # ["*"]: every account
    authority_deadline: float = 0.0
    authority_notified_at: float = 0.0
    authority_reference: str = ""
    customers_notified_at: float = 0.0  # when the notice was first queued (POST …/notify-customers)
    customers_notified: int = 0  # notice mails the mail server accepted
    closed_at: float = 0.0
    subjects: list[str] = field(default_factory=list)  # the affected accounts' pseudonyms (psn_…)
    sealed_accounts: list[bytes] = field(default_factory=list, repr=False, compare=False)
    customers_not_delivered: int = 0  # notice mails only logged: no mail server configured
    customers_unsent: int = 0  # notice mails that left the outbox unsent (refused, expired, erased)
    notice_mails: bytes = field(default=b"", repr=False)  # the ids of those still queued, 16 bytes each

    def public(self) -> dict:
        fields = asdict(self)
        del fields["sealed_accounts"], fields["notice_mails"]
        fields["customers_queued"] = len(self.notice_mails) // MAIL_ID_BYTES
        return fields

    def authority_overdue(self, now: float) -> bool:
        return not self.authority_notified_at and now > self.authority_deadline

    def authority_deadline_close(self, now: float) -> bool:
        """Not yet notified and less than a day (or nothing) left."""
        return not self.authority_notified_at and now > self.authority_deadline - CLOSE_WARNING_SECONDS

    def view(self, now: float) -> dict:
        return {**self.public(), "all_accounts": self.accounts == [ALL_ACCOUNTS],
                "seconds_to_authority_deadline": round(self.authority_deadline - now),
                "authority_overdue": self.authority_overdue(now),
                "authority_deadline_close": self.authority_deadline_close(now)}


def settled(incident: Incident, outcome: Callable[[str], str]) -> Incident:
    """The incident with each waiting notice mail whose ``outcome`` (``Outbox.outcome``: queued, sent,
    not_delivered, unsent) is known counted where it belongs and no longer waiting; the same object
    when none is."""
    waiting, counts = [], {"sent": 0, "not_delivered": 0, "unsent": 0}
    mails = incident.notice_mails
    for i in range(0, len(mails), MAIL_ID_BYTES):
        mail_id = mails[i:i + MAIL_ID_BYTES]
        state = outcome(mail_id.hex())
        if state in counts:
            counts[state] += 1
        else:  # queued (or a state this version does not know: keep asking)
            waiting.append(mail_id)
    if len(waiting) * MAIL_ID_BYTES == len(mails):
        return incident
    return replace(incident, notice_mails=b"".join(waiting),
                   customers_notified=incident.customers_notified + counts["sent"],
                   customers_not_delivered=incident.customers_not_delivered
                   + counts["not_delivered"],
                   customers_unsent=incident.customers_unsent + counts["unsent"])


class IncidentStore:
    """Sealed incident records. *Durable:* each step commits (fsync) before it returns. *Writers:* any
    thread, serialised. *Readers:* any thread. *Kept:* closure + 5 years (``security_incidents``)."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, account_keys: AccountKeys | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._keys = account_keys
        self._records = SealedRecords(env, sealer, b"incidents", Incident, "incident",
                                      encode=self._encode, decode=self._decode)
        self._clock = clock

    def open(self, summary: str, detected_at: float, accounts: list[str], opened_by: str) -> Incident:
        incident_id = "inc_" + secrets.token_hex(8)
        subjects, sealed = [], []
        if self._keys is not None and accounts != [ALL_ACCOUNTS]:
            for account_id in accounts:
                subjects.append(token_text(self._keys.token(account_id)))
                sealed.append(self._keys.sealer(account_id, DATA).seal(
                    account_id.encode(), incident_id.encode()))
        return self._records.put(Incident(
            id=incident_id, summary=summary, detected_at=detected_at,
            opened_at=self._clock(), opened_by=opened_by, accounts=list(accounts),
            authority_deadline=detected_at + AUTHORITY_DEADLINE_SECONDS, subjects=subjects,
            sealed_accounts=sealed))

    def get(self, incident_id: str) -> Incident:
        return self._records.get(incident_id)

    def all(self) -> Iterator[Incident]:
        return self._records.all()

    def authority_notified(self, incident_id: str, at: float, reference: str) -> Incident:
        def change(i: Incident) -> Incident:
            if i.authority_notified_at:
                raise InvalidTransition("the authority's notification is already recorded")
            return replace(i, authority_notified_at=at, authority_reference=reference)

        return self._records.update(incident_id, change)

    def notice_queued(self, incident_id: str, mail_ids: list[str]) -> Incident:
        """The customers' notice mails ``mail_ids`` were queued: kept as waiting until
        :meth:`settle_notices` learns what became of them."""
        return self._records.update(incident_id, lambda i: replace(
            i, customers_notified_at=i.customers_notified_at or self._clock(),
            notice_mails=i.notice_mails + b"".join(bytes.fromhex(m) for m in mail_ids)))

    def settle_notices(self, incident: Incident, outcome: Callable[[str], str]) -> Incident:
        """:func:`settled`, written when it changed something (and only then: a read that finds every
        mail still queued writes nothing)."""
        if settled(incident, outcome) is incident:
            return incident
        return self._records.update(incident.id, lambda i: settled(i, outcome))

    def close(self, incident_id: str) -> Incident:
        def change(i: Incident) -> Incident:
            if i.closed_at:
                raise InvalidTransition("the incident is already closed")
            return replace(i, closed_at=self._clock())

        return self._records.update(incident_id, change)

    def sweep(self, now: float) -> int:
        keep_after = cutoff("security_incidents", now)
        return self._records.delete_where(lambda i: bool(i.closed_at) and i.closed_at < keep_after)

    @staticmethod
    def _encode(incident: Incident, key: bytes) -> dict:
        """Stored: pseudonyms readable, ids only sealed (each under its account's data key)."""
        doc = asdict(incident)
        if incident.subjects:
            doc["accounts"] = []
        return doc

    def _decode(self, doc: dict, key: bytes) -> Incident:
        incident = Incident(**doc)
        if not incident.subjects or self._keys is None:
            return incident
        ids = []
        for subject, sealed in zip(incident.subjects, incident.sealed_accounts, strict=True):
            token = bytes.fromhex(subject.removeprefix("psn_"))
            try:
                ids.append(self._keys.sealer_for_token(token, DATA).open(sealed, key).decode())
            except KeyUnavailable:
                pass  # erased: its pseudonym stays in subjects
        return replace(incident, accounts=ids)
