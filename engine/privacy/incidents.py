"""IncidentDesk: security incidents (policy 9) — the record, the 72-hour clock, the notices.

The privacy role opens an incident (what happened, when it was detected, which accounts or all); the desk
keeps the supervisory authority's deadline (detection + 72 h, GDPR Art. 33) visible on the control port and
in metrics (``incidents.authority_deadline_close``: incidents not yet notified with less than 24 h left or
overdue — alert on it), records when the authority was notified, and sends every affected account holder
the incident notice by e-mail (and records when, and what became of each holder's mail:
``customers_notified`` counts only holders whose mail the server accepted, see ``storage.incidents``).
The summary goes into those mails, so it is checked like every mail text: no phone number, no secret.

The notice is sent once per holder: :meth:`IncidentDesk.notify_customers` called again (a client that
timed out and retries, an operator who clicks twice) mails only affected holders who have no notice yet
— before, each call mailed every holder again, so a retry sent duplicate breach notices. Holders whose
mail failed (``not_delivered``: no mail server then; ``unsent``: refused, expired) get it again only when
asked (``resend_failed``), e.g. once a mail server is configured. The affected holders are the listed
accounts that still exist, or for an all-accounts incident those not closed that existed when it was
opened (:func:`affected`: an account created later was not exposed). An incident notified by an older
version (which did not record whom it mailed) is not mailed again.

What became of the mails is learnt from the outbox's receipts whenever an incident is shown (the steps'
answers, ``GET /v1/incidents``), when the privacy stats are read, and at each retention sweep (so it is
learnt well within the receipts' 400 days even if nobody looks); a store too full to write it is shown
all the same and written later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.errors import InputError, StorageError
from engine.mail.delivery import delivery
from engine.mail.notices import Notices
from engine.mail.templates import check_safe
from storage.accounts import CLOSED, AccountStore
from storage.incidents import ALL_ACCOUNTS, NOTICE_LAYOUT, Incident, IncidentStore, settled
from storage.outbox import NOT_DELIVERED, UNSENT

log = logging.getLogger(__name__)

MAX_SUMMARY = 4000
CLOCK_SKEW_SECONDS = 300.0
FAILED = (NOT_DELIVERED, UNSENT)  # a holder's notice that reached nobody: sent again on resend_failed


def affected(incident: Incident, account_id: str, created_at: float) -> bool:
    """Whether the incident affected the account: it names it, or it is for every account and the
    account existed when it was opened (an account created later was not exposed)."""
    if incident.accounts == [ALL_ACCOUNTS]:
        return created_at <= incident.opened_at
    return account_id in incident.accounts


def incident_for_holder(incident: Incident) -> dict:
    """What an affected account holder is shown of an incident (access, policy 7.1): what happened and
    which data (the summary, the same text as the incident notice), when, and where it stands. Not the
    other accounts it affected (ids or pseudonyms), who opened it, or the authority's reference."""
    return {"id": incident.id, "summary": incident.summary, "detected_at": incident.detected_at,
            "opened_at": incident.opened_at, "all_accounts": incident.accounts == [ALL_ACCOUNTS],
            "status": "closed" if incident.closed_at else "open", "closed_at": incident.closed_at,
            "authority_notified_at": incident.authority_notified_at,
            "customers_notified_at": incident.customers_notified_at}


