"""The mail outbox: customer e-mail waiting to be sent, sealed at rest, bounded, swept once sent.

Why it exists: a confirmation link or a security alert must not be lost because the SMTP server was down
or the engine was killed between deciding to send and sending. Mail is written here first (one durable
transaction), and :class:`engine.mail.worker.MailWorker` sends what is due, deletes each mail once the
SMTP server has accepted it, and reschedules a failed one with exponential backoff.

Layout (in the LMDB environment it is given, ``<data_dir>/mail``): ``outbox`` maps a mail id (16 bytes:
creation time in ns + 8 random bytes) to the sealed msgpack of the :class:`OutboxMail`; ``outbox_due`` is
the index ``next attempt (ms, 8 bytes) | mail id`` -> empty, so finding due mail never decrypts the rest.
Each value is a 26-byte header — format byte ``0x02``, key kind (``a``: the account's data key, ``m``: the
mail's own key), a 16-byte key token, next attempt (ms) — then the sealed msgpack (AES-256-GCM, the mail
id as AAD). The address, subject and text are sealed; only times, ids and key tokens are readable.

Which key seals a mail, and why (erasure, policy 7.1): LMDB never wipes freed pages (``storage.env``), so
deleting a mail is not erasing it. A mail is sealed under the **data key of the account it is for**
(``storage.account_keys``, the token is the account's keyed token) — the key erasure destroys. So an
erased account's queued mail, on live pages, stale pages or backups, can never be opened or sent again:
:meth:`Outbox.forget_account` (called by the erasure) deletes its entries, and any that escaped it (queued
in the instant the key was shredded, or waiting in a copy) fails to open and is dropped unsent by
:meth:`Outbox.due` / :meth:`Outbox.get` (``erased`` counts them). Queuing mail for an account whose data
key is gone is refused (``KeyUnavailable``): nothing is queued for an erased account.

The one mail that must outlive its account is the one telling the holder their erasure was carried out
(``NewMail.own_key``): it is sealed under a **key of its own** — a random token in the separate mail key
directory (``<keys>/mail``), wrapped by the same key-encryption key — created before the mail is queued and
destroyed before the mail leaves the outbox (sent, refused, swept), so once it is gone no copy of it opens
either. It carries no account id (see ``engine.mail.notices``).

Mail written by an older version (value = a bare sealed blob, the store-wide ``outbox`` key) is still read
when ``legacy`` is given, and erased on erasure by opening it; it ages out with the 3-day retention.

Durability contract:

* *Durable:* :meth:`Outbox.enqueue` returns only after the transaction holding every mail of the call is
  fsynced (the environment syncs on commit): an enqueued mail survives ``kill -9`` and is sent after the
  restart. A mail deleted by :meth:`sent` may have reached the server once more if the process died
  between the server's answer and the delete (at-least-once; never lost).
* *Bounded:* at most ``max_mails`` wait at once; an enqueue that does not fit is refused whole with
  :class:`~engine.errors.StoreFull` (nothing half-queued).
* *Receipted:* :meth:`sent` records the mail's id (no address, no text) with the time in ``outbox_sent``,
  in the transaction that deletes the mail, so :meth:`outcome` tells a mail the server accepted from one
  still queued or dropped unsent (refused, expired, erased). A mail that was only logged because no mail
  server is configured (:meth:`logged`) leaves the same way with a receipt marked so: it reads
  ``not_delivered``, never ``sent`` (nobody was told). What waits on a notice having gone out (a
  lawful order's disclosure, ``engine.lawful_notice``) asks this. Receipts are swept after
  ``RECEIPT_SECONDS``.
* *Withdrawn:* :meth:`withdraw` removes mails still waiting, unsent (no receipt: they read ``unsent``), for
  what was called off before its mail left (a lawful order released, ``engine.lawful_notice``). A caller
  that must write a mail's id elsewhere before the mail can be sent takes its ids first (:meth:`new_ids`,
  then ``enqueue(..., ids=)``).
* *Swept:* a sent mail is deleted at once; one still unsent when the retention row ``outbound_mail``
  (``storage.retention``: 3 days) runs out is dropped by :meth:`sweep` (counted by the sweeper).
* *Erased:* after :meth:`forget_account` returns, no mail for the account is in the outbox and none
  queued later can be (its key is gone first). A key of a mail's own is shredded before its entry is
  deleted: a crash in between leaves an entry that no longer opens and is dropped unsent. It is also made
  durable before its mail is queued: a crash in between leaves a key no mail refers to, which
  :meth:`sweep_orphan_keys` shreds once it is ``ORPHAN_KEY_GRACE_SECONDS`` old (at start and each sweep).
* *Writers:* any thread (LMDB serialises write transactions). *Readers:* any thread.
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import lmdb
import msgpack

from engine.errors import CorruptRecord, KeyUnavailable, StorageError, StoreFull
from storage.account_keys import DATA, AccountKeys
from storage.crypto import Sealer
from storage.full import FULL_ERRORS, store_full
from storage.pseudonyms import token_text
from storage.retention import cutoff

__all__ = ["NOT_DELIVERED", "ORPHAN_KEY_GRACE_SECONDS", "QUEUED", "RECEIPT_SECONDS", "SENT", "UNSENT",
           "NewMail", "Outbox", "OutboxMail"]

log = logging.getLogger(__name__)

_MS = struct.Struct(">Q")
_FORMAT = 0x02  # never BLOB_VERSION: a bare sealed blob is a mail of the older format
ACCOUNT_KEY, OWN_KEY = b"a", b"m"
_HEADER = 1 + 1 + 16 + 8
#: A key of its own no queued mail refers to is swept once it is this old (an enqueue takes milliseconds)
ORPHAN_KEY_GRACE_SECONDS = 3600.0
#: A sent mail's receipt (its id and when) is kept this long: longer than a lawful order can last
RECEIPT_SECONDS = 400 * 86400.0
QUEUED, SENT, UNSENT = "queued", "sent", "unsent"
#: The mail left the outbox without reaching anyone: no mail server is configured, it was only logged
NOT_DELIVERED = "not_delivered"
_LOGGED = b"L"  # appended to a receipt's time: the mail was only logged (no mail server), not sent


@dataclass(frozen=True)
class NewMail:
    """A mail to queue: who it is for (account id, for logs and for its key), where it goes, what it says.

    ``own_key``: sealed under a key of its own instead of the account's data key (only the mail that
    confirms an erasure, sent after the account and its key are gone).

    ``follow_account``: the mail is for the account, not for ``to``: the sender addresses it to the
    account's address of record *when it sends it* (``to`` is only the address when it was queued), so a
    rectification reaches mail already waiting. Without it (a confirmation link, which confirms ``to``)
    the mail is sent only while ``to`` is still the account's address."""

    template: str
    account_id: str
    to: str
    subject: str
    text: str
    own_key: bool = False
    follow_account: bool = False


