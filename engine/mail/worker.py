"""MailWorker: the one sender of queued mail, on a thread and asyncio loop of its own.

Why its own thread: mail must go out when the engine is embedded without the HTTP servers, and an SMTP
round trip must never stall the HTTP loop or an actor. The worker waits until mail is due (or it is woken by
:meth:`MailWorker.wake` after an enqueue), sends each due mail through the transport, deletes it from the
outbox once the server accepted it (or, with no mail server configured, once it was logged: recorded
``not_delivered``, never ``sent``), and otherwise reschedules it with exponential backoff and full jitter
(``uniform(0, min(cap, base * 2**attempts))``, at least one second), or drops it on a permanent refusal.
The outbox calls are short LMDB transactions made on this worker's own loop.

Erasure: each mail is read again (:meth:`storage.outbox.Outbox.get`) right before it is sent, under the
lock :attr:`MailWorker.sending`, which the erasure takes to remove the account's mail
(:meth:`engine.mail.service.MailService.forget_account`). So a mail of a batch read before an erasure is
not sent after it. The lock is never held across SMTP I/O: an erasure must not wait on an SMTP server
(up to ``timeout_seconds`` when it hangs). A send for the account already under way is cancelled instead
(:meth:`MailWorker.cancel_send_for`): its connection is dropped before the server accepted the mail (a
mail it had already accepted went out before the erasure), and the mail, gone from the outbox, is not
retried.

Withdrawal (a lawful order released before its notice left, ``engine.lawful_notice``): the same way, its
mails are removed under :attr:`MailWorker.sending` and a send of one of them under way is cancelled
(:meth:`MailWorker.cancel_send_of`, counted ``withdrawn``).

Rectification (policy 7.1): a mail for an account (``follow_account``) is addressed, right before each
attempt, to the account's address of record as it is then (``address_of``), so mail waiting for a retry
when the holder corrects their address — even across a restart — goes to the new address; there is no
second write to lose in a crash. A mail for an address (a confirmation link) is dropped unsent once the
account has another address (its link can confirm nothing any more). A send already under way when the
address changes is cancelled and tried again at once (:meth:`MailWorker.cancel_send_for` with
``retry``), so once a rectification returns nothing more goes to the old address.

Logs name the template, the account by its pseudonym (``account``: ``psn_…``, a log line outlives an
erasure) and the outcome; never an account id, an address, a subject or a text.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import replace

from engine.config import EmailSettings
from engine.mail.transport import PermanentFailure, Transport
from storage.outbox import Outbox, OutboxMail

log = logging.getLogger(__name__)

IDLE_WAKE_SECONDS = 5.0  # re-check the outbox at least this often (another process may have written)
BATCH = 50


class MailWorker:
    """Sends the outbox; ``start()`` once, ``stop()`` once."""

    def __init__(self, outbox: Outbox, transport: Transport, settings: EmailSettings, *,
                 clock: Callable[[], float] = time.time,
                 address_of: Callable[[str], str | None] | None = None) -> None:
        self.outbox = outbox
        self._address_of = address_of  # account id -> its address of record now (None: no account)
        self.transport = transport
        self.settings = settings
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="smsroute-mail", daemon=True)
        # not_delivered: only logged, no mail server configured (never counted as sent)
        self.counts = {"sent": 0, "not_delivered": 0, "retried": 0, "refused": 0, "erased": 0,
                       "superseded": 0, "withdrawn": 0}
        # held while a mail is re-read and its send registered (never across SMTP I/O), and by an erasure
        self.sending = threading.Lock()
        self._current: _Send | None = None  # the send under way (guarded by ``sending``)

    def start(self) -> MailWorker:
        self._thread.start()
        self._ready.wait(10)
        return self

    def is_alive(self) -> bool:
        """True while its thread runs: once an error ended it (outside a send, which is retried) no mail
        goes out any more, so the engine lists it among its long-lived parts (``Engine.parts_alive``)."""
        return self._thread.is_alive()

    def wake(self) -> None:
        """Something was queued: look at the outbox now (any thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the mail being sent (bounded by the SMTP timeout), then stop; the rest stays queued."""
        self._stopping = True
        self.wake()
        self._thread.join(timeout)

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        except BaseException:  # one line in the log; ``is_alive`` is False from now on (/readyz)
            log.exception("mail worker: its thread ended on an error; no mail is sent any more")
        finally:
            loop.close()

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        self._ready.set()
        while not self._stopping:
            self._wake.clear()
            try:
                for mail in self.outbox.due(self._clock(), BATCH):
                    if self._stopping:
                        return
                    await self._send(mail)
                next_at = self.outbox.next_due_at()
            except Exception:  # a store error must not kill the sender: log, wait, look again
                log.exception("mail worker: outbox unavailable")
                next_at = None
            delay = IDLE_WAKE_SECONDS if next_at is None else next_at - self._clock()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), min(delay, IDLE_WAKE_SECONDS))
                except TimeoutError:
                    pass

    def cancel_send_for(self, account_id: str, *, retry: bool = False) -> threading.Event | None:
        """Erasure, or with ``retry`` a rectification (the caller holds :attr:`sending`): cancel the send
        under way if it is the account's; the event is set once the worker has let go of it (None: there
        was none). With ``retry`` the mail stays queued and is tried again at once, newly addressed."""
        current = self._current
        if current is None or current.account_id != account_id or self._loop is None:
            return None
        current.erased = not retry
        current.readdressed = retry
        return self._cancel(current)

    def cancel_send_of(self, mail_ids: Collection[str]) -> threading.Event | None:
        """A withdrawal (the caller holds :attr:`sending` and removed the mails): cancel the send under
        way if it is one of ``mail_ids``; the event is set once the worker has let go of it (None: there
        was none). Its connection is dropped before the server accepted the mail; it is not retried."""
        current = self._current
        if current is None or current.mail_id not in mail_ids or self._loop is None:
            return None
        current.withdrawn = True
        return self._cancel(current)

    def _cancel(self, current: _Send) -> threading.Event | None:
        """Cancel ``current``'s send on the worker's loop (its flags say why); the event is set once the
        worker has let go of it; None if the loop has closed (nothing is being sent)."""
        try:
            self._loop.call_soon_threadsafe(current.task.cancel)
        except RuntimeError:
            return None
        return current.done

    async def _send(self, queued: OutboxMail) -> None:
        with self.sending:
            mail = self.outbox.get(queued.mail_id)  # None: sent, dropped or erased meanwhile
            if mail is not None:
                mail = self._addressed(mail)
            if mail is None:
                return
            current = self._current = _Send(mail.account_id, mail.mail_id,
                                            asyncio.ensure_future(self.transport.send(mail)))
        try:
            await self._attempt(mail, current)
        finally:
            with self.sending:
                self._current = None
            current.done.set()

    async def _attempt(self, mail: OutboxMail, current: _Send) -> None:
        where = {"template": mail.template, "account": self.outbox.pseudonym(mail.account_id),
                 "attempt": mail.attempts + 1}
        try:
            await current.task
        except asyncio.CancelledError:
            if current.readdressed:  # its address changed mid-send: again, to the new one
                self.outbox.retry(mail.mail_id, self._clock(), "Readdressed")
                log.info("mail send cancelled: address rectified", extra=where)
                return
            if current.withdrawn:  # called off before it left: it left the outbox unsent
                self.counts["withdrawn"] += 1
                log.info("mail send cancelled: withdrawn", extra=where)
                return
            if not current.erased:
                raise
            self.counts["erased"] += 1  # its account was erased: it left the outbox with it
            log.info("mail send cancelled: account erased", extra=where)
            return
        except PermanentFailure as exc:
            self.outbox.give_up(mail.mail_id)
            self.counts["refused"] += 1
            log.warning("mail refused for good", extra={**where, "reason": str(exc)})
            return
        except Exception as exc:  # connection, timeout, 4xx: try again later
            backoff = random.uniform(0, min(self.settings.retry_cap_seconds,
                                            self.settings.retry_base_seconds * 2 ** mail.attempts))
            self.outbox.retry(mail.mail_id, self._clock() + max(1.0, backoff), type(exc).__name__)
            self.counts["retried"] += 1
            log.info("mail send failed; will retry", extra={**where, "error": type(exc).__name__})
            return
        if getattr(self.transport, "delivers", True):
            self.outbox.sent(mail.mail_id, self._clock())
            self.counts["sent"] += 1
            log.info("mail sent", extra=where)
        else:  # no [email] host: this one line is all that happens to the mail, and it is not "sent"
            self.outbox.logged(mail.mail_id, self._clock())
            self.counts["not_delivered"] += 1
            log.info("mail not sent (no [email] host configured)", extra=where)

    def _addressed(self, mail: OutboxMail) -> OutboxMail | None:
        """The mail addressed as it must be sent now; None (and dropped) if it must not be sent."""
        if self._address_of is None or not mail.account_id:
            return mail
        current = self._address_of(mail.account_id)
        if mail.follow_account:
            if current is not None:
                return mail if current == mail.to else replace(mail, to=current)
        elif current is None or current.lower() == mail.to.lower():
            return mail  # None: its account is being created (an erased one's mail does not open)
        self.outbox.give_up(mail.mail_id)  # its account is gone, or it was for an address it no
        self.counts["superseded"] += 1     # longer has
        log.info("mail dropped unsent: its address is no longer the account's",
                 extra={"template": mail.template, "account": self.outbox.pseudonym(mail.account_id)})
        return None


class _Send:
    """The send under way: whose mail, which, its task, whether an erasure or a withdrawal cancelled
    it, and when it ended."""

    __slots__ = ("account_id", "done", "erased", "mail_id", "readdressed", "task", "withdrawn")

    def __init__(self, account_id: str, mail_id: str, task: asyncio.Future) -> None:
        self.account_id = account_id
        self.mail_id = mail_id
        self.task = task
        self.erased = False
        self.readdressed = False
        self.withdrawn = False
        self.done = threading.Event()
