"""Notices: the e-mails the engine sends to account holders, queued durably in the outbox.

Every method renders a template (``engine.mail.templates``: checked to carry no body, number or secret),
writes the mail to the outbox (one durable transaction for a whole mailing) and wakes the worker. Mail goes
to the account's address of record *when it is sent* (``NewMail.follow_account``: a rectification reaches
mail already waiting for a retry), sealed under the account's data key (so the
account's erasure reaches it; queuing for an account whose key is gone raises ``KeyUnavailable``). The
outbox is bounded: a mailing that does not fit is refused whole with ``StoreFull`` before anything else is
changed by the caller. :meth:`Notices.erasure_confirmation` is the one mail queued after its account is
erased.

Hooks other parts of the engine call: :meth:`Notices.security_alert` (``kind`` one of
``templates.ALERT_KINDS``) and :meth:`Notices.failed_authentication` (counts failures per account and
alerts once when ``FAILED_AUTH_THRESHOLD`` are seen within ``FAILED_AUTH_WINDOW_SECONDS``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from engine.errors import StorageError, UnknownAccount
from engine.mail.templates import render
from storage.accounts import CLOSED, AccountStore
from storage.outbox import NewMail, Outbox

log = logging.getLogger(__name__)

FAILED_AUTH_THRESHOLD = 20
FAILED_AUTH_WINDOW_SECONDS = 900.0
FAILED_AUTH_QUIET_SECONDS = 3600.0  # at most one such alert per account per hour


class Notices:
    def __init__(self, outbox: Outbox, wake: Callable[[], None], accounts: AccountStore, *,
                 clock: Callable[[], float] = time.time,
                 withdraw: Callable[[list[str]], list[str]] | None = None,
                 delivers: bool = True) -> None:
        """``withdraw``: how queued mail is called off (``MailService.withdraw``, which also cancels a
        send under way); default: removed from the outbox only. ``delivers``: False when no mail
        server is configured (``MailService.delivers``): what is queued is only logged."""
        self.outbox = outbox
        self.delivers = delivers
        self._wake = wake
        self._withdraw = withdraw or outbox.withdraw
        self._accounts = accounts
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._last_failure_alert: dict[str, float] = {}

    def send(self, template: str, account_id: str, to: str, **params: Any) -> str:
        """Queue one mail to ``to`` (the caller knows the address: a confirmation link for it); its
        outbox id. It is sent only while ``to`` is still the account's address."""
        subject, text = render(template, account_id=account_id, **params)
        mail_id = self.outbox.enqueue([NewMail(template, account_id, to, subject, text)])[0]
        self._wake()
        return mail_id

    def erasure_confirmation(self, to: str, request_id: str) -> str:
        """Tell the holder of an erased account that the erasure was carried out; its outbox id.

        The one mail queued after its account is gone, so it carries only what it must: the address
        (to send it), the request id the holder was given, and the fact. No account id — not in the
        text, not in the queued mail, not in the worker's logs — and it is sealed under a key of its own
        that is destroyed when it leaves the outbox (``storage.outbox``)."""
        subject, text = render("erasure_completed", request_id=request_id)
        mail_id = self.outbox.enqueue([NewMail("erasure_completed", "", to, subject, text,
                                               own_key=True)])[0]
        self._wake()
        return mail_id

    def to_account(self, template: str, account_id: str, **params: Any) -> str:
        """Queue one mail to the account's address of record (as it is when the mail is sent)."""
        to = self._accounts.get(account_id).email  # UnknownAccount: nobody to tell
        subject, text = render(template, account_id=account_id, **params)
        mail_id = self.outbox.enqueue([NewMail(template, account_id, to, subject, text,
                                               follow_account=True)])[0]
        self._wake()
        return mail_id

    def to_each_account(self, template: str, params: dict[str, dict[str, Any]], *,
                        record: Callable[[list[str]], None] | None = None) -> list[str]:
        """One mail to each account in ``params`` (account id -> its template parameters), all queued
        in one transaction or none (``UnknownAccount``, ``StoreFull``, ``KeyUnavailable``); their
        outbox ids, in that order. For a mailing whose parts must stand or fall together (a lawful
        order's notices: no holder is told of an order withdrawn because another's notice failed).

        ``record`` is called with the ids once every mail is rendered and before any is queued (the
        worker may send a queued mail at once): a caller that keeps the ids elsewhere writes them
        there, and if it raises nothing is queued. The caller undoes its record if the queuing then
        fails (the error is raised)."""
        mails = []
        for account_id, own in params.items():
            to = self._accounts.get(account_id).email  # UnknownAccount: nobody to tell
            subject, text = render(template, account_id=account_id, **own)
            mails.append(NewMail(template, account_id, to, subject, text, follow_account=True))
        ids = self.outbox.new_ids(len(mails))
        if record is not None:
            record(ids)
        self.outbox.enqueue(mails, ids=ids)
        self._wake()
        return ids

    def withdraw(self, mail_ids: list[str]) -> list[str]:
        """Call off queued mails before they leave (removed unsent; a send under way cancelled); the
        account of each one removed (those already sent or dropped are skipped)."""
        return self._withdraw(mail_ids)

    def to_accounts(self, template: str, account_ids: Iterable[str] | None,
                    **params: Any) -> int:
        """One mail to each listed account (``None``: every account not closed), all queued in one
        transaction; how many."""
        return len(self.mailing(template, account_ids, **params))

    def mailing(self, template: str, account_ids: Iterable[str] | None,
                **params: Any) -> list[str]:
        """:meth:`to_accounts`, answering the mails' outbox ids (whose ``Outbox.outcome`` says later
        what became of each)."""
        if account_ids is None:
            records = [a for a in self._accounts.all() if a.state != CLOSED]
        else:
            records = [self._accounts.get(a) for a in dict.fromkeys(account_ids)]
        mails = []
        for rec in records:
            subject, text = render(template, account_id=rec.id, **params)
            mails.append(NewMail(template, rec.id, rec.email, subject, text, follow_account=True))
        ids = self.outbox.enqueue(mails)
        self._wake()
        return ids

    # --- security alerts ---------------------------------------------------------------------------

    def security_alert(self, account_id: str, kind: str, **facts: Any) -> str | None:
        """Tell the holder about a security-relevant change (see ``templates.ALERT_KINDS``).

        An account that no longer exists gets nothing (None). The change it reports has already
        happened, so a full outbox does not undo it: the alert is logged as lost (None)."""
        try:
            return self.to_account("security_alert", account_id, kind=kind, at=self._clock(),
                                   **facts)
        except UnknownAccount:
            return None
        except StorageError as exc:
            log.error("security alert not queued", extra={
                "account": self.outbox.pseudonym(account_id), "kind": kind, "error": exc.code})
            return None

    def failed_authentication(self, account_id: str) -> str | None:
        """Count one failed authentication attributed to the account; alert when there are many."""
        now = self._clock()
        with self._lock:
            seen = self._failures.setdefault(account_id, deque())
            seen.append(now)
            while seen and seen[0] < now - FAILED_AUTH_WINDOW_SECONDS:
                seen.popleft()
            quiet = now - self._last_failure_alert.get(account_id, -1e18) < FAILED_AUTH_QUIET_SECONDS
            if len(seen) < FAILED_AUTH_THRESHOLD or quiet:
                return None
            self._last_failure_alert[account_id] = now
            count = len(seen)
            if len(self._failures) > 100_000:  # bounded: forget the quiet ones
                self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > now - 60}
        return self.security_alert(account_id, "failed_authentications", count=count,
                                   window=f"{int(FAILED_AUTH_WINDOW_SECONDS // 60)} minutes")
