"""Security incident records (policy 9): what happened, whom it affects, and the notification clock.

An incident names what happened, when it was detected and which accounts it affects (a list, or every
account: ``["*"]``). The supervisory authority must be notified within 72 hours of detection (GDPR
Art. 33); the record keeps that deadline, when (and under which reference) the authority was notified, and
when the affected customers' notice was queued and what became of its mails.

Customer notices are counted per customer, by what the mail server did (not by what was queued), and
each affected holder is mailed once: ``POST …/notify-customers`` called again (a client's retry, an
operator clicking twice) mails only holders who have no notice yet (``engine.privacy.incidents``). The
record keeps, per affected holder named by their pseudonym (``psn_…``, as ``subjects``), either the id of
their notice mail still waiting (``customer_mails``) or what became of it (``customer_outcomes``: ``sent``
— the server accepted it —, ``not_delivered`` — only logged: no mail server — or ``unsent`` — refused,
swept unsent after 3 days, or the account erased), learnt from the outbox's receipts
(``storage.outbox.outcome``) by :func:`settled`. A notice sent again (to a holder whose mail failed)
replaces the holder's entry, so :meth:`Incident.public` counts each holder once: ``customers_notified``,
``customers_queued``, ``customers_not_delivered``, ``customers_unsent``.

Older records load: a record of the version before notice outcomes carries only its count of mails
queued then (``customers_notified``); one of the version that counted per mail carries its waiting mails'
ids (``notice_mails``, 16 bytes each) and per-mail counts. Both are kept as they are and added to the
per-customer counts; such an incident's notice went to every affected holder at the time, but whose
mail failed was not recorded. Closing an incident starts its retention
(``security_incidents``: closure + 5 years), after which :meth:`IncidentStore.sweep` deletes it.

Records are sealed (the ``incidents`` store key, the id as AAD) in the ``incidents`` db of
``<data_dir>/privacy``. The per-holder notice state is not in the record but in rows of its own, one per
affected holder, in the ``incident_notices`` db: key ``<incident id>/<row number>`` (8 bytes, big-endian:
the key names no holder), value the sealed ``[customer key, waiting mail id, outcome]`` (one of the last two
""), the row key as AAD. Why: an all-accounts incident names
every holder, and the record rewritten whole at each step cost 72 bytes per holder per write (720 KB at
10,000 accounts, 7.2 MB at 100,000, for every settle that learnt one mail's outcome); a step now writes
the record (a few hundred bytes) and the rows of the holders it changed. A record of an older version
that holds the two maps itself is read as it is, and its first write moves every entry to rows.

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
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import lmdb
import msgpack

from engine.errors import InvalidTransition, KeyUnavailable
from storage.account_keys import DATA, AccountKeys
from storage.crypto import Sealer
from storage.full import refusing_when_full
from storage.outbox import NOT_DELIVERED, QUEUED, SENT, UNSENT
from storage.pseudonyms import token_text
from storage.records_base import SealedRecords
from storage.retention import cutoff

__all__ = ["ALL_ACCOUNTS", "AUTHORITY_DEADLINE_SECONDS", "Incident", "IncidentStore", "settled",
           "with_notices"]

AUTHORITY_DEADLINE_SECONDS = 72 * 3600
CLOSE_WARNING_SECONDS = 24 * 3600  # "close to the deadline": the alerting metric counts these
ALL_ACCOUNTS = "*"
MAIL_ID_BYTES = 16  # an outbox mail id (storage.outbox)
NOTICES_DB = b"incident_notices"  # per holder: <incident id>/<row no.> -> [customer key, mail id, outcome]


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
    customers_notified: int = 0  # older versions' notice mails the mail server accepted (or queued)
    closed_at: float = 0.0
    subjects: list[str] = field(default_factory=list)  # the affected accounts' pseudonyms (psn_…)
    sealed_accounts: list[bytes] = field(default_factory=list, repr=False, compare=False)
    customers_not_delivered: int = 0  # older versions' notice mails only logged (no mail server)
    customers_unsent: int = 0  # older versions' notice mails that left the outbox unsent
    notice_mails: bytes = field(default=b"", repr=False)  # older versions' waiting mails, 16 bytes each
    # per affected holder (their pseudonym): the id (hex) of their notice mail still waiting ...
    customer_mails: dict[str, str] = field(default_factory=dict, repr=False)
    # ... or what became of it: sent, not_delivered or unsent
    customer_outcomes: dict[str, str] = field(default_factory=dict, repr=False)
    # read from a record of an older version that held the two maps itself (never stored)
    inline_notices: bool = field(default=False, repr=False, compare=False)
    # customer key -> the number of its notice row, as read (never stored in the record)
    notice_rows: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def public(self) -> dict:
        """The record as shown: the notice counts per customer (older versions' counts added)."""
        fields = asdict(self)
        for kept_inside in ("sealed_accounts", "notice_mails", "customer_mails", "customer_outcomes",
                            "inline_notices", "notice_rows"):
            del fields[kept_inside]
        outcomes = Counter(self.customer_outcomes.values())
        fields["customers_notified"] = self.customers_notified + outcomes[SENT]
        fields["customers_not_delivered"] = self.customers_not_delivered + outcomes[NOT_DELIVERED]
        fields["customers_unsent"] = self.customers_unsent + outcomes[UNSENT]
        fields["customers_queued"] = (len(self.notice_mails) // MAIL_ID_BYTES
                                      + len(self.customer_mails))
        return fields

    @property
    def notified_by_older_version(self) -> bool:
        """Its notice was queued by a version that did not record whom it mailed (nor, so, whose mail
        failed): it went to every holder then affected."""
        return bool(self.customers_notified_at) and not self.customer_mails \
            and not self.customer_outcomes

    def notice_of(self, customer: str) -> str | None:
        """What became of the customer's notice: ``queued`` (waiting), ``sent``, ``not_delivered``,
        ``unsent``, or None (never mailed one by this version)."""
        if customer in self.customer_mails:
            return QUEUED
        return self.customer_outcomes.get(customer)

    @property
    def waits_for_mail(self) -> bool:
        return bool(self.notice_mails or self.customer_mails)

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
    not_delivered, unsent) is known moved out of waiting into what it ended in (per customer; an
    older version's mails into its counts); the same object when none is."""
    waiting, counts = [], {SENT: 0, NOT_DELIVERED: 0, UNSENT: 0}
    mails = incident.notice_mails
    for i in range(0, len(mails), MAIL_ID_BYTES):
        mail_id = mails[i:i + MAIL_ID_BYTES]
        state = outcome(mail_id.hex())
        if state in counts:
            counts[state] += 1
        else:  # queued (or a state this version does not know: keep asking)
            waiting.append(mail_id)
    ended = {customer: state for customer, mail_id in incident.customer_mails.items()
             if (state := outcome(mail_id)) in counts}
    if len(waiting) * MAIL_ID_BYTES == len(mails) and not ended:
        return incident
    return replace(incident, notice_mails=b"".join(waiting),
                   customers_notified=incident.customers_notified + counts[SENT],
                   customers_not_delivered=incident.customers_not_delivered + counts[NOT_DELIVERED],
                   customers_unsent=incident.customers_unsent + counts[UNSENT],
                   customer_mails={c: m for c, m in incident.customer_mails.items()
                                   if c not in ended},
                   customer_outcomes={**incident.customer_outcomes, **ended})


def with_notices(incident: Incident, mails: dict[str, str], now: float) -> Incident:
    """The incident with ``mails`` (customer key -> outbox id) as those customers' waiting notice
    mails, replacing what became of an earlier one (so each customer is counted once: by their latest
    notice); ``customers_notified_at`` set to ``now`` if it was not."""
    return replace(incident, customers_notified_at=incident.customers_notified_at or now,
                   customer_mails={**incident.customer_mails, **mails},
                   customer_outcomes={c: o for c, o in incident.customer_outcomes.items()
                                      if c not in mails})


class IncidentStore:
    """Sealed incident records, each with its per-holder notice rows. *Durable:* each step commits
    (fsync) before it returns, the record and the rows it changed in one transaction. *Writers:* any
    thread, serialised. *Readers:* any thread (a record and its rows read in one transaction). *Kept:*
    closure + 5 years (``security_incidents``)."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, account_keys: AccountKeys | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._keys = account_keys
        self._env = env
        self._sealer = sealer
        self._records = SealedRecords(env, sealer, b"incidents", Incident, "incident",
                                      encode=self._encode, decode=self._decode)
        self._notices = env.open_db(NOTICES_DB)
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
        with self._env.begin() as txn:
            return self._read(txn, incident_id)

    def all(self) -> Iterator[Incident]:
        with self._env.begin() as txn:
            incidents = [self._read(txn, incident_id) for incident_id in self._records.ids_in(txn)]
        return iter(incidents)

    def authority_notified(self, incident_id: str, at: float, reference: str) -> Incident:
        def change(i: Incident) -> Incident:
            if i.authority_notified_at:
                raise InvalidTransition("the authority's notification is already recorded")
            return replace(i, authority_notified_at=at, authority_reference=reference)

        return self._update(incident_id, change)

    def customer_key(self, account_id: str) -> str:
        """How the record names an affected holder in its notice state: the account's pseudonym
        (``psn_…``, as in ``subjects``: it outlives the account's erasure and names no one by itself).
        Without per-account keys (a store of tests), the id."""
        return token_text(self._keys.token(account_id)) if self._keys is not None else account_id

    def notices_queued(self, incident_id: str, mails: dict[str, str]) -> Incident:
        """The notice mails ``mails`` (customer key -> outbox id) are being queued: each kept as that
        customer's waiting mail (replacing what became of an earlier one) until :meth:`settle_notices`
        learns what became of it; ``customers_notified_at`` set if it was not."""
        now = self._clock()
        return self._update(incident_id, lambda i: with_notices(i, mails, now))

    def notices_not_queued(self, incident_id: str, before: Incident, customers: list[str]) -> Incident:
        """Undo :meth:`notices_queued` for ``customers`` whose mails were then not queued (the outbox
        refused the mailing): each customer's entry, and ``customers_notified_at``, as in ``before``."""
        def undo(i: Incident) -> Incident:
            mails = {c: m for c, m in i.customer_mails.items() if c not in customers}
            outcomes = dict(i.customer_outcomes)
            for customer in customers:
                if customer in before.customer_outcomes:
                    outcomes[customer] = before.customer_outcomes[customer]
            return replace(i, customer_mails=mails, customer_outcomes=outcomes,
                           customers_notified_at=before.customers_notified_at)

        return self._update(incident_id, undo)

    def settle_notices(self, incident: Incident, outcome: Callable[[str], str]) -> Incident:
        """:func:`settled`, written when it changed something (and only then: a read that finds every
        mail still queued writes nothing); the rows of the holders whose mail ended, not all."""
        if settled(incident, outcome) is incident:
            return incident
        return self._update(incident.id, lambda i: settled(i, outcome))

    def close(self, incident_id: str) -> Incident:
        def change(i: Incident) -> Incident:
            if i.closed_at:
                raise InvalidTransition("the incident is already closed")
            return replace(i, closed_at=self._clock())

        return self._update(incident_id, change)

    def sweep(self, now: float) -> int:
        """Delete the incidents past retention, each with its notice rows; how many."""
        keep_after = cutoff("security_incidents", now)
        removed = 0
        with self._records.lock, refusing_when_full("privacy"), self._env.begin(write=True) as txn:
            for incident_id in self._records.ids_in(txn):
                incident = self._records.get_in(txn, incident_id)
                if incident.closed_at and incident.closed_at < keep_after:
                    self._records.delete_in(txn, incident_id)
                    for key, _ in self._rows(txn, incident_id):
                        txn.delete(key, db=self._notices)
                    removed += 1
        return removed

    # --- the record and its rows -------------------------------------------------------------------

    def _update(self, incident_id: str, change: Callable[[Incident], Incident]) -> Incident:
        """Read-modify-write of the record and of the notice rows of the holders ``change`` changed
        (every holder's, once, for a record of an older version that held them itself)."""
        with self._records.lock, refusing_when_full("privacy"), self._env.begin(write=True) as txn:
            old = self._read(txn, incident_id)
            new = change(old)
            self._records.put_in(txn, new)
            if old.inline_notices:
                customers = {*old.customer_mails, *old.customer_outcomes, *new.customer_mails,
                             *new.customer_outcomes}
            else:
                customers = _changed(old.customer_mails, new.customer_mails) \
                    | _changed(old.customer_outcomes, new.customer_outcomes)
            rows = dict(old.notice_rows)
            next_row = max(rows.values(), default=-1) + 1
            for customer in sorted(customers):
                if customer in new.customer_mails:
                    row = [customer, new.customer_mails[customer], ""]
                elif customer in new.customer_outcomes:
                    row = [customer, "", new.customer_outcomes[customer]]
                else:
                    if customer in rows:
                        txn.delete(_row_key(incident_id, rows.pop(customer)), db=self._notices)
                    continue
                if customer not in rows:
                    rows[customer], next_row = next_row, next_row + 1
                key = _row_key(incident_id, rows[customer])
                txn.put(key, self._sealer.seal(msgpack.packb(row), key), db=self._notices)
        return replace(new, inline_notices=False, notice_rows=rows)

    def _read(self, txn: lmdb.Transaction, incident_id: str) -> Incident:
        """The record with its holders' notice state: its rows, over what an older record held itself."""
        incident = self._records.get_in(txn, incident_id)
        mails, outcomes = dict(incident.customer_mails), dict(incident.customer_outcomes)
        rows = {}
        for key, blob in self._rows(txn, incident_id):
            customer, mail_id, state = msgpack.unpackb(self._sealer.open(blob, key))
            rows[customer] = int.from_bytes(key[-8:], "big")
            mails.pop(customer, None)
            outcomes.pop(customer, None)
            if mail_id:
                mails[customer] = mail_id
            else:
                outcomes[customer] = state
        return replace(incident, customer_mails=mails, customer_outcomes=outcomes, notice_rows=rows)

    def _rows(self, txn: lmdb.Transaction, incident_id: str) -> list[tuple[bytes, bytes]]:
        prefix = f"{incident_id}/".encode()
        cursor = txn.cursor(db=self._notices)
        rows = []
        if cursor.set_range(prefix):
            for key, blob in cursor:
                if not key.startswith(prefix):
                    break
                rows.append((bytes(key), bytes(blob)))
        return rows

    @staticmethod
    def _encode(incident: Incident, key: bytes) -> dict:
        """Stored: pseudonyms readable, ids only sealed (each under its account's data key); the
        holders' notice state in rows of its own (not in the record)."""
        doc = asdict(incident)
        for in_rows in ("customer_mails", "customer_outcomes", "inline_notices", "notice_rows"):
            del doc[in_rows]
        if incident.subjects:
            doc["accounts"] = []
        return doc

    def _decode(self, doc: dict, key: bytes) -> Incident:
        incident = Incident(**doc)
        if incident.customer_mails or incident.customer_outcomes:  # an older version's record
            incident = replace(incident, inline_notices=True)
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


def _row_key(incident_id: str, row: int) -> bytes:
    return f"{incident_id}/".encode() + row.to_bytes(8, "big")


def _changed(old: dict[str, str], new: dict[str, str]) -> set[str]:
    """The keys whose value differs (added, removed or changed)."""
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
