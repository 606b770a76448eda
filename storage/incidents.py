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
the record (a few hundred bytes) and the rows of the holders it changed.

The record keeps how many holders' notice is in each state (``holder_counts``: queued, sent,
not_delivered, unsent) and the next row number, changed in the transaction that changes the rows; the
rows whose mail waits are indexed in the ``incident_waiting`` db (key as the row's, empty value). Why:
with rows alone, every read opened every row (and asked the outbox about every waiting mail): listing
incidents, the stats and the sweep cost 0.5 s CPU per look at an all-accounts incident of 100,000
holders, also when every mail had long ended, and a step held the store lock that long. A read now opens
the record only; a settle visits the waiting rows only; each holder's state is read (every row) only to
decide whom to mail (``get(…, holders=True)``). Records of older layouts (no ``notice_layout``: the
maps in the record, or rows without counts) are read as they are — every row, to count them — and
brought to this one by their first write or settle (the desk settles at each look: once).

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
WAITING_DB = b"incident_waiting"  # the rows whose mail waits: <incident id>/<row no.> -> b""
NOTICE_LAYOUT = 2  # counts in the record, waiting rows indexed (older records: none stored, 0)
ENDED = (SENT, NOT_DELIVERED, UNSENT)


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
    # how many holders' notice is in each state (queued, sent, ...): kept in the record (NOTICE_LAYOUT)
    holder_counts: dict[str, int] = field(default_factory=dict)
    notice_layout: int = 0  # NOTICE_LAYOUT: counted rows with a waiting index; 0: an older layout
    next_notice_row: int = 0  # the number the next holder's row gets
    # read from a record of an older version that held the two maps itself (never stored)
    inline_notices: bool = field(default=False, repr=False, compare=False)
    # customer key -> the number of its notice row, as read (never stored in the record)
    notice_rows: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    # whether the two maps were read (a store's listing reads the counts only; never stored)
    holders_read: bool = field(default=True, repr=False, compare=False)

    def public(self) -> dict:
        """The record as shown: the notice counts per customer (older versions' counts added)."""
        fields = asdict(self)
        for kept_inside in ("sealed_accounts", "notice_mails", "customer_mails", "customer_outcomes",
                            "holder_counts", "notice_layout", "next_notice_row", "inline_notices",
                            "notice_rows", "holders_read"):
            del fields[kept_inside]
        counts = self.notice_counts
        fields["customers_notified"] = self.customers_notified + counts.get(SENT, 0)
        fields["customers_not_delivered"] = self.customers_not_delivered + counts.get(NOT_DELIVERED, 0)
        fields["customers_unsent"] = self.customers_unsent + counts.get(UNSENT, 0)
        fields["customers_queued"] = len(self.notice_mails) // MAIL_ID_BYTES + counts.get(QUEUED, 0)
        return fields

    @property
    def notice_counts(self) -> dict[str, int]:
        """Holders per notice state (queued, sent, not_delivered, unsent): from the two maps when they
        were read (or made in memory), else as the record keeps them."""
        if self.holders_read:
            return _counts_of(self.customer_mails, self.customer_outcomes)
        return {state: n for state, n in self.holder_counts.items() if n}

    @property
    def notified_by_older_version(self) -> bool:
        """Its notice was queued by a version that did not record whom it mailed (nor, so, whose mail
        failed): it went to every holder then affected."""
        return bool(self.customers_notified_at) and not self.notice_counts

    def notice_of(self, customer: str) -> str | None:
        """What became of the customer's notice: ``queued`` (waiting), ``sent``, ``not_delivered``,
        ``unsent``, or None (never mailed one by this version). Needs the holders read
        (``IncidentStore.get(…, holders=True)``)."""
        _holders_needed(self)
        if customer in self.customer_mails:
            return QUEUED
        return self.customer_outcomes.get(customer)

    @property
    def waits_for_mail(self) -> bool:
        return bool(self.notice_mails) or bool(self.notice_counts.get(QUEUED))

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


def _counts_of(mails: dict[str, str], outcomes: dict[str, str]) -> dict[str, int]:
    counts = dict(Counter(outcomes.values()))
    if mails:
        counts[QUEUED] = len(mails)
    return counts


def _holders_needed(incident: Incident) -> None:
    if not incident.holders_read:
        raise ValueError(f"incident {incident.id} was read without its holders' notice state")


def _older_settled(incident: Incident, outcome: Callable[[str], str]) -> Incident:
    """The incident with each of an older version's waiting mails (``notice_mails``, no holder named)
    whose outcome is known moved into its counts; the same object when none is."""
    waiting, counts = [], {SENT: 0, NOT_DELIVERED: 0, UNSENT: 0}
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
                   customers_notified=incident.customers_notified + counts[SENT],
                   customers_not_delivered=incident.customers_not_delivered + counts[NOT_DELIVERED],
                   customers_unsent=incident.customers_unsent + counts[UNSENT])


