"""Notice to the account holder before a lawful order's disclosure (privacy policy 5).

Why it exists: "where legally permitted we notify the affected account holder before disclosure". So
registering a lawful order does one of two things, never neither:

* **notice** (the default): one ``lawful_order_notice`` mail to each affected account holder — the account
  the order names, and the accounts of the messages it names — all queued in one outbox transaction (if
  one cannot be, none is, and ``engine.holds`` releases the order: no holder hears of an order that does
  not stand). The notice records and the outbox are two LMDB environments (``<data_dir>/privacy``,
  ``<data_dir>/mail``), so no one transaction holds both: the records (naming the mails' ids, taken
  first) are written before the mails are queued, and put back as they were if the queuing fails. So
  no mail is ever queued - where the worker may send it at once - for a notice whose record could not
  be written; a crash between the two leaves records whose mails never were, which read ``unsent``
  (disclosure refused, the notice given again). Each mail states the authority type (subpoena, court
  order, regulator directive), the order's reference, what it covers (in counts) and until when. Never
  the body, number or the order's reason (``engine.mail.templates``).
* **not permitted**: the operator records that notice is not legally permitted, with a reason and a
  reference (both required; e.g. the non-disclosure order). No mail.

When no holder is left to tell (each account the order covers was erased or is gone; a stuck notice
given again, below), that is recorded instead: state ``no_holders``, no mail, audited
``lawful_order_notice_no_holders`` — never ``sent``, which would claim a holder was told. A notice with
no mail never reads ``sent``.

Either is kept per hold (``storage.order_notices``) and written to the core audit log
(``lawful_order_notice_queued`` / ``lawful_order_notice_not_permitted``; the waiver's reason and reference
sealed in the record, shown on ``GET /v1/holds``).

Disclosure (:meth:`OrderNoticeDesk.require_notice`) under a lawful order is **refused, not delayed**,
until every notice mail was accepted by the SMTP server (the outbox's receipt): ``NoticePending`` (409
``notice_pending``) while one is queued, ``HolderNotNotified`` (409 ``holder_not_notified``) when one
left the outbox unsent (refused, expired, account erased), was only logged because no mail server is
configured (state ``not_delivered``: a notice nobody received is no notice; the message says what the
operator can do), or the order has no notice on record (placed by an older version). Under ``no_holders`` disclosure is allowed: policy 5 is notice to the affected account
holder, and none exists any more; the ground is on record (state, audit), not a pretended notice. Refusing keeps the disclosure request short and its audit trail honest (a refused
read is audit-logged; the operator retries once ``GET /v1/holds`` says ``sent``).

Such a stuck order is fixed in place, not registered again (``POST /v1/holds/{id}/notice``,
``engine.holds.HoldManager.give_notice_again``): its notice is given again, or its waiver recorded, for
every hold of the order at once (:meth:`OrderNoticeDesk.order_of`: the holds with its ``order_id``), to
the holders its holds kept when it was placed (``storage.holds.Hold.holders``: no message record
needed), audited like the first (with ``again``); refused while a notice is queued or was sent, or
after a waiver or ``no_holders`` (:meth:`require_stuck`). A notice given again without a mail server is
refused (``MailNotConfigured``, 409 ``mail_not_configured``: it would only be logged again); a waiver is
recorded all the same.

An order released before its notice left is not told to its holders: when its last active hold is
released, the mails still queued are withdrawn (:meth:`OrderNoticeDesk.withdraw`: removed unsent, a send
under way cancelled; audited ``lawful_order_notice_withdrawn``). An order that expires is not withdrawn:
it stood, and a notice still queued then is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from engine.errors import (
    HolderNotNotified,
    InputError,
    InvalidTransition,
    MailNotConfigured,
    NoticePending,
)
from engine.mail.notices import Notices
from engine.mail.templates import AUTHORITY_KINDS, check_reference
from storage.order_notices import OrderNotice, OrderNotices
from storage.outbox import NOT_DELIVERED, QUEUED, SENT

__all__ = ["NO_HOLDERS", "PLACEMENT_INCOMPLETE", "OrderNoticeDesk", "check_order_fields",
           "incomplete_help"]

NO_HOLDERS = "no_holders"  # a notice with no mail: no account holder left to tell
#: given again after these (the mails left the outbox without reaching the holder)
STUCK = ("unsent", NOT_DELIVERED)
NOT_CONFIGURED_HELP = ("no mail server is configured ([email] host), so the notice was only logged and no "
                       "account holder was told. Configure [email], restart, and give the notice again "
                       "with POST /v1/holds/{id}/notice; or, only if notice is legally not permitted, "
                       "record that there (notice_not_permitted)")

#: the notice state of a lawful order's hold with an order id and no notice record: its placement did
#: not complete (in a cluster, it reached only some workers; or the engine stopped before the notice)
PLACEMENT_INCOMPLETE = "placement_incomplete"

log = logging.getLogger(__name__)


def incomplete_help(order_id: str, with_key: bool) -> str:
    """What to do about lawful order ``order_id`` whose placement did not complete (no notice given)."""
    said = (f"lawful order {order_id}: no account holder was told yet and its disclosure is refused "
            f"(its holds read notice state {PLACEMENT_INCOMPLETE} on GET /v1/holds); ")
    if with_key:
        return said + ("place it again with the same Idempotency-Key: that completes the placement "
                       "and gives the notice once")
    return said + ("it was placed without an Idempotency-Key: release its holds (GET /v1/holds, "
                   "order_id) and place it again with one")


def check_order_fields(authority: str | None, not_permitted: dict | None, reference: str) -> None:
    """``InputError`` unless the authority type is known, the reference may be shown in the holder's
    notice when one is mailed (``templates.check_reference``: checked before anything is placed) and a
    waiver gives a reason and a reference."""
    if authority not in AUTHORITY_KINDS:
        raise InputError(f"a lawful order states its authority: one of {', '.join(AUTHORITY_KINDS)}")
    if not_permitted is None:
        check_reference(reference)
    if not_permitted is not None:
        if not (str(not_permitted.get("reason") or "").strip()
                and str(not_permitted.get("reference") or "").strip()):
            raise InputError("notice_not_permitted needs a reason and a reference (the legal basis)")


class OrderNoticeDesk:
    """Gives (or records the waiver of) a lawful order's notice, and gates its disclosure on it."""

    def __init__(self, store: OrderNotices, notices: Notices, audit: Any, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._notices = notices
        self._audit = audit  # the core audit log (storage.audit.AuditLog)
        self._clock = clock
        # a notice given (again): checked, recorded and queued as one step
        self.lock = threading.RLock()

    def order_of(self, hold: dict, orders: list[dict]) -> list[dict]:
        """The holds of the lawful order ``hold`` belongs to, among the active ``orders`` (an order
        over several POP shards is several holds sharing one notice): those with its ``order_id``.
        A hold written before order ids existed has none; for it, those without one either and with
        its notice's mails, or, for an order without a notice on record, those placed by the same
        request as far as the fields tell (same actor, reason, reference, end and account; two such
        orders placed alike cannot be told apart)."""
        if hold.get("order_id"):
            return [h for h in orders if h.get("order_id") == hold["order_id"]]
        older = [h for h in orders if not h.get("order_id")]
        notice = self.store.get(hold["hold_id"])
        if notice is not None:
            return [h for h in older if (n := self.store.get(h["hold_id"])) is not None
                    and n.mail_ids == notice.mail_ids]
        same = ("actor", "reason", "reference", "until", "account_id")
        return [h for h in older if self.store.get(h["hold_id"]) is None
                and all(h[k] == hold[k] for k in same)]

    def require_stuck(self, hold_id: str) -> None:
        """``InvalidTransition`` unless the order's notice can be given again: it has none on record
        (placed before notices existed) or its mails left the outbox unsent. Never a second notice
        beside one queued or sent, nor one after a waiver."""
        state = self.state(hold_id)
        if state is not None and state["state"] not in STUCK:
            raise InvalidTransition(f"the notice of lawful order {hold_id} is {state['state']}; "
                                    "only a notice that was never given, left the outbox unsent or "
                                    "was not delivered is given again")

    def require_mail_server(self) -> None:
        """``MailNotConfigured`` unless mail reaches account holders: a notice given again without a
        mail server would only be logged, and read ``not_delivered`` once more."""
        if not self._notices.delivers:
            raise MailNotConfigured("no mail server is configured ([email] host): a notice given now "
                                    "would only be logged, not delivered. Configure [email] and "
                                    "restart, then give the notice again; or, only if notice is "
                                    "legally not permitted, record that (notice_not_permitted)")

    def give(self, hold_ids: list[str], covered: dict[str, int], *, whole_account: str | None,
             actor: str, authority: str, reference: str, until: float,
             not_permitted: dict | None, again: bool = False) -> dict:
        """Queue the notices of an order just placed (``covered``: account -> messages it names), or
        record that notice is not permitted; what was done. ``again``: for an order placed earlier
        whose notice is stuck (``require_stuck``): said so in the audit entries. With no account left
        to tell (``covered`` empty) that is what is recorded: ``no_holders``, no mail."""
        with self.lock:
            return self._give(hold_ids, covered, whole_account=whole_account, actor=actor,
                              authority=authority, reference=reference, until=until,
                              not_permitted=not_permitted, again=again)

    def _give(self, hold_ids: list[str], covered: dict[str, int], *, whole_account: str | None,
              actor: str, authority: str, reference: str, until: float,
              not_permitted: dict | None, again: bool) -> dict:
        now = self._clock()
        extra = {"again": True} if again else {}
        if not_permitted is not None:
            why, ref = not_permitted["reason"].strip(), not_permitted["reference"].strip()
            self.store.put_many([OrderNotice(h, actor, now, until, [], True, why, ref)
                                 for h in hold_ids])  # one transaction: the order's holds in step
            for account in covered or [None]:  # no account left (erased): audited all the same
                self._audit.append(actor, "lawful_order_notice_not_permitted", ",".join(hold_ids),
                                   "ok", {"holds": len(hold_ids), **extra}, account=account)
            return {"state": "not_permitted", "mails": 0}
        if not covered:  # every holder erased or gone: nobody to tell, and said so (never "sent")
            self.store.put_many([OrderNotice(h, actor, now, until, []) for h in hold_ids])
            self._audit.append(actor, "lawful_order_notice_no_holders", ",".join(hold_ids), "ok",
                               {"holds": len(hold_ids), **extra})
            return {"state": NO_HOLDERS, "mails": 0}
        previous = {h: self.store.get(h) for h in hold_ids}
        recorded = []

        def record(mail_ids: list[str]) -> None:  # before any mail is queued (see the docstring)
            self.store.put_many([OrderNotice(h, actor, now, until, mail_ids) for h in hold_ids])
            recorded.append(mail_ids)

        try:
            mail_ids = self._notices.to_each_account("lawful_order_notice", {  # all or none
                account: {"authority": authority, "reference": reference, "until": until,
                          "whole_account": account == whole_account, "messages": count}
                for account, count in covered.items()}, record=record)
        except BaseException:
            if recorded:
                self._put_back(previous)
            raise
        for account in covered:
            self._audit.append(actor, "lawful_order_notice_queued", ",".join(hold_ids), "ok",
                               {"holds": len(hold_ids), "mails": len(mail_ids), **extra},
                               account=account)
        return {"state": "queued", "mails": len(mail_ids)}

    def _put_back(self, previous: dict[str, OrderNotice | None]) -> None:
        """The mails were not queued: the records written for them go back to what they were."""
        try:
            self.store.put_back(previous)
        except Exception:  # they name mails that never were: read "unsent", never "sent"
            log.exception("lawful order notice records not put back after the mails failed",
                          extra={"holds": len(previous)})

    def withdraw(self, hold: dict, active: list[dict], actor: str) -> int:
        """Lawful order ``hold`` (a hold's view) was just released: unless another of the order's holds
        is among the ``active`` ones (the order still stands), its notice mails that have not left
        are called off (``Notices.withdraw``), so no holder is told of an order withdrawn before its
        notice went out. How many; audited per account (``lawful_order_notice_withdrawn``)."""
        notice = self.store.get(hold["hold_id"])
        if notice is None or not notice.mail_ids or self.order_of(hold, active):
            return 0
        with self.lock:
            accounts = self._notices.withdraw(list(notice.mail_ids))
        for account in accounts:
            self._audit.append(actor, "lawful_order_notice_withdrawn", hold["hold_id"], "ok",
                               {"mails": len(accounts)}, account=account or None)
        return len(accounts)

    def state(self, hold_id: str, order_id: str = "") -> dict | None:
        """The notice of a lawful order's hold as ``GET /v1/holds`` shows it (``state``: queued, sent,
        not_delivered, unsent, not_permitted, no_holders; ``placement_incomplete`` for a hold of order
        ``order_id`` without one: its placement did not complete); None for a hold without one and
        without an order id (placed by an older version)."""
        notice = self.store.get(hold_id)
        if notice is None:
            return {"state": PLACEMENT_INCOMPLETE, "mails": 0} if order_id else None
        view = notice.public()
        if not notice.not_permitted:
            view["state"] = self._mail_state(notice)
        return view

    def require_notice(self, hold_id: str, order_id: str = "") -> None:
        """Before a disclosure under lawful order ``hold_id``: its holder was notified, or notice was
        recorded as not permitted, or that no holder is left to notify; else ``NoticePending`` /
        ``HolderNotNotified``."""
        notice = self.store.get(hold_id)
        if notice is None and order_id:
            raise HolderNotNotified(f"the placement of lawful order {hold_id} did not complete; "
                                    "no disclosure until it does: "
                                    + incomplete_help(order_id, with_key=True)
                                    + " (placed without a key: release its holds and place it "
                                    "again with one)")
        if notice is None:
            raise HolderNotNotified(f"lawful order {hold_id} has no notice to its account holder on "
                                    "record; give it with POST /v1/holds/{id}/notice (policy 5)")
        if notice.not_permitted:
            return
        state = self._mail_state(notice)
        if state == NO_HOLDERS:
            return
        if state == QUEUED:
            raise NoticePending(f"the notice of lawful order {hold_id} is queued but not yet sent; "
                                "disclosure waits until it is (retry later; GET /v1/holds)")
        if state == NOT_DELIVERED:
            raise HolderNotNotified(f"the notice of lawful order {hold_id} was not delivered: "
                                    f"{NOT_CONFIGURED_HELP}; no disclosure until then")
        if state != SENT:
            raise HolderNotNotified(f"the notice of lawful order {hold_id} left the outbox unsent "
                                    "(refused, expired or the account erased); no disclosure "
                                    "(POST /v1/holds/{id}/notice gives it again)")

    def _mail_state(self, notice: OrderNotice) -> str:
        if not notice.mail_ids:  # (an empty set is a subset of {SENT}: it must not read "sent")
            return NO_HOLDERS
        outcomes = {self._notices.outbox.outcome(m) for m in notice.mail_ids}
        if QUEUED in outcomes:
            return QUEUED
        if outcomes <= {SENT}:
            return SENT
        return NOT_DELIVERED if NOT_DELIVERED in outcomes else "unsent"