class IncidentDesk:
    def __init__(self, store: IncidentStore, notices: Notices, accounts: AccountStore,
                 audit: Callable[..., None], *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._notices = notices
        self._accounts = accounts
        self._audit = audit
        self._clock = clock
        self._notifying = threading.Lock()  # two calls at once must not both mail the same holder

    def open(self, summary: str, detected_at: float, accounts: list[str] | str, *,
             actor: str) -> Incident:
        """``accounts``: a list of account ids, or ``"all"``."""
        if not isinstance(summary, str) or not summary.strip() or len(summary) > MAX_SUMMARY:
            raise InputError(f"an incident states what happened (1-{MAX_SUMMARY} characters)")
        check_safe(summary)
        if isinstance(detected_at, bool) or not isinstance(detected_at, int | float) or \
                detected_at > self._clock() + CLOCK_SKEW_SECONDS or detected_at <= 0:
            raise InputError("detected_at is the unix time of detection, not in the future")
        if accounts == "all":
            scope = [ALL_ACCOUNTS]
        elif isinstance(accounts, list) and accounts and all(isinstance(a, str) for a in accounts):
            for account_id in accounts:
                self._accounts.get(account_id)  # UnknownAccount for a wrong id
            scope = sorted(set(accounts))
        else:
            raise InputError('accounts is a non-empty list of account ids, or "all"')
        incident = self.store.open(summary, float(detected_at), scope, actor)
        self._audit(actor, "incident_open", incident.id)
        return incident

    def authority_notified(self, incident_id: str, *, at: float | None, reference: str,
                           actor: str) -> Incident:
        at = self._clock() if at is None else float(at)
        incident = self.store.authority_notified(incident_id, at, reference[:200])
        self._audit(actor, "incident_authority_notified", incident_id)
        return self._settled(incident)

    def notify_customers(self, incident_id: str, *, actor: str,
                         resend_failed: bool = False) -> dict[str, Any]:
        """Mail the notice to every affected holder who has none yet (with ``resend_failed``, also to
        those whose notice failed: not delivered or unsent). The incident as shown
        (:meth:`Incident.public`) with ``notices_queued`` (holders mailed by this call),
        ``already_notified`` (affected holders not mailed again: their notice was queued before,
        whatever became of it — the counts say) and ``mail`` (``engine.mail.delivery`` for the mails
        this call queued; None when it queued none)."""
        with self._notifying:
            incident = self._settled_holders(incident_id)
            holders = {self.store.customer_key(a): a for a in self._affected_holders(incident)}
            if incident.notified_by_older_version:
                due: list[str] = []
            else:
                due = [c for c in holders
                       if incident.notice_of(c) is None
                       or (resend_failed and incident.notice_of(c) in FAILED)]
            if due or not incident.customers_notified_at:
                self._queue_notices(incident, {c: holders[c] for c in due})
            self._audit(actor, "incident_customers_notified", incident_id)
            shown = self._settled(self.store.get(incident_id))
        return {**shown.public(), "notices_queued": len(due),
                "already_notified": len(holders) - len(due),
                "mail": delivery(self._notices.delivers) if due else None}

    def _queue_notices(self, incident: Incident, due: dict[str, str]) -> None:
        """One notice mail to each of ``due`` (customer key -> account id), all queued or none; each
        recorded as that holder's waiting mail before it is queued (the worker may send it at once),
        the record undone if the outbox refuses the mailing. None due: only when it was asked."""
        if not due:
            self.store.notices_queued(incident.id, {})
            return
        params = {"incident_id": incident.id, "summary": incident.summary,
                  "detected_at": incident.detected_at}
        customers = list(due)
        recorded = []

        def record(mail_ids: list[str]) -> None:
            self.store.notices_queued(incident.id, dict(zip(customers, mail_ids, strict=True)))
            recorded.append(True)

        try:
            self._notices.to_each_account("incident_notice", {due[c]: params for c in customers},
                                          record=record)
        except BaseException:
            if recorded:
                try:
                    self.store.notices_not_queued(incident.id, incident, customers)
                except StorageError as exc:  # shown as unsent (never queued): resend_failed mails it
                    log.error("incident notice record not undone", extra={"error": exc.code})
            raise

    def _affected_holders(self, incident: Incident) -> list[str]:
        """The accounts whose holders the notice is for: the listed ones that still exist; for an
        all-accounts incident every account not closed that existed when it was opened."""
        if incident.accounts == [ALL_ACCOUNTS]:
            return [a.id for a in self._accounts.all()
                    if a.state != CLOSED and affected(incident, a.id, a.created_at)]
        return [a for a in incident.accounts if self._exists(a)]

    def close(self, incident_id: str, *, actor: str) -> Incident:
        incident = self.store.close(incident_id)
        self._audit(actor, "incident_close", incident_id)
        return self._settled(incident)

    def list(self, *, open_only: bool = False) -> list[dict]:
        now = self._clock()
        return [self._settled(i).view(now)
                for i in sorted(self.store.all(), key=lambda i: i.authority_deadline)
                if not open_only or not i.closed_at]

    def stats(self) -> dict[str, float]:
        now = self._clock()
        incidents = [self._settled(i) for i in self.store.all()]
        pending = [i for i in incidents if not i.authority_notified_at]
        return {"open": sum(not i.closed_at for i in incidents),
                "authority_deadline_close": sum(i.authority_deadline_close(now) for i in pending),
                "authority_overdue": sum(i.authority_overdue(now) for i in pending)}

    def sweep(self, now: float) -> int:
        """The retention sweep (``incidents``): what became of waiting notice mails is written first
        (their receipts are kept 400 days, an incident 5 years after closure), then the incidents past
        retention are deleted; how many."""
        for incident in self.store.all():
            self._settled(incident)
        return self.store.sweep(now)

    def _settled(self, incident: Incident) -> Incident:
        """The incident with what became of its waiting notice mails (``IncidentStore.settle_notices``:
        the waiting rows visited, nothing when none waits), written; shown unwritten if the store
        cannot take it now (a later look writes it). A record of an older layout is brought to this
        one at its first look (so that later looks read its counts only)."""
        if not incident.waits_for_mail and incident.notice_layout == NOTICE_LAYOUT:
            return incident
        outcome = self._notices.outbox.outcome
        try:
            return self.store.settle_notices(incident, outcome)
        except StorageError as exc:
            log.warning("incident notice outcomes not written", extra={"error": exc.code})
            return self.store.settled_unwritten(incident, outcome)

    def _settled_holders(self, incident_id: str) -> Incident:
        """:meth:`_settled`, then each holder's notice state read (every row: to know whom to mail)."""
        incident = self.store.get(incident_id, holders=True)
        if not incident.waits_for_mail and incident.notice_layout == NOTICE_LAYOUT:
            return incident
        outcome = self._notices.outbox.outcome
        try:
            self.store.settle_notices(incident, outcome)
        except StorageError as exc:
            log.warning("incident notice outcomes not written", extra={"error": exc.code})
            return settled(incident, outcome)
        return self.store.get(incident_id, holders=True)

    def _exists(self, account_id: str) -> bool:
        try:
            self._accounts.get(account_id)
            return True
        except KeyError:
            return False