def settled(incident: Incident, outcome: Callable[[str], str]) -> Incident:
    """The incident with each waiting notice mail whose ``outcome`` (``Outbox.outcome``: queued, sent,
    not_delivered, unsent) is known moved out of waiting into what it ended in (per customer; an
    older version's mails into its counts); the same object when none is. In memory, on an incident
    whose holders were read (the store's :meth:`IncidentStore.settle_notices` visits waiting rows only)."""
    _holders_needed(incident)
    older = _older_settled(incident, outcome)
    ended = {customer: state for customer, mail_id in incident.customer_mails.items()
             if (state := outcome(mail_id)) in ENDED}
    if older is incident and not ended:
        return incident
    return replace(older, customer_mails={c: m for c, m in incident.customer_mails.items()
                                          if c not in ended},
                   customer_outcomes={**incident.customer_outcomes, **ended})


def with_notices(incident: Incident, mails: dict[str, str], now: float) -> Incident:
    """The incident with ``mails`` (customer key -> outbox id) as those customers' waiting notice
    mails, replacing what became of an earlier one (so each customer is counted once: by their latest
    notice); ``customers_notified_at`` set to ``now`` if it was not. In memory, holders read."""
    _holders_needed(incident)
    return replace(incident, customers_notified_at=incident.customers_notified_at or now,
                   customer_mails={**incident.customer_mails, **mails},
                   customer_outcomes={c: o for c, o in incident.customer_outcomes.items()
                                      if c not in mails})