@dataclass(frozen=True)
class OutboxMail:
    mail_id: str
    template: str
    account_id: str
    to: str
    subject: str
    text: str
    created_at: float
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str = ""  # an SMTP code or exception name, never the server's text
    follow_account: bool = False  # see NewMail; False for mail queued by older versions


class Outbox:
    """Sealed, bounded, durable queue of outgoing mail, each mail under its account's data key.

    *Durable:* ``enqueue`` returns after the fsynced commit; a mail survives ``kill -9`` until sent
    (at-least-once). *Bounded:* ``max_mails``. *Erased:* ``forget_account``. *Writers/readers:* any
    thread. See the module docstring.
    """

    def __init__(self, env: lmdb.Environment, account_keys: AccountKeys, mail_keys: AccountKeys, *,
                 max_mails: int = 10000, legacy: Sealer | None = None) -> None:
        self.env = env
        self._account_keys = account_keys
        self._mail_keys = mail_keys
        self._legacy = legacy
        self._db = env.open_db(b"outbox")
        self._due = env.open_db(b"outbox_due")
        self._sent = env.open_db(b"outbox_sent")  # mail id -> sent at (ms): receipts, nothing else
        self.max_mails = max_mails
        self.erased = 0  # mails dropped unsent because their key was gone (their account erased)

    @staticmethod
    def new_ids(count: int, now: float | None = None) -> list[str]:
        """Ids for ``count`` mails about to be queued with ``enqueue(..., ids=)`` (creation time in ns +
        8 random bytes, as ``enqueue`` makes them): for a caller that records them before the mails
        exist, so no mail is ever in the outbox - where the worker may send it at once - without that
        record (a lawful order's notice, ``engine.lawful_notice``)."""
        now = time.time() if now is None else now
        return [(int(now * 1e9).to_bytes(8, "big") + os.urandom(8)).hex() for _ in range(count)]

    def enqueue(self, mails: Iterable[NewMail], now: float | None = None, *,
                ids: list[str] | None = None) -> list[str]:
        """Queue mails in one durable transaction; their ids (``ids``: those of :meth:`new_ids`, one
        per mail, in order). ``StoreFull`` if they do not all fit, ``KeyUnavailable`` if one is for an
        account without a data key (erased): nothing is queued."""
        now = time.time() if now is None else now
        mails = list(mails)
        if ids is not None and len(ids) != len(mails):
            raise ValueError("enqueue: one id per mail")
        given, ids = ids, []
        own: list[bytes] = []
        try:
            keyed = []
            for mail in mails:
                if mail.own_key:
                    token = os.urandom(16)
                    self._mail_keys.create_token(token, (DATA,))  # durable before it seals anything
                    own.append(token)
                    keyed.append((mail, OWN_KEY, token, self._mail_keys.sealer_for_token(token)))
                else:
                    token = self._account_keys.token(mail.account_id)
                    keyed.append((mail, ACCOUNT_KEY, token,
                                  self._account_keys.sealer_for_token(token, DATA)))
            with self.env.begin(write=True) as txn:
                waiting = txn.stat(self._db)["entries"]
                if waiting + len(mails) > self.max_mails:
                    raise StoreFull(f"the mail outbox holds {waiting} of {self.max_mails} mails; "
                                    f"{len(mails)} more do not fit")
                for i, (mail, kind, token, sealer) in enumerate(keyed):
                    key = (bytes.fromhex(given[i]) if given is not None
                           else int(now * 1e9).to_bytes(8, "big") + os.urandom(8))
                    self._put(txn, OutboxMail(key.hex(), mail.template, mail.account_id, mail.to,
                                              mail.subject, mail.text, now, 0, now,
                                              follow_account=mail.follow_account),
                              kind, token, sealer)
                    ids.append(key.hex())
        except BaseException as exc:
            for token in own:  # nothing of the call was queued: its own keys go too
                self._mail_keys.shred_token(token)
            if isinstance(exc, FULL_ERRORS):  # named, logged and counted like every full store
                raise store_full("mail") from exc
            if isinstance(exc, lmdb.Error):
                raise StorageError(f"the mail outbox write failed: {type(exc).__name__}") from exc
            raise
        return ids

    def due(self, now: float, limit: int = 50) -> list[OutboxMail]:
        """Mails whose next attempt is at or before ``now``, earliest first. A mail whose key is gone
        (its account erased) is dropped unsent, not returned."""
        bound = _MS.pack(int(now * 1000))
        out, gone = [], []
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._due)
            for key, _ in cursor:
                if key[:8] > bound or len(out) >= limit:
                    break
                blob = txn.get(key[8:], db=self._db)
                if blob is not None:
                    mail = self._open(bytes(key[8:]), blob)
                    if mail is None:
                        gone.append(bytes(key[8:]).hex())
                    else:
                        out.append(mail)
        for mail_id in gone:
            self._drop_unreadable(mail_id)
        return out

    def get(self, mail_id: str) -> OutboxMail | None:
        """The mail as queued now; None if it left the outbox or its key is gone (then it is dropped).
        The sender asks this right before each send, so a mail erased meanwhile is never sent."""
        key = bytes.fromhex(mail_id)
        with self.env.begin() as txn:
            blob = txn.get(key, db=self._db)
            mail = None if blob is None else self._open(key, bytes(blob))
        if blob is not None and mail is None:
            self._drop_unreadable(mail_id)
        return mail

    def next_due_at(self) -> float | None:
        """When the earliest waiting mail is due (None when the outbox is empty)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._due)
            return _MS.unpack(cursor.key()[:8])[0] / 1000 if cursor.first() else None

    def sent(self, mail_id: str, now: float | None = None) -> None:
        """The server accepted it: delete it (swept once sent) and keep its receipt."""
        now = time.time() if now is None else now
        self._remove(mail_id, receipt=_MS.pack(int(now * 1000)))

    def logged(self, mail_id: str, now: float | None = None) -> None:
        """No mail server is configured and the mail was only logged: delete it (it cannot wait for a
        server that may never come: the bounded outbox would fill) and keep a receipt that says it was
        not delivered, so :meth:`outcome` never reads ``sent`` for it."""
        now = time.time() if now is None else now
        self._remove(mail_id, receipt=_MS.pack(int(now * 1000)) + _LOGGED)

    def outcome(self, mail_id: str) -> str:
        """``"queued"`` (waiting or retrying), ``"sent"`` (the server accepted it), ``"not_delivered"``
        (only logged: no mail server is configured), or ``"unsent"`` (it left the outbox without being
        sent: refused, expired or erased; or never was)."""
        key = bytes.fromhex(mail_id)
        with self.env.begin() as txn:
            if txn.get(key, db=self._db) is not None:
                return QUEUED
            receipt = txn.get(key, db=self._sent)
        if receipt is None:
            return UNSENT
        return NOT_DELIVERED if bytes(receipt[8:9]) == _LOGGED else SENT

    def retry(self, mail_id: str, next_attempt_at: float, error: str) -> OutboxMail | None:
        """Count a failed attempt and move the mail's next attempt to ``next_attempt_at``."""
        key = bytes.fromhex(mail_id)
        with self.env.begin(write=True) as txn:
            blob = txn.get(key, db=self._db)
            if blob is None:
                return None
            blob = bytes(blob)
            try:
                kind, token, sealer = self._key_of(blob)
                old = self._decode(key, blob, sealer)
            except KeyUnavailable:
                return None  # erased meanwhile: the next look drops it
            txn.delete(self._due_key_of(key, blob), db=self._due)
            new = replace(old, attempts=old.attempts + 1, next_attempt_at=next_attempt_at,
                          last_error=error[:64])
            if kind is None:  # an older mail stays under the legacy key until it leaves
                txn.put(key, sealer.seal(msgpack.packb(_fields(new)), key), db=self._db)
                txn.put(self._due_key(new), b"", db=self._due)
            else:
                self._put(txn, new, kind, token, sealer)
        return new

    def withdraw(self, mail_ids: Iterable[str]) -> list[str]:
        """Remove these mails if they are still waiting, unsent (no receipt: :meth:`outcome` reads
        ``unsent``), in one transaction: what they told was called off before they left. The account
        of each mail removed (``""`` for one whose key is gone); a mail already sent or dropped is not
        there and is skipped. The sender re-reads each mail right before sending it, so one removed
        here is not sent (one whose send is under way: see ``MailService.withdraw``)."""
        removed = []
        with self.env.begin(write=True) as txn:
            for mail_id in mail_ids:
                key = bytes.fromhex(mail_id)
                blob = txn.get(key, db=self._db)
                if blob is None:
                    continue
                blob = bytes(blob)
                mail = self._open(key, blob)
                self._shred_own(blob)
                txn.delete(self._due_key_of(key, blob), db=self._due)
                txn.delete(key, db=self._db)
                removed.append(mail.account_id if mail is not None else "")
        return removed

    def give_up(self, mail_id: str) -> None:
        """The server refused it for good (e.g. a 5xx for the recipient): drop it."""
        self._remove(mail_id)

    def pseudonym(self, account_id: str) -> str:
        """How logs name the account a mail is for (``psn_…``; ``""`` for none): a log line outlives
        the account, its id must not."""
        return token_text(self._account_keys.token(account_id)) if account_id else ""

    def forget_account(self, account_id: str) -> int:
        """Erasure: delete every mail queued for the account; how many. Its data key (destroyed by the
        erasure) is what makes the deleted copies unreadable; mail with a key of its own is not touched."""
        token = self._account_keys.token(account_id)
        removed = 0
        with self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=self._db)):
                key, blob = bytes(key), bytes(blob)
                if blob[0] == _FORMAT:
                    mine = blob[1:2] == ACCOUNT_KEY and blob[2:18] == token
                else:  # an older mail: open it to see whose it is
                    mine = self._open(key, blob, account_id=account_id) is not None
                if mine:
                    txn.delete(self._due_key_of(key, blob), db=self._due)
                    txn.delete(key, db=self._db)
                    removed += 1
        return removed

    def sweep(self, now: float) -> int:
        """Drop mail still unsent when the ``outbound_mail`` retention row runs out; how many. Keys of
        their own left without a mail are shredded too (:meth:`sweep_orphan_keys`)."""
        self.sweep_orphan_keys(now)
        cutoff_ns = int(cutoff("outbound_mail", now) * 1e9)
        removed = 0
        with self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=self._db)):
                if int.from_bytes(key[:8], "big") >= cutoff_ns:
                    break  # ids are in creation order
                key, blob = bytes(key), bytes(blob)
                self._shred_own(blob)
                txn.delete(self._due_key_of(key, blob), db=self._due)
                txn.delete(key, db=self._db)
                removed += 1
            self._sweep_receipts(txn, now)
        return removed

    def _sweep_receipts(self, txn: lmdb.Transaction, now: float) -> None:
        cutoff_ns = int((now - RECEIPT_SECONDS) * 1e9)
        cursor = txn.cursor(db=self._sent)
        while cursor.first() and int.from_bytes(cursor.key()[:8], "big") < cutoff_ns:
            cursor.delete()

    def sweep_orphan_keys(self, now: float, grace: float = ORPHAN_KEY_GRACE_SECONDS) -> int:
        """Shred every key of its own that no queued mail refers to and that is older than ``grace``
        (a key younger than that may belong to an enqueue under way); how many."""
        with self.env.begin() as txn:
            used = {bytes(blob[2:18]) for _key, blob in txn.cursor(db=self._db)
                    if blob[0] == _FORMAT and blob[1:2] == OWN_KEY}
        removed = 0
        for token, made_at in self._mail_keys.tokens():
            if token not in used and made_at < now - grace:
                self._mail_keys.shred_token(token)
                removed += 1
        if removed:
            log.warning("outbox: shredded %d mail key(s) no queued mail refers to (left by a crash)",
                        removed)
        return removed

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db)["entries"]

    # --- helpers -----------------------------------------------------------------------------------

    def _remove(self, mail_id: str, receipt: bytes | None = None) -> None:
        key = bytes.fromhex(mail_id)
        with self.env.begin(write=True) as txn:
            blob = txn.get(key, db=self._db)
            if blob is not None:
                if receipt is not None:
                    txn.put(key, receipt, db=self._sent)
                blob = bytes(blob)
                self._shred_own(blob)  # first: a crash after it leaves an entry that no longer opens
                txn.delete(self._due_key_of(key, blob), db=self._due)
                txn.delete(key, db=self._db)

    def _drop_unreadable(self, mail_id: str) -> None:
        key = bytes.fromhex(mail_id)
        with self.env.begin(write=True) as txn:
            blob = txn.get(key, db=self._db)
            if blob is None:
                return
            blob = bytes(blob)
            self._shred_own(blob)
            txn.delete(self._due_key_of(key, blob), db=self._due)
            txn.delete(key, db=self._db)
        self.erased += 1

    def _shred_own(self, blob: bytes) -> None:
        if blob[0] == _FORMAT and blob[1:2] == OWN_KEY:
            self._mail_keys.shred_token(blob[2:18])

    @staticmethod
    def _due_key(mail: OutboxMail) -> bytes:
        return _MS.pack(int(mail.next_attempt_at * 1000)) + bytes.fromhex(mail.mail_id)

    def _due_key_of(self, key: bytes, blob: bytes) -> bytes:
        """The index entry of a stored mail, read from its header (no key needed)."""
        if blob[0] == _FORMAT:
            return blob[18:26] + key
        return self._due_key(self._decode(key, blob, self._legacy_sealer()))

    def _key_of(self, blob: bytes) -> tuple[bytes | None, bytes, Sealer]:
        """(kind, token, sealer) of a stored mail; ``KeyUnavailable`` if its key is gone."""
        if blob[0] != _FORMAT:
            return None, b"", self._legacy_sealer()
        kind, token = blob[1:2], blob[2:18]
        keys = self._mail_keys if kind == OWN_KEY else self._account_keys
        return kind, token, keys.sealer_for_token(token, DATA)

    def _legacy_sealer(self) -> Sealer:
        if self._legacy is None:
            raise CorruptRecord("an outbox mail of the older format, and no legacy key to open it")
        return self._legacy

    def _open(self, key: bytes, blob: bytes, *, account_id: str | None = None) -> OutboxMail | None:
        """The mail, or None if its key is gone (or, with ``account_id``, it is someone else's)."""
        try:
            mail = self._decode(key, blob, self._key_of(blob)[2])
        except KeyUnavailable:
            return None
        return mail if account_id is None or mail.account_id == account_id else None

    def _put(self, txn: lmdb.Transaction, mail: OutboxMail, kind: bytes, token: bytes,
             sealer: Sealer) -> None:
        key = bytes.fromhex(mail.mail_id)
        due = self._due_key(mail)
        header = bytes([_FORMAT]) + kind + token + due[:8]
        txn.put(key, header + sealer.seal(msgpack.packb(_fields(mail)), key), db=self._db)
        txn.put(due, b"", db=self._due)

    @staticmethod
    def _decode(key: bytes, blob: bytes, sealer: Sealer) -> OutboxMail:
        sealed = blob[_HEADER:] if blob[0] == _FORMAT else blob
        try:
            return OutboxMail(mail_id=key.hex(), **msgpack.unpackb(sealer.open(sealed, key)))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"outbox mail {key.hex()} does not decode") from exc


def _fields(mail: OutboxMail) -> dict:
    fields = asdict(mail)
    del fields["mail_id"]
    return fields
