"""The three exceptions to body retention (privacy policy 2.3), and the only path that keeps a body longer.

Why it exists: a body may outlive its 24 h only if (a) it is under a **legal hold** (fraud/abuse
investigation, carrier complaint, legal process), (b) its customer opted in to an **extended-retention
debugging window** for their own account, or (c) a **lawful order** compels it. Each exception here is
explicit (a :class:`Hold` with who, why, reference and until), bounded in time (``MAX_SECONDS`` per kind),
and audit-logged (``storage.audit``) when placed, read, released and expired.

How a body survives: a held body is copied, re-sealed under the hold's own data key (a named key
``hold:<id>`` in the key ring), into the ``held_bodies`` db. The transient body then follows its normal life
(carrier ack, TTL purge, its window key shredded) while the held copy stays readable, but only through
:meth:`Holds.read_held_body`, which audit-logs every read. When the hold is released or expires, its copies
are deleted and its key shredded, so they are gone from stale pages and backups as well. The end is
committed first, then the key shredded; on a full key disk the shred is in memory only (``storage.keys``):
the hold reads ended all the same, and a start shreds again the key of every hold ended on disk (a
restart before space returns reloads it from ``keys.store``). An ended hold's record is deleted only once
its notes key's shred is on disk, so a notes key never outlives the record that would shred it.

* Message-scoped holds (a, c) copy the bodies still stored when the hold is placed (a body already purged
  cannot be brought back; the audit entry counts those).
* Account-scoped holds (b, and c with ``account_id``) copy each body of that account written while the hold is
  active: :meth:`storage.bodies.BodyStore.put_many` hands items of the form ``(id, body, expires_at,
  account_id)`` to :meth:`Holds.capture`, in the same transaction.

Notes: a hold's reason and reference (and what it covers: account, message ids) can name people, so they
are never stored in plaintext. They are sealed under the hold's own **notes key** (``hold-notes:<id>``)
wherever they are written — in the hold record and in every audit entry about the hold (``notes``; read
them with :meth:`Holds.open_notes`) — and the notes key is destroyed when the ended hold's record is swept
(``ENDED_RETENTION_SECONDS``, one year after the end, like the audit trail), or at once when the account a
debugging window covers is erased (:meth:`Holds.forget_account`). Legal holds and lawful orders are the
policy's exceptions to erasure: their notes last until their records are swept. An audit entry about an
account-scoped hold names the account by its pseudonym only (``storage.audit``: also the
``customer:acc_…`` actor of a customer's own debugging window).

A lawful order's hold also keeps its **holders** (the accounts of the messages it names, with how many
each), so the order's notice can be given again after those messages' records were swept (kept 90 days;
an order up to a year): each by its pseudonym and its id sealed under that account's data key (in the
notes when the store has no per-account keys), so a holder's erasure removes it.

The hold record itself (kept a year after the hold ends, past an erasure) names the account the same
way when the store is given the per-account keys (``accounts``): ``actor`` and ``ended_by`` carry the
pseudonym (``customer:psn_…``) in place of the id, ``subject`` the pseudonym, and the account id is sealed
under the **account's data key** (``sealed_account``), which erasure destroys. While the account exists a
hold reads as it was placed; once it is erased a lawful order or a legal hold keeps its reason,
reference, times and pseudonym, and ``account_id`` reads ``None``. Records of an older version are read
as they were written.

A lawful order over several POP shards is several holds, one per shard; each carries the order's id
(``order_id``, given by whoever places the order on every shard), so the holds of one order are found
exactly - never those of another order with the same fields. A record written before order ids existed
reads ``order_id == ""``.

Asked again: :meth:`Holds.place` with a ``PlaceRequest`` (keyed hashes of an operator's
``Idempotency-Key`` and of what it asked, kept in the hold record) answers the hold that request placed
instead of placing another, for as long as the record is kept; the key with other content is
``HoldConflict``.

Durability contract: placing, capturing and releasing write the hold record, the held copies and the audit
entry in one durable LMDB transaction. *Writers:* operator threads and the sweeper. *Readers:* any thread.
A :class:`Holds` covers one POP environment; an operator places an account-scoped hold on every POP.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum

import lmdb
import msgpack

from engine.errors import (
    CorruptRecord,
    HoldConflict,
    HoldEnded,
    InputError,
    KeyUnavailable,
    StoreFull,
    UnknownAccount,
)
from storage.account_keys import DATA, AccountKeys
from storage.audit import AuditLog
from storage.bodies import BodyStore, durable_write
from storage.keys import KeyRing
from storage.pseudonyms import token_text
from storage.retention import RETENTION

log = logging.getLogger(__name__)

__all__ = ["ENDED_RETENTION_SECONDS", "MAX_SECONDS", "Hold", "HoldKind", "Holds", "PlaceRequest",
           "new_order_id"]

DAY = 86400
# an ended hold's record and notes: as long as its audit trail (storage.retention)
ENDED_RETENTION_SECONDS = RETENTION["ended_retention_exceptions"].seconds
_NOTES = ("reason", "reference", "message_ids", "account_id")


class HoldKind(StrEnum):
    LEGAL_HOLD = "legal_hold"  # (a) fraud/spam/abuse investigation, carrier complaint, legal process
    DEBUG_WINDOW = "debug_window"  # (b) customer opt-in extended retention for their own account
    LAWFUL_ORDER = "lawful_order"  # (c) compelled by a lawfully issued order


MAX_SECONDS: dict[HoldKind, int] = {
    HoldKind.LEGAL_HOLD: 90 * DAY,  # renewable only by placing a new hold with a new reference
    HoldKind.DEBUG_WINDOW: 7 * DAY,
    HoldKind.LAWFUL_ORDER: 365 * DAY,
}


@dataclass(frozen=True, slots=True)
class Hold:
    """One exception. ``message_ids`` or ``account_id`` says what it covers."""

    hold_id: str
    kind: str
    actor: str
    reason: str
    reference: str
    created_at: float
    until: float
    message_ids: tuple[str, ...] = ()
    account_id: str | None = None
    ended_at: float | None = None
    ended_by: str | None = None
    subject: str = ""  # the covered account's pseudonym (psn_…): all that names it once it is erased
    # the lawful order it belongs to (ord_…): an order over several POP shards is several holds; ""
    # for other kinds and for holds written by an older version (read as placed)
    order_id: str = ""
    # a lawful order's holders: (account id, how many of the messages held here are its), the accounts
    # its notice goes to besides ``account_id`` - kept so the notice can be given again after the
    # messages' records were swept. An erased account drops out (its id is sealed under its data key)
    holders: tuple[tuple[str, int], ...] = ()
    # how the engine's core names the account (its ``account_pseudonym``, the ledger's token), kept
    # where this store's key ring is another's - a worker of a cluster, whose own pseudonym of the
    # account (``subject``) the core cannot compute; "" where it is ``subject`` (one process) and for
    # holds written by an older version. A worker answers the core with it (``engine.core_names``)
    core_subject: str = ""
    # erasure destroyed its notes (a debugging window of an erased account): the record, written so in
    # the erasure's own commit, is the durable order to shred its notes key - again at every start while
    # a full key disk keeps that shred in memory only
    notes_erased: bool = False

    def active(self, now: float) -> bool:
        return self.ended_at is None and now < self.until


# (keyed hash of the request's Idempotency-Key, keyed hash of what it asked), both made by the caller
# (engine.holds): a retried placement answers the hold it placed instead of placing a second one
PlaceRequest = tuple[bytes, bytes]


class Holds:
    """Legal holds, debugging windows and lawful orders over one POP's :class:`BodyStore`."""

    def __init__(self, bodies: BodyStore, keys: KeyRing, audit: AuditLog, *,
                 clock: Callable[[], float] = time.time,
                 max_seconds: dict[HoldKind, int] | None = None,
                 accounts: AccountKeys | None = None) -> None:
        self.bodies = bodies
        self.keys = keys
        self._accounts = accounts  # per-account keys: records name accounts by pseudonym
        self.audit = audit
        self._clock = clock
        self._max = {**MAX_SECONDS, **(max_seconds or {})}
        env = bodies.env
        self._holds_db = env.open_db(b"holds")
        self._held_db = env.open_db(b"held_bodies")
        self._sealer = keys.store_sealer("holds")  # hold records name people and reasons: sealed too
        self._lock = threading.RLock()
        self._holds: dict[str, Hold] = {}
        self._requests: dict[str, PlaceRequest] = {}  # hold id -> the request that placed it
        self._by_request: dict[bytes, str] = {}  # its key's hash -> hold id
        self._by_account: dict[str, list[str]] = {}
        self._held: dict[bytes, int] = {}  # message key -> number of holds keeping a copy
        self._load()
        bodies.held = self._held
        self._update_capture_hook()

    # --- placing ----------------------------------------------------------------------------------

    def place_legal_hold(self, message_ids: Iterable[str], *, actor: str, reason: str,
                         reference: str, until: float) -> Hold:
        """(a) Keep these messages' bodies for an investigation or legal process."""
        return self._place(HoldKind.LEGAL_HOLD, actor, reason, reference, until,
                           message_ids=tuple(message_ids))

    def open_debug_window(self, account_id: str, *, actor: str, reason: str, reference: str,
                          until: float) -> Hold:
        """(b) The customer's opt-in: keep their own account's new bodies until ``until``."""
        return self._place(HoldKind.DEBUG_WINDOW, actor, reason, reference, until,
                           account_id=account_id)

    def register_lawful_order(self, *, actor: str, reason: str, reference: str, until: float,
                              message_ids: Iterable[str] = (), account_id: str | None = None,
                              order_id: str = "", holders: dict[str, int] | None = None) -> Hold:
        """(c) A lawful order naming messages (kept from now) and/or an account (new bodies);
        ``holders``: the accounts of those messages, with how many each (see :class:`Hold`)."""
        return self._place(HoldKind.LAWFUL_ORDER, actor, reason, reference, until,
                           message_ids=tuple(message_ids), account_id=account_id, order_id=order_id,
                           holders=holders)

    def place(self, kind: HoldKind, *, actor: str, reason: str, reference: str, until: float,
              message_ids: Iterable[str] = (), account_id: str | None = None,
              request: PlaceRequest | None = None, order_id: str = "",
              holders: dict[str, int] | None = None, core_subject: str = "") -> tuple[Hold, bool]:
        """Any kind of hold; ``(hold, placed now)``. With ``request``, placing the same request again
        answers the hold it placed (``False``: nothing written), whether that hold is still open or
        not; the same key with other content is refused (``HoldConflict``). Why: an operator whose
        answer was lost, or whose cluster placed it on only some workers, must be able to ask again
        without leaving a second hold where one was placed. ``order_id``: the lawful order the hold
        belongs to (every shard's hold of one order gets the same; a lawful order placed without one
        gets one of its own); ``holders``: a lawful order's (see :class:`Hold`); ``core_subject``: the
        engine core's pseudonym of ``account_id`` (see :class:`Hold`)."""
        with self._lock:  # one request at a time: two tries of one key must not both place
            if request is not None:
                found = self._placed_by(request)
                if found is not None:
                    return found, False
            return self._place(kind, actor, reason, reference, until,
                               message_ids=tuple(message_ids), account_id=account_id,
                               request=request, order_id=order_id, holders=holders,
                               core_subject=core_subject), True

    def _placed_by(self, request: PlaceRequest) -> Hold | None:
        hold_id = self._by_request.get(request[0])
        if hold_id is None:
            return None
        if self._requests[hold_id][1] != request[1]:
            raise HoldConflict(f"this Idempotency-Key placed {hold_id} with other content (kind, "
                               "reason, reference, until, messages or account): use a new key")
        return self._holds[hold_id]

    def _place(self, kind: HoldKind, actor: str, reason: str, reference: str, until: float, *,
               message_ids: tuple[str, ...] = (), account_id: str | None = None,
               request: PlaceRequest | None = None, order_id: str = "",
               holders: dict[str, int] | None = None, core_subject: str = "") -> Hold:
        now = self._clock()
        self._validate(kind, actor, reason, reference, until, now, message_ids, account_id)
        if kind is not HoldKind.LAWFUL_ORDER:
            order_id, holders = "", None
        elif not order_id:
            order_id = new_order_id()
        subject = (token_text(self._accounts.token(account_id))
                   if account_id and self._accounts is not None else "")
        hold = Hold(f"hold_{os.urandom(8).hex()}", kind.value, actor, reason, reference, now, until,
                    message_ids, account_id, subject=subject, order_id=order_id,
                    holders=tuple(sorted((holders or {}).items())),
                    core_subject=core_subject if subject and core_subject != subject else "")
        sealer = self.keys.named_sealer(_key_name(hold.hold_id))
        copies = [(m, body) for m in message_ids if (body := self._readable(m)) is not None]
        with self._lock, durable_write(self.bodies.env) as txn:
            self._write_hold(txn, hold, request)
            for message_id, body in copies:
                key = bytes.fromhex(message_id[4:])
                txn.put(_held_key(hold.hold_id, key), sealer.seal(body.encode(), key),
                        db=self._held_db)
            self.audit.append(actor, f"place_{kind.value}", hold.hold_id, "ok", {
                "until": until, "messages": len(message_ids), "copied": len(copies),
                "not_stored": len(message_ids) - len(copies),
                **self._sealed_notes(hold.hold_id, reason=reason, reference=reference,
                                     account_id="" if self._accounts is not None
                                     else account_id or ""),  # else: the entry's sealed id
            }, account=account_id, txn=txn)
        with self._lock:
            self._remember(hold, [bytes.fromhex(m[4:]) for m, _ in copies], request)
        return hold

    def _readable(self, message_id: str) -> str | None:
        try:
            return self.bodies.get(message_id)
        except (CorruptRecord, KeyUnavailable):
            return None  # the store has raised its alarm; the audit entry counts it as not stored

    def _validate(self, kind, actor, reason, reference, until, now, message_ids, account_id):
        if not (actor and reason and reference):
            raise InputError("a hold needs who (actor), why (reason) and a reference")
        if until <= now:
            raise InputError("a hold must end in the future")
        if until - now > self._max[kind]:
            raise InputError(f"a {kind.value} lasts at most {self._max[kind]} s")
        if not message_ids and account_id is None:
            raise InputError("a hold must name messages or an account")
        if kind is HoldKind.DEBUG_WINDOW and message_ids:
            raise InputError("a debugging window covers an account, not chosen messages")
        bad = [m for m in message_ids if len(m) != 36 or not m.startswith("msg_")]
        if bad:
            raise InputError(f"not message ids: {bad[:3]}")

    # --- capture on the write path (called by BodyStore.put_many) -------------------------------

    def capture(self, txn: lmdb.Transaction, items: list[tuple[bytes, str, str]]) -> int:
        """Copy bodies ``(key, account_id, body)`` of accounts under an active account-scoped hold."""
        by_account, now, copied = self._by_account, self._clock(), 0
        for key, account_id, body in items:
            for hold_id in by_account.get(account_id, ()):
                hold = self._holds[hold_id]
                if not hold.active(now):
                    continue
                sealer = self.keys.named_sealer(_key_name(hold_id), create=False)
                txn.put(_held_key(hold_id, key), sealer.seal(body.encode(), key), db=self._held_db)
                self._held[key] = self._held.get(key, 0) + 1
                copied += 1
        return copied

    def _update_capture_hook(self) -> None:
        # put_many pays for account lookups only while some account-scoped hold is open
        self.bodies.capture = self.capture if self._by_account else None

    def accounts_held(self) -> frozenset[str]:
        return frozenset(self._by_account)

    # --- reading (the exception's own path) -------------------------------------------------------

    def read_held_body(self, hold_id: str, message_id: str, actor: str) -> str:
        """The held copy of a body; audit-logged whatever the outcome. ``HoldEnded`` once the hold
        ended (its copies are gone), ``UnknownAccount`` for a hold this store does not know."""
        hold = self._holds.get(hold_id)
        if hold is None or not hold.active(self._clock()):
            self.audit.append(actor, "read_held_body", f"{hold_id}/{message_id}", "denied",
                              {"why": "no active hold"}, account=hold and hold.account_id)
            if hold is None:
                raise UnknownAccount(f"no hold {hold_id}")
            raise HoldEnded(f"{hold_id} ended (released or expired): its copies are shredded")
        key = bytes.fromhex(message_id[4:])
        with self.bodies.env.begin(db=self._held_db) as txn:
            blob = txn.get(_held_key(hold_id, key))
            blob = None if blob is None else bytes(blob)
        if blob is None:
            self.audit.append(actor, "read_held_body", f"{hold_id}/{message_id}", "not_found",
                              account=hold.account_id)
            raise InputError(f"{message_id} is not held by {hold_id}")
        sealer = self.keys.named_sealer(_key_name(hold_id), create=False)
        body = sealer.open(blob, key).decode()
        self.audit.append(actor, "read_held_body", f"{hold_id}/{message_id}", "ok",
                          {"kind": hold.kind, **self._sealed_notes(hold_id, reference=hold.reference)},
                          account=hold.account_id)
        return body

    def held_message_ids(self, hold_id: str) -> list[str]:
        """Ids (not bodies) of the copies a hold keeps."""
        with self.bodies.env.begin() as txn:
            return ["msg_" + k.hex() for k in self._copies(txn, hold_id)]

    def active(self) -> list[Hold]:
        now = self._clock()
        return [h for h in self._holds.values() if h.active(now)]

    def get(self, hold_id: str) -> Hold | None:
        return self._holds.get(hold_id)

    # --- ending -----------------------------------------------------------------------------------

    def release(self, hold_id: str, *, actor: str, reason: str) -> Hold:
        """End a hold now: delete its copies and shred its key (audit-logged)."""
        return self._end(hold_id, actor, "release", reason)

    def sweep(self, now: float | None = None) -> int:
        """End every hold past its ``until``; delete the records (and shred the notes) of holds ended
        more than ``ENDED_RETENTION_SECONDS`` ago (the :class:`~storage.retention.Sweepable` contract)."""
        now = self._clock() if now is None else now
        due = [h.hold_id for h in self._holds.values() if h.ended_at is None and h.until <= now]
        for hold_id in due:
            self._end(hold_id, "system:sweeper", "expire", "until reached")
        old = [h.hold_id for h in self._holds.values()
               if h.ended_at is not None and now - h.ended_at > ENDED_RETENTION_SECONDS]
        with self._lock:
            shredded, full = [], None
            for hold_id in old:  # the notes key first: the record is their owner until it is gone
                try:
                    self.keys.shred_named(_notes_key(hold_id))
                    shredded.append(hold_id)
                except StoreFull as exc:  # forgotten in memory only: the record stays, swept again
                    full = exc
            if shredded:
                with durable_write(self.bodies.env) as txn:
                    for hold_id in shredded:
                        txn.delete(hold_id.encode(), db=self._holds_db)
            for hold_id in shredded:
                del self._holds[hold_id]
                request = self._requests.pop(hold_id, None)
                if request is not None:
                    self._by_request.pop(request[0], None)
            if full is not None:
                raise full
        return len(due) + len(shredded)

    def forget_account(self, account_id: str) -> int:
        """Erasure: end the account's debugging windows and shred their notes now (the customer's own
        opt-in ends with the account; legal holds and lawful orders are the policy's exceptions and
        keep theirs). Returns how many windows it covered.

        The windows' records are rewritten without notes and marked ``notes_erased`` in one durable
        commit before any key is shredded: that mark needs no key-store space, so on a full key disk a
        notes key whose shred is in memory only (``storage.keys``) is shredded again at every start
        (:meth:`_shred_keys_of_ended_holds`) until the body sweep saves it - the erasure completes
        instead of failing half way, and a restart cannot bring the notes back."""
        mine = [h for h in self.of_account(account_id) if h.kind == HoldKind.DEBUG_WINDOW]
        for hold in mine:
            if hold.ended_at is None:
                self._end(hold.hold_id, "system:erasure", "release", "account erased", shred=False)
        with self._lock:
            # written with its account id (sealed under the account's data key, which erasure shreds:
            # its actor names the account by pseudonym), kept in memory without it, as a reload reads it
            erased = [replace(self._holds[h.hold_id], reason="", reference="", message_ids=(), holders=(),
                              notes_erased=True) for h in mine]
            if erased:
                with durable_write(self.bodies.env) as txn:
                    for hold in erased:
                        self._write_hold(txn, hold, self._requests.get(hold.hold_id))
            for hold in erased:
                self._holds[hold.hold_id] = _without_notes(hold)
            for hold in erased:
                self._shred_hold_key(hold.hold_id)
                self._shred_notes_key(hold.hold_id)
        with self._lock:  # the others stay, naming the account as a reload would: by pseudonym only
            for hold in [h for h in self.of_account(account_id) if h.account_id is not None]:
                self._holds[hold.hold_id] = replace(hold, account_id=None)
            for hold in [h for h in self._holds.values() if any(a == account_id for a, _ in h.holders)]:
                self._holds[hold.hold_id] = replace(hold, holders=tuple(
                    (a, n) for a, n in hold.holders if a != account_id))
            self._by_account.pop(account_id, None)  # an erased account sends nothing to capture
            self._update_capture_hook()
        return len(mine)

    def of_account(self, account_id: str) -> list[Hold]:
        """The holds covering the account (open or ended): by its id, or by its pseudonym where the id
        could not be opened - a hold a worker placed without a data key of the account (an older
        version's) reads back without its id after a restart, and must still be found to be closed or
        forgotten at erasure."""
        subject = token_text(self._accounts.token(account_id)) if self._accounts is not None else ""
        return [h for h in self._holds.values() if h.account_id == account_id
                or (h.account_id is None and subject and h.subject == subject)]

    def open_notes(self, detail: dict) -> dict:
        """An audit entry's detail with its sealed notes opened (``{"notes": "shredded"}`` once its
        notes key is gone): how an auditor reads why a hold was placed, read or ended."""
        sealed = detail.get("notes")
        if not isinstance(sealed, bytes):
            return detail
        name = detail.get("notes_key", "")
        opened = {k: v for k, v in detail.items() if k not in ("notes", "notes_key")}
        try:
            sealer = self.keys.named_sealer(name, create=False)
            opened["notes"] = msgpack.unpackb(sealer.open(sealed, name.encode()), raw=False)
        except (KeyUnavailable, CorruptRecord):
            opened["notes"] = "shredded"
        return opened

    def _end(self, hold_id: str, actor: str, action: str, reason: str, *, shred: bool = True) -> Hold:
        with self._lock:
            hold = self._holds.get(hold_id)
            if hold is None or hold.ended_at is not None:
                raise InputError(f"{hold_id} is not an open hold")
            ended = replace(hold, ended_at=self._clock(), ended_by=actor)
            prefix = _held_key(hold_id, b"")
            with durable_write(self.bodies.env) as txn:
                removed = self._delete_copies(txn, prefix)
                self._write_hold(txn, ended, self._requests.get(hold_id))
                self.audit.append(actor, f"{action}_{hold.kind}", hold_id, "ok",
                                  {"copies_shredded": len(removed),
                                   **self._sealed_notes(hold_id, reason=reason)},
                                  account=hold.account_id, txn=txn)
            self._holds[hold_id] = ended  # the table says what the commit did, whatever the shred does
            self._forget(ended, removed)
            if shred:  # (erasure shreds once its own commit marks the window erased)
                self._shred_hold_key(hold_id)
            return ended

    def _shred_hold_key(self, hold_id: str) -> bool:
        """Shred an ended hold's key; whether that is on disk. On a full key disk the ring forgets it in
        memory at once and the body sweep saves it (and alarms until then): the hold is ended all the same,
        so this logs instead of failing the release or the expiry that committed it."""
        return self._shred_or_log(_key_name(hold_id), hold_id, "hold ended; its key",
                                  "saved by the next body sweep that can")

    def _shred_notes_key(self, hold_id: str) -> None:
        """Shred the notes key of a window whose account was erased; as :meth:`_shred_hold_key`, a full
        key disk keeps it in memory only (logged): the record's ``notes_erased`` has it shredded again
        at the next start, and the body sweep saves it."""
        self._shred_or_log(_notes_key(hold_id), hold_id, "account erased; a debugging window's notes key",
                           "shredded again at every start and saved by the next body sweep that can")

    def _shred_or_log(self, key_name: str, hold_id: str, what: str, then: str) -> bool:
        """Shred ``key_name``; whether that is on disk. ``StoreFull`` (the ring forgot it in memory only)
        is logged as ``what`` is forgotten in memory, and ``then``, not raised."""
        try:
            self.keys.shred_named(key_name)
        except StoreFull:
            log.warning("%s is forgotten in memory but the key store cannot be saved yet (key directory "
                        "full): %s", what, then, extra={"hold": hold_id})
            return False
        return True

    def _shred_keys_of_ended_holds(self) -> None:
        """Shred the key of every hold ended on disk whose key is still in the ring: a shred forgotten in
        memory only (full key disk) comes back with ``keys.store`` at a restart. Only this store's own
        ended holds: the ring is shared by every POP of the process, and a hold being placed is not
        ended, so no other store's key and no new hold's key is touched."""
        with self._lock:
            for hold in [h for h in self._holds.values() if h.ended_at is not None]:
                if self.keys.has_named(_key_name(hold.hold_id)):
                    self._shred_hold_key(hold.hold_id)
                if hold.notes_erased and self.keys.has_named(_notes_key(hold.hold_id)):
                    self._shred_notes_key(hold.hold_id)

    def _delete_copies(self, txn: lmdb.Transaction, prefix: bytes) -> list[bytes]:
        removed = []
        cursor = txn.cursor(db=self._held_db)
        if cursor.set_range(prefix):
            while cursor.key().startswith(prefix):
                removed.append(cursor.key()[len(prefix):])
                if not cursor.delete():
                    break
        return removed

    # --- state ------------------------------------------------------------------------------------

    def _sealed_notes(self, hold_id: str, **notes: object) -> dict[str, object]:
        """``notes`` sealed under the hold's notes key, for a hold record or an audit entry."""
        name = _notes_key(hold_id)
        blob = self.keys.named_sealer(name).seal(msgpack.packb(notes), name.encode())
        return {"notes": blob, "notes_key": name}

    def _write_hold(self, txn: lmdb.Transaction, hold: Hold, request: PlaceRequest | None = None) -> None:
        key = hold.hold_id.encode()
        fields = asdict(hold)
        notes = {k: fields.pop(k) for k in _NOTES}
        holders = [list(h) for h in fields.pop("holders")]
        if request is not None:  # keyed hashes only (never the operator's key): see PlaceRequest
            fields["request"] = list(request)
        if self._accounts is not None and (hold.account_id or hold.subject):
            fields.update(self._pseudonymised(hold, key))
            notes["account_id"] = ""  # sealed under the account's own key instead
        if holders and self._accounts is not None:  # each by pseudonym, its id under its data key
            fields["holders"] = [self._pseudonymised_holder(a, n, key) for a, n in holders]
        elif holders:
            notes["holders"] = holders
        if hold.notes_erased:  # no notes left to seal (and no notes key to make on a full key disk)
            fields.update(notes="shredded")
        else:
            fields.update(self._sealed_notes(hold.hold_id, **notes))
        txn.put(key, self._sealer.seal(msgpack.packb(fields), key), db=self._holds_db)

    def _pseudonymised(self, hold: Hold, key: bytes) -> dict[str, object]:
        """What a record stores of its account: the pseudonym in place of the id (in ``actor`` and
        ``ended_by`` too), and the id sealed under the account's data key (``b""`` once it is gone)."""
        account = hold.account_id or ""
        subject = token_text(self._accounts.token(account)) if account else hold.subject
        try:
            sealed = self._accounts.sealer(account, DATA).seal(account.encode(), key) if account else b""
        except KeyUnavailable:
            sealed = b""
        name = account or subject
        return {"actor": hold.actor.replace(name, subject), "subject": subject,
                "ended_by": hold.ended_by and hold.ended_by.replace(name, subject),
                "sealed_account": sealed}

    def _pseudonymised_holder(self, account: str, count: int, key: bytes) -> list:
        """A holder as a record stores it: ``[pseudonym, id sealed under the account's data key (b""
        if it is gone), count]``, so the holder drops out of the record with its erasure."""
        try:
            sealed = self._accounts.sealer(account, DATA).seal(account.encode(), key)
        except KeyUnavailable:
            sealed = b""
        return [token_text(self._accounts.token(account)), sealed, count]

    def _read_hold(self, key: bytes, blob: bytes) -> tuple[Hold, PlaceRequest | None]:
        """The hold and the request that placed it (None: placed without a key, or by an older
        version). A record of a version before order ids and holders reads ``order_id == ""`` and
        no holders."""
        fields = msgpack.unpackb(self._sealer.open(bytes(blob), bytes(key)), raw=False)
        notes = self.open_notes(fields)["notes"]
        sealed = fields.pop("sealed_account", b"")
        request = fields.pop("request", None)
        holders = [(a, n) for psn, sealed_id, n in fields.pop("holders", [])
                   if (a := self._open_account(psn, bytes(sealed_id), bytes(key)))]
        fields = {k: v for k, v in fields.items() if k not in ("notes", "notes_key")}
        hold = Hold(**fields, reason="", reference="")
        if isinstance(notes, dict):
            holders += [(a, n) for a, n in notes.get("holders", [])]
            hold = replace(hold, reason=notes["reason"], reference=notes["reference"],
                           message_ids=tuple(notes["message_ids"]),
                           account_id=notes["account_id"] or None)
        hold = replace(hold, holders=tuple(holders))
        if hold.subject:
            account = self._open_account(hold.subject, sealed, bytes(key))
            name = account or hold.subject
            hold = replace(hold, account_id=account or None,
                           actor=hold.actor.replace(hold.subject, name),
                           ended_by=hold.ended_by and hold.ended_by.replace(hold.subject, name))
        return hold, (bytes(request[0]), bytes(request[1])) if request else None

    def _open_account(self, subject: str, sealed: bytes, key: bytes) -> str:
        """The account id sealed in a record; ``""`` once the account's data key is gone."""
        if self._accounts is None or not sealed:
            return ""
        token = bytes.fromhex(subject.removeprefix("psn_"))
        try:
            return self._accounts.sealer_for_token(token, DATA).open(sealed, key).decode()
        except KeyUnavailable:
            return ""

    def _remember(self, hold: Hold, copied: list[bytes], request: PlaceRequest | None = None) -> None:
        self._holds[hold.hold_id] = hold
        if request is not None:
            self._requests[hold.hold_id] = request
            self._by_request[request[0]] = hold.hold_id
        if hold.account_id is not None and hold.ended_at is None:
            self._by_account.setdefault(hold.account_id, []).append(hold.hold_id)
            self._update_capture_hook()
        for key in copied:
            self._held[key] = self._held.get(key, 0) + 1

    def _forget(self, hold: Hold, removed: list[bytes]) -> None:
        if hold.account_id is not None:
            ids = [h for h in self._by_account.get(hold.account_id, []) if h != hold.hold_id]
            if ids:
                self._by_account[hold.account_id] = ids
            else:
                self._by_account.pop(hold.account_id, None)
            self._update_capture_hook()
        for key in removed:
            left = self._held.get(key, 0) - 1
            if left > 0:
                self._held[key] = left
            else:
                self._held.pop(key, None)

    def _load(self) -> None:
        with self.bodies.env.begin() as txn:
            for key, blob in txn.cursor(db=self._holds_db):
                hold, request = self._read_hold(key, blob)
                copied = [] if hold.ended_at is not None else self._copies(txn, hold.hold_id)
                self._remember(hold, copied, request)
        self._shred_keys_of_ended_holds()  # a shred a restart undid (see there)

    def _copies(self, txn: lmdb.Transaction, hold_id: str) -> list[bytes]:
        prefix = _held_key(hold_id, b"")
        cursor = txn.cursor(db=self._held_db)
        found = []
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                if not key.startswith(prefix):
                    break
                found.append(bytes(key[len(prefix):]))
        return found


def new_order_id() -> str:
    """A lawful order's id (``ord_`` + 16 hex digits), shared by all its holds."""
    return f"ord_{os.urandom(8).hex()}"


def _key_name(hold_id: str) -> str:
    return f"hold:{hold_id}"


def _notes_key(hold_id: str) -> str:
    return f"hold-notes:{hold_id}"


def _without_notes(hold: Hold) -> Hold:
    return replace(hold, reason="", reference="", message_ids=(), account_id=None, holders=())


def _held_key(hold_id: str, message_key: bytes) -> bytes:
    return bytes.fromhex(hold_id[5:]) + message_key