class IncidentStore:
    """Sealed incident records, each with its per-holder notice rows. *Durable:* each step commits
    (fsync) before it returns, the record and the rows it changed in one transaction. *Writers:* any
    thread, serialised. *Readers:* any thread (a record and its rows read in one transaction). *Kept:*
    closure + 5 years (``security_incidents``).

    *Cost:* reading an incident (``get``, ``all``) opens its record only (the counts per notice state
    are in it); ``get(…, holders=True)`` also every row. A settle visits the waiting rows only (their
    index) and writes those that ended; queueing notices reads every row once when the incident already
    has some (to find the holders' rows: a row's key names no holder)."""

    def __init__(self, env: lmdb.Environment, sealer: Sealer, account_keys: AccountKeys | None = None,
                 *, clock: Callable[[], float] = time.time) -> None:
        self._keys = account_keys
        self._env = env
        self._sealer = sealer
        self._records = SealedRecords(env, sealer, b"incidents", Incident, "incident",
                                      encode=self._encode, decode=self._decode)
        self._notices = env.open_db(NOTICES_DB)
        self._waiting = env.open_db(WAITING_DB)
        self._clock = clock

    def open(self, summary: str, detected_at: float, accounts: list[str], opened_by: str) -> Incident:
        incident_id = "inc_" + secrets.token_hex(8)
        subjects, sealed = [], []
        if self._keys is not None and accounts != [ALL_ACCOUNTS]:
            for account_id in accounts:
                subjects.append(token_text(self._keys.token(account_id)))
                sealed.append(self._keys.sealer(account_id, DATA).seal(
                    account_id.encode(), incident_id.encode()))
        return self._light(self._records.put(Incident(
            id=incident_id, summary=summary, detected_at=detected_at,
            opened_at=self._clock(), opened_by=opened_by, accounts=list(accounts),
            authority_deadline=detected_at + AUTHORITY_DEADLINE_SECONDS, subjects=subjects,
            sealed_accounts=sealed, notice_layout=NOTICE_LAYOUT)))

    def get(self, incident_id: str, *, holders: bool = False) -> Incident:
        """The incident with its counts; with ``holders`` also each holder's notice state (every row:
        O(holders), for :meth:`Incident.notice_of`)."""
        with self._env.begin() as txn:
            return self._read(txn, incident_id, holders=holders)

    def all(self) -> Iterator[Incident]:
        """Every incident with its counts (not its holders' rows)."""
        with self._env.begin() as txn:
            incidents = [self._read(txn, incident_id) for incident_id in self._records.ids_in(txn)]
        return iter(incidents)

    def authority_notified(self, incident_id: str, at: float, reference: str) -> Incident:
        def change(txn: lmdb.Transaction, i: Incident) -> Incident:
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

        def change(txn: lmdb.Transaction, i: Incident) -> Incident:
            rows, tally = self._holder_rows(txn, i) if mails else {}, _Tally.of(i)
            for customer, mail_id in mails.items():
                self._set_row(txn, tally, customer, rows.get(customer), (mail_id, ""))
            return tally.into(replace(i, customers_notified_at=i.customers_notified_at or now))

        return self._update(incident_id, change)

    def notices_not_queued(self, incident_id: str, before: Incident, customers: list[str]) -> Incident:
        """Undo :meth:`notices_queued` for ``customers`` whose mails were then not queued (the outbox
        refused the mailing): each customer's entry — waiting mail or outcome, or none —, and
        ``customers_notified_at``, as in ``before`` (read with its holders)."""
        _holders_needed(before)

        def undo(txn: lmdb.Transaction, i: Incident) -> Incident:
            rows, tally = self._holder_rows(txn, i), _Tally.of(i)
            for customer in customers:
                if customer in before.customer_mails:
                    state: tuple[str, str] | None = (before.customer_mails[customer], "")
                elif customer in before.customer_outcomes:
                    state = ("", before.customer_outcomes[customer])
                else:
                    state = None
                self._set_row(txn, tally, customer, rows.get(customer), state)
            return tally.into(replace(i, customers_notified_at=before.customers_notified_at))

        return self._update(incident_id, undo)

    def settle_notices(self, incident: Incident, outcome: Callable[[str], str]) -> Incident:
        """What became of the waiting notice mails (``outcome``: ``Outbox.outcome``), written: the rows
        of the holders whose mail ended and the counts. Only the waiting rows are visited, outside the
        lock; a look that finds every mail still queued writes nothing (nor does it take the lock).
        A record of an older layout is brought to this one (once: its rows counted and indexed)."""
        if incident.notice_layout != NOTICE_LAYOUT:
            incident = self._update(incident.id, lambda txn, i: i)
        ended = self._ended(incident.id, outcome)
        if not ended and _older_settled(incident, outcome) is incident:
            return incident

        def change(txn: lmdb.Transaction, i: Incident) -> Incident:
            tally = _Tally.of(i)
            for row, (customer, mail_id, state, blob) in ended.items():
                if txn.get(_row_key(i.id, row), db=self._notices) == blob:  # not written since
                    self._set_row(txn, tally, customer, (row, (mail_id, "")), ("", state))
            return _older_settled(tally.into(i), outcome)

        return self._update(incident.id, change)

    def settled_unwritten(self, incident: Incident, outcome: Callable[[str], str]) -> Incident:
        """What :meth:`settle_notices` would make of ``incident``, written nowhere (for a store that
        cannot take a write now): the counts with the ended mails moved."""
        if incident.holders_read:
            return settled(incident, outcome)
        counts = Counter(incident.holder_counts)
        for _customer, _mail_id, state, _blob in self._ended(incident.id, outcome).values():
            counts[QUEUED] -= 1
            counts[state] += 1
        return _older_settled(replace(incident, holder_counts=dict(counts)), outcome)

    def close(self, incident_id: str) -> Incident:
        def change(txn: lmdb.Transaction, i: Incident) -> Incident:
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
                    for db in (self._notices, self._waiting):
                        for key in _keys_under(txn, db, incident_id):
                            txn.delete(key, db=db)
                    removed += 1
        return removed

    # --- the record and its rows -------------------------------------------------------------------

    def _update(self, incident_id: str,
                change: Callable[[lmdb.Transaction, Incident], Incident]) -> Incident:
        """Read-modify-write of the record (and of the rows ``change`` writes, in the same
        transaction); a record of an older layout is brought to this one first."""
        with self._records.lock, refusing_when_full("privacy"), self._env.begin(write=True) as txn:
            new = change(txn, self._current(txn, incident_id))
            self._records.put_in(txn, new)
        return new

    def _current(self, txn: lmdb.Transaction, incident_id: str) -> Incident:
        """The record (its holders not read) in this layout. An older one's holders (its maps, over
        which its rows — of the layout without counts — win) each get a row, their counts and the
        waiting index: once, the record written by the caller."""
        incident = self._records.get_in(txn, incident_id)
        if incident.notice_layout == NOTICE_LAYOUT:
            return self._light(incident)
        full = self._with_holders(txn, incident)
        rows = dict(full.notice_rows)
        next_row = max(rows.values(), default=-1) + 1
        states = {**{c: ("", o) for c, o in full.customer_outcomes.items()},
                  **{c: (m, "") for c, m in full.customer_mails.items()}}
        for customer in sorted(states):
            mail_id, outcome = states[customer]
            if customer not in rows or full.inline_notices:
                if customer not in rows:
                    rows[customer], next_row = next_row, next_row + 1
                self._put_row(txn, incident_id, rows[customer], [customer, mail_id, outcome])
            if mail_id:
                txn.put(_row_key(incident_id, rows[customer]), b"", db=self._waiting)
        return replace(full, customer_mails={}, customer_outcomes={}, inline_notices=False,
                       notice_rows={}, holders_read=False, notice_layout=NOTICE_LAYOUT,
                       holder_counts=_counts_of(full.customer_mails, full.customer_outcomes),
                       next_notice_row=next_row)

    def _set_row(self, txn: lmdb.Transaction, tally: _Tally, customer: str,
                 old: tuple[int, tuple[str, str]] | None, new: tuple[str, str] | None) -> None:
        """Write one holder's state (``(mail id, "")`` waiting, ``("", outcome)``, or None: no row)
        over ``old`` (its row number and state, or None: it has no row), its waiting index entry with
        it; ``tally`` (the record's counts and next row number) follows."""
        incident_id = tally.incident_id
        if old is not None:
            row, (old_mail, old_outcome) = old
            tally.counts[QUEUED if old_mail else old_outcome] -= 1
            if old_mail:
                txn.delete(_row_key(incident_id, row), db=self._waiting)
        elif new is not None:
            row, tally.next_row = tally.next_row, tally.next_row + 1
        if new is None:
            if old is not None:
                txn.delete(_row_key(incident_id, row), db=self._notices)
            return
        mail_id, outcome = new
        tally.counts[QUEUED if mail_id else outcome] += 1
        self._put_row(txn, incident_id, row, [customer, mail_id, outcome])
        if mail_id:
            txn.put(_row_key(incident_id, row), b"", db=self._waiting)

    def _put_row(self, txn: lmdb.Transaction, incident_id: str, row: int, value: list[str]) -> None:
        key = _row_key(incident_id, row)
        txn.put(key, self._sealer.seal(msgpack.packb(value), key), db=self._notices)

    def _holder_rows(self, txn: lmdb.Transaction,
                     incident: Incident) -> dict[str, tuple[int, tuple[str, str]]]:
        """customer -> (row number, (mail id, outcome)): every row read (none when it has none)."""
        if not incident.next_notice_row:
            return {}
        rows = {}
        for key, blob in _entries_under(txn, self._notices, incident.id):
            customer, mail_id, outcome = msgpack.unpackb(self._sealer.open(blob, key))
            rows[customer] = (int.from_bytes(key[-8:], "big"), (mail_id, outcome))
        return rows

    def _ended(self, incident_id: str,
               outcome: Callable[[str], str]) -> dict[int, tuple[str, str, str, bytes]]:
        """The waiting rows whose mail ended: row number -> (customer, mail id, what it ended in, the
        row as read: a writer finds it unchanged, or leaves it, without opening it again)."""
        ended = {}
        with self._env.begin() as txn:
            for key in _keys_under(txn, self._waiting, incident_id):
                row_key = _row_key(incident_id, int.from_bytes(key[-8:], "big"))
                blob = txn.get(row_key, db=self._notices)
                if blob is None:
                    continue
                blob = bytes(blob)
                customer, mail_id, _ = msgpack.unpackb(self._sealer.open(blob, row_key))
                if (state := outcome(mail_id)) in ENDED:
                    ended[int.from_bytes(key[-8:], "big")] = (customer, mail_id, state, blob)
        return ended

    def _read(self, txn: lmdb.Transaction, incident_id: str, *, holders: bool = False) -> Incident:
        """The record with its counts; with ``holders`` (or a record of an older layout, which keeps no
        counts) its holders' notice state: its rows, over what an older record held itself."""
        incident = self._records.get_in(txn, incident_id)
        if holders or incident.notice_layout != NOTICE_LAYOUT:
            return self._with_holders(txn, incident)
        return self._light(incident)

    def _with_holders(self, txn: lmdb.Transaction, incident: Incident) -> Incident:
        mails, outcomes = dict(incident.customer_mails), dict(incident.customer_outcomes)
        rows = {}
        for key, blob in _entries_under(txn, self._notices, incident.id):
            customer, mail_id, state = msgpack.unpackb(self._sealer.open(blob, key))
            rows[customer] = int.from_bytes(key[-8:], "big")
            mails.pop(customer, None)
            outcomes.pop(customer, None)
            if mail_id:
                mails[customer] = mail_id
            else:
                outcomes[customer] = state
        return replace(incident, customer_mails=mails, customer_outcomes=outcomes, notice_rows=rows,
                       holders_read=True)

    @staticmethod
    def _light(incident: Incident) -> Incident:
        return replace(incident, customer_mails={}, customer_outcomes={}, notice_rows={},
                       holders_read=False)

    @staticmethod
    def _encode(incident: Incident, key: bytes) -> dict:
        """Stored: pseudonyms readable, ids only sealed (each under its account's data key); the
        holders' notice state in rows of its own (not in the record), their counts in it."""
        doc = asdict(incident)
        for in_rows in ("customer_mails", "customer_outcomes", "inline_notices", "notice_rows",
                        "holders_read"):
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


@dataclass
class _Tally:
    """A step's running counts per notice state and next row number, put into the record once at
    its end (not a record copied per holder)."""
    incident_id: str
    counts: Counter
    next_row: int

    @classmethod
    def of(cls, incident: Incident) -> _Tally:
        return cls(incident.id, Counter(incident.holder_counts), incident.next_notice_row)

    def into(self, incident: Incident) -> Incident:
        return replace(incident, holder_counts={s: n for s, n in self.counts.items() if n},
                       next_notice_row=self.next_row)


def _row_key(incident_id: str, row: int) -> bytes:
    return f"{incident_id}/".encode() + row.to_bytes(8, "big")


def _entries_under(txn: lmdb.Transaction, db: object, incident_id: str) -> list[tuple[bytes, bytes]]:
    prefix = f"{incident_id}/".encode()
    cursor = txn.cursor(db=db)
    entries = []
    if cursor.set_range(prefix):
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            entries.append((bytes(key), bytes(value)))
    return entries


def _keys_under(txn: lmdb.Transaction, db: object, incident_id: str) -> list[bytes]:
    return [key for key, _ in _entries_under(txn, db, incident_id)]
