"""The mail outbox: customer e-mail waiting to be sent, sealed at rest, bounded, swept once sent.

Why it exists: a confirmation link or a security alert must not be lost because the SMTP server was down
or the engine was killed between deciding to send and sending. Mail is written here first (one durable
transaction), and :class:`engine.mail.worker.MailWorker` sends what is due, deletes each mail once the
SMTP server has accepted it, and reschedules a failed one with exponential backoff.

Layout (in the LMDB environment it is given, ``<data_dir>/mail``): ``outbox`` maps a mail id (16 bytes:
creation time in ns + 8 random bytes) to the sealed msgpack of the :class:`OutboxMail`; ``outbox_due`` is
the index ``next attempt (ms, 8 bytes) | mail id`` -> empty, so finding due mail never decrypts the rest.
The address, subject and text are sealed (AES-256-GCM, the ``outbox`` store key, the mail id as AAD);
only times and ids are readable in the file.

Durability contract:

* *Durable:* :meth:`Outbox.enqueue` returns only after the transaction holding every mail of the call is
  fsynced (the environment syncs on commit): an enqueued mail survives ``kill -9`` and is sent after the
  restart. A mail deleted by :meth:`sent` may have reached the server once more if the process died
  between the server's answer and the delete (at-least-once; never lost).
* *Bounded:* at most ``max_mails`` wait at once; an enqueue that does not fit is refused whole with
  :class:`~engine.errors.StoreFull` (nothing half-queued).
* *Swept:* a sent mail is deleted at once; one still unsent when the retention row ``outbound_mail``
  (``storage.retention``: 3 days) runs out is dropped by :meth:`sweep` (counted by the sweeper).
* *Writers:* any thread (LMDB serialises write transactions). *Readers:* any thread.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import lmdb
import msgpack

from engine.errors import CorruptRecord, StorageError, StoreFull
from storage.crypto import Sealer
from storage.retention import cutoff

__all__ = ["NewMail", "Outbox", "OutboxMail"]

_MS = struct.Struct(">Q")


@dataclass(frozen=True)
class NewMail:
    """A mail to queue: who it is for (account id, for logs), where it goes, what it says."""

    template: str
    account_id: str
    to: str
    subject: str
    text: str


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


class Outbox:
    """Sealed, bounded, durable queue of outgoing mail.

    *Durable:* ``enqueue`` returns after the fsynced commit; a mail survives ``kill -9`` until sent
    (at-least-once). *Bounded:* ``max_mails``. *Writers/readers:* any thread. See the module docstring.
    """

    def __init__(self, env: lmdb.Environment, sealer: Sealer, *, max_mails: int = 10000) -> None:
        self.env = env
        self._sealer = sealer
        self._db = env.open_db(b"outbox")
        self._due = env.open_db(b"outbox_due")
        self.max_mails = max_mails

    def enqueue(self, mails: Iterable[NewMail], now: float | None = None) -> list[str]:
        """Queue mails in one durable transaction; their ids. ``StoreFull`` if they do not all fit."""
        now = time.time() if now is None else now
        mails = list(mails)
        ids = []
        try:
            with self.env.begin(write=True) as txn:
                waiting = txn.stat(self._db)["entries"]
                if waiting + len(mails) > self.max_mails:
                    raise StoreFull(f"the mail outbox holds {waiting} of {self.max_mails} mails; "
                                    f"{len(mails)} more do not fit")
                for mail in mails:
                    key = int(now * 1e9).to_bytes(8, "big") + os.urandom(8)
                    self._put(txn, OutboxMail(key.hex(), mail.template, mail.account_id, mail.to,
                                              mail.subject, mail.text, now, 0, now))
                    ids.append(key.hex())
        except lmdb.MapFullError as exc:
            raise StoreFull("the mail store is full") from exc
        except lmdb.Error as exc:
            raise StorageError(f"the mail outbox write failed: {type(exc).__name__}") from exc
        return ids

    def due(self, now: float, limit: int = 50) -> list[OutboxMail]:
        """Mails whose next attempt is at or before ``now``, earliest first."""
        bound = _MS.pack(int(now * 1000))
        out = []
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._due)
            for key, _ in cursor:
                if key[:8] > bound or len(out) >= limit:
                    break
                blob = txn.get(key[8:], db=self._db)
                if blob is not None:
                    out.append(self._decode(bytes(key[8:]), blob))
        return out

    def next_due_at(self) -> float | None:
        """When the earliest waiting mail is due (None when the outbox is empty)."""
        with self.env.begin() as txn:
            cursor = txn.cursor(db=self._due)
            return _MS.unpack(cursor.key()[:8])[0] / 1000 if cursor.first() else None

    def sent(self, mail_id: str) -> None:
        """The server accepted it: delete it (swept once sent)."""
        self._remove(mail_id)

    def retry(self, mail_id: str, next_attempt_at: float, error: str) -> OutboxMail | None:
        """Count a failed attempt and move the mail's next attempt to ``next_attempt_at``."""
        key = bytes.fromhex(mail_id)
        with self.env.begin(write=True) as txn:
            blob = txn.get(key, db=self._db)
            if blob is None:
                return None
            old = self._decode(key, blob)
            txn.delete(self._due_key(old), db=self._due)
            new = replace(old, attempts=old.attempts + 1, next_attempt_at=next_attempt_at,
                          last_error=error[:64])
            self._put(txn, new)
        return new

    def give_up(self, mail_id: str) -> None:
        """The server refused it for good (e.g. a 5xx for the recipient): drop it."""
        self._remove(mail_id)

    def sweep(self, now: float) -> int:
        """Drop mail still unsent when the ``outbound_mail`` retention row runs out; how many."""
        cutoff_ns = int(cutoff("outbound_mail", now) * 1e9)
        removed = 0
        with self.env.begin(write=True) as txn:
            for key, blob in list(txn.cursor(db=self._db)):
                if int.from_bytes(key[:8], "big") >= cutoff_ns:
                    break  # ids are in creation order
                mail = self._decode(bytes(key), blob)
                txn.delete(self._due_key(mail), db=self._due)
                txn.delete(key, db=self._db)
                removed += 1
        return removed

    def __len__(self) -> int:
        with self.env.begin() as txn:
            return txn.stat(self._db)["entries"]

    def _remove(self, mail_id: str) -> None:
        key = bytes.fromhex(mail_id)
        with self.env.begin(write=True) as txn:
            blob = txn.get(key, db=self._db)
            if blob is not None:
                txn.delete(self._due_key(self._decode(key, blob)), db=self._due)
                txn.delete(key, db=self._db)

    @staticmethod
    def _due_key(mail: OutboxMail) -> bytes:
        return _MS.pack(int(mail.next_attempt_at * 1000)) + bytes.fromhex(mail.mail_id)

    def _put(self, txn: lmdb.Transaction, mail: OutboxMail) -> None:
        key = bytes.fromhex(mail.mail_id)
        fields = asdict(mail)
        del fields["mail_id"]
        txn.put(key, self._sealer.seal(msgpack.packb(fields), key), db=self._db)
        txn.put(self._due_key(mail), b"", db=self._due)

    def _decode(self, key: bytes, blob: bytes) -> OutboxMail:
        try:
            return OutboxMail(mail_id=key.hex(), **msgpack.unpackb(self._sealer.open(blob, key)))
        except CorruptRecord:
            raise
        except Exception as exc:
            raise CorruptRecord(f"outbox mail {key.hex()} does not decode") from exc
