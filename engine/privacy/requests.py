"""RequestDesk: data-subject requests (policy 7.5) from receipt to answer.

How a request is opened and verified:

* **By e-mail**: the holder writes to privacy@ from the account's address, or asks on the customer API
  (``POST /v1/privacy/requests`` with an e-mail address). Either way the engine mails a single-use link to
  the account's *address of record* (a From header proves nothing); opening it verifies the request. An
  address that matches no account gets no mail and the same answer (no enumeration).
* **By wallet signature**: the holder asks for a challenge (account, request type; a nonce that expires)
  and signs it with a wallet that deposited to the account (EIP-191 ``personal_sign`` or TronWeb
  ``signMessageV2``); the challenge is consumed by the first attempt, so a signature cannot be replayed.

Unverified requests (mail requests, challenges) are rate-limited per source and per account or address
(``[privacy] unverified_requests_per_hour``). Staff (control port, privacy role) list requests, see the
overdue ones, extend a deadline once by 60 days (the holder is mailed why), refuse, or fulfil a request
through the existing rights of ``engine.accounts`` (export, rectify, erase, restrict, object); every step
is audit-logged with the operator's name. A step that mails the holder calls its ``mailed`` argument with
the outbox id of that mail (none when there is nobody to mail: the account erased meanwhile, or a former
account), so the control port can say what became of it (``engine.mail.delivery``).

A former account (its record swept 90 days after closure, its ledger rows kept: ``engine.privacy.former``)
has no address of record and no settings left. Its former holder writes to privacy@ (the channel staff
answer on); staff ask the engine for a challenge (:meth:`RequestDesk.staff_challenge`, sealed under the
account's ledger key, lasting as long as a mailed link), send its message to the holder, and submit the
signature the holder returns (:meth:`RequestDesk.open_for_holder`): the engine checks it against the
deposits' from-addresses the ledger kept and opens a verified request in the operator's name. The
unauthenticated customer route is not open to former accounts: nobody could be told of a request made
in their name, and there would be no channel to answer on. A request it had open at the sweep, or one
opened so, is fulfilled by the rights that apply to what the ledger keeps — access, portability (the
export) and erasure — with no mail (there is no address: staff answer through the channel the holder
wrote from); a rectification, restriction or objection has nothing left to act on, and staff refuse it
saying why. A request whose account nothing held names any more (both its keys gone: erased, or swept
with no ledger rows) is answered that nothing is held (``engine.privacy.nothing_held``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from engine.config import PrivacySettings
from engine.errors import (
    ChallengeInvalid,
    InputError,
    InvalidTransition,
    RateLimited,
    UnknownAccount,
    WalletNotRecognised,
)
from engine.http.ratelimit import Gcra
from engine.mail.notices import Notices
from engine.mail.templates import check_safe
from engine.privacy import nothing_held, wallets
from storage.account_keys import DATA, LEDGER
from storage.accounts import AccountStore
from storage.dsar import COMPLETED, REFUSED, REQUEST_TYPES, DsarRecord, DsarStore
from storage.incidents import IncidentStore
from storage.ledger import LedgerStore
from storage.support import SupportCases
from storage.verification import Challenge, Challenges, LinkTokens

VERIFY_PURPOSE = "verify_request"
Mailed = Callable[[str], None]  # told the outbox id of the mail a step queued to the holder
FORMER_TYPES = ("access", "portability", "erasure")  # what a former account's ledger rows can answer


class RequestDesk:
    def __init__(self, store: DsarStore, links: LinkTokens, challenges: Challenges, notices: Notices,
                 accounts: AccountStore, ledger: LedgerStore, rights: Any, audit: Callable[..., None],
                 settings: PrivacySettings, link_base: str, *, is_former: Callable[[str], bool],
                 support: SupportCases, incidents: IncidentStore,
                 clock: Callable[[], float] = time.time) -> None:
        """``is_former(account_id)``: whether an id whose record is missing is a former account
        (``engine.privacy.former.is_former``). ``support`` and ``incidents``: what an account nothing
        names any more still has kept under its pseudonym (``engine.privacy.nothing_held``)."""
        self.store = store
        self._is_former = is_former
        self._support = support
        self._incidents = incidents
        self._links = links
        self._challenges = challenges
        self._notices = notices
        self._accounts = accounts
        self._ledger = ledger
        self._rights = rights  # the engine: export_account, rectify_account, erase_account, ...
        self._audit = audit
        self._settings = settings
        self._link_base = link_base.rstrip("/")
        self._clock = clock
        per_hour = max(1, settings.unverified_requests_per_hour)
        self._limiter = Gcra(per_hour / 3600.0, per_hour, clock=clock)
        self._limiter_lock = threading.Lock()

    # --- unverified: rate-limited --------------------------------------------------------------------

    def request_by_email(self, email: str, request_type: str, *, source: str) -> int:
        """A request naming an address: each account with that address of record gets a verification
        link. Returns how many (callers must not show it to the requester)."""
        _check_type(request_type)
        if not isinstance(email, str) or "@" not in email or len(email) > 320:
            raise InputError("a valid e-mail address is required")
        self._limit(f"src:{source}", "email:" + hashlib.sha256(email.lower().encode()).hexdigest())
        matches = [a.id for a in self._accounts.all() if a.email.lower() == email.lower()]
        for account_id in matches:
            self._open_by_link(account_id, request_type, opened_by="customer")
        return len(matches)

    def register(self, account_id: str, request_type: str, *, actor: str,
                 mailed: Mailed | None = None) -> DsarRecord:
        """Staff register a request that reached privacy@: the holder verifies it by the mailed link."""
        _check_type(request_type)
        try:
            self._accounts.get(account_id)
        except UnknownAccount:
            if self._is_former(account_id):
                raise InvalidTransition(
                    "the account's record was deleted 90 days after its closure: there is no address "
                    "to mail a verification link to; verify the former holder by a wallet signature "
                    "(POST /v1/dsar/challenges, then /v1/dsar/signed-requests)") from None
            raise
        record = self._open_by_link(account_id, request_type, opened_by=actor, mailed=mailed)
        self._audit(actor, "dsar_register", record.id)
        return record

    def challenge(self, account_id: str, request_type: str, *, source: str) -> Challenge:
        """A message for a depositing wallet to sign (single use, expires)."""
        _check_type(request_type)
        self._limit(f"src:{source}", f"acct:{account_id}")
        self._accounts.get(account_id)
        return self._challenges.issue(account_id, request_type, self._settings.challenge_ttl_seconds,
                                      self._clock())

    def open_with_signature(self, challenge_id: str, scheme: str, signature: str, *,
                            mailed: Mailed | None = None) -> DsarRecord:
        """Open a verified request from a signed challenge; the challenge is used up either way. Only
        for an account that still has its record (a former account's challenge, which staff issue,
        is ``ChallengeInvalid`` here). ``mailed`` is told the id of the mail of its deadline."""
        challenge = self._challenges.take(challenge_id, self._clock())
        try:
            self._accounts.get(challenge.account_id)
        except UnknownAccount:
            raise ChallengeInvalid("the account's record was deleted: its former holder writes to "
                                   "privacy@ and staff verify the request") from None
        return self._open_signed(challenge, scheme, signature, opened_by="customer", mailed=mailed)

    # --- staff, for a holder without an address of record -----------------------------------------

    def staff_challenge(self, account_id: str, request_type: str) -> Challenge:
        """A message for a depositing wallet to sign, for a holder who wrote to privacy@ — above all
        the former holder of a swept account (sealed under its ledger key: the data key is gone).
        Lasts as long as a mailed link (the message goes to the holder and back by e-mail).
        ``UnknownAccount`` for an id the engine holds nothing about."""
        _check_type(request_type)
        try:
            self._accounts.get(account_id)
            purpose = DATA
        except UnknownAccount:
            if not self._is_former(account_id):
                raise
            purpose = LEDGER
        return self._challenges.issue(account_id, request_type, self._settings.link_ttl_seconds,
                                      self._clock(), purpose=purpose)

    def open_for_holder(self, challenge_id: str, scheme: str, signature: str, *,
                        actor: str, mailed: Mailed | None = None) -> DsarRecord:
        """Open a verified request, in the operator's name, from a challenge of
        :meth:`staff_challenge` the holder signed (used up either way)."""
        challenge = self._challenges.take(challenge_id, self._clock())
        return self._open_signed(challenge, scheme, signature, opened_by=actor, mailed=mailed)

    def _open_signed(self, challenge: Challenge, scheme: str, signature: str, *,
                     opened_by: str, mailed: Mailed | None = None) -> DsarRecord:
        key = wallets.recover(scheme, challenge.message, signature)
        if not wallets.deposited_from(self._ledger, challenge.account_id, scheme, key):
            raise WalletNotRecognised("the signing wallet never deposited to this account")
        record = self.store.create(challenge.account_id, challenge.request_type, channel="wallet",
                                   verified_by=f"wallet:{scheme}", opened_by=opened_by)
        self._audit(opened_by, "dsar_open_wallet", record.id)
        self._mail_opened(record, mailed)  # a former account has no address: nothing is sent
        return record

    def verify_link(self, token: str, *, mailed: Mailed | None = None) -> DsarRecord:
        """Redeem a verification link: the request is open and its deadline is mailed (``mailed`` is
        told that mail's id; not called when the account was erased meanwhile)."""
        request_id = self._links.redeem(VERIFY_PURPOSE, token, self._clock())
        record = self.store.verify(request_id, "email_link")
        self._audit("customer", "dsar_verified", record.id)
        self._mail_opened(record, mailed)
        return record

    # --- staff -------------------------------------------------------------------------------------

    def list(self, *, overdue_only: bool = False) -> list[dict]:
        now = self._clock()
        records = sorted(self.store.all(), key=lambda r: r.deadline)
        return [r.view(now) for r in records if not overdue_only or r.overdue(now)]

    def get(self, request_id: str) -> dict:
        return self.store.get(request_id).view(self._clock())

    def extend(self, request_id: str, reason: str, *, actor: str,
               mailed: Mailed | None = None) -> DsarRecord:
        """Once, by 60 days, for a complex request; the holder is mailed the new deadline and why."""
        check_safe(reason)
        if not reason.strip():
            raise InputError("an extension states its reason")
        record = self.store.extend(request_id, reason[:500])
        self._audit(actor, "dsar_extend", record.id)
        self._mail(record, "dsar_extended", mailed, deadline=record.deadline,
                   reason=record.extension_reason)
        return record

    def refuse(self, request_id: str, reason: str, *, actor: str,
               mailed: Mailed | None = None) -> DsarRecord:
        check_safe(reason)
        record = self.store.close(request_id, REFUSED, reason[:500])
        self._audit(actor, "dsar_refuse", record.id)
        self._mail(record, "dsar_closed", mailed, status="refused", note=f"Why: {record.outcome}")
        return record

    def fulfil(self, request_id: str, *, actor: str, email: str | None = None,
               purpose: str = "analytics", mailed: Mailed | None = None) -> dict:
        """Carry the request out through the matching right; close it; mail the holder."""
        record = self.store.get(request_id)
        if record.status != "open":
            self.store.close(request_id, COMPLETED, "")  # raises the state machine's refusal
        if not record.account_id:  # its keys are gone; an older version's request: the ledger's rows
            record = replace(record, account_id=nothing_held.account_in_ledger(self._ledger,
                                                                               record.subject))
        if not record.account_id:
            return self._fulfil_unnamed(record, actor)
        address = self._address_or_former(record)  # erasure removes it: read first
        result = self._carry_out(record, actor, email, purpose)
        closed = self.store.close(request_id, COMPLETED, f"{record.type} carried out")
        mail_id = None
        if address is None:  # a former account: no address to mail (staff answer the holder)
            pass
        elif record.type == "erasure":  # the account is gone: the one mail that outlives it
            mail_id = self._notices.erasure_confirmation(address, record.id)
        else:
            mail_id = self._notices.to_account(
                "dsar_closed", record.account_id,  # rectified: the new one
                request_id=record.id, type=record.type, status="completed",
                note="Any data you asked for reaches you through the channel you wrote from, never "
                     "by e-mail.")
        if mail_id is not None and mailed is not None:
            mailed(mail_id)
        return {"request": closed.view(self._clock()), "result": result}

    def _fulfil_unnamed(self, record: DsarRecord, actor: str) -> dict:
        """A request of an account nothing held names any more: access, portability and erasure are
        answered that nothing is held (audit-logged under the account's pseudonym, as the rights are),
        the others cannot be carried out (``InvalidTransition``: staff refuse them). No mail."""
        pseudonym = record.subject
        if not pseudonym:  # not one of ours: every record this version reads names its pseudonym
            raise UnknownAccount(f"request {record.id} names no account")
        if record.type in ("access", "portability"):
            action, result = "export_account", nothing_held.export(
                pseudonym, self._ledger, self.store.all(), self._support.all(), self._incidents.all())
        elif record.type == "erasure":
            action, result = "erase_account", nothing_held.erasure(pseudonym, self._ledger)
        else:
            raise nothing_held.cannot_fulfil(record.type)
        self._audit(actor, action, pseudonym, subject=pseudonym,
                    detail={"request": record.id, "account_record": nothing_held.NOT_HELD})
        closed = self.store.close(record.id, COMPLETED,
                                  f"{record.type} carried out: nothing held names the account any more")
        return {"request": closed.view(self._clock()), "result": result}

    def _address_or_former(self, record: DsarRecord) -> str | None:
        """The account's address of record; None for a former account, whose request must be one the
        ledger's rows can answer (``InvalidTransition`` otherwise); ``UnknownAccount`` if nothing
        names the account any more."""
        try:
            return self._accounts.get(record.account_id).email
        except UnknownAccount:
            if not record.account_id or not self._is_former(record.account_id):
                raise
        if record.type not in FORMER_TYPES:
            raise InvalidTransition(
                f"cannot fulfil a {record.type} request: the account's record was deleted 90 days "
                "after its closure and only its ledger rows are kept (access, portability and erasure "
                "apply to them); refuse it stating why")
        return None

    def _carry_out(self, record: DsarRecord, actor: str, email: str | None, purpose: str) -> Any:
        account_id, rights = record.account_id, self._rights
        if record.type in ("access", "portability"):
            return rights.export_account(account_id, actor=actor)
        if record.type == "rectification":
            if email is None:
                raise InputError("a rectification names the corrected e-mail address")
            rights.rectify_account(account_id, email=email, actor=actor)
            return {"rectified": ["email"]}
        if record.type == "erasure":
            return rights.erase_account(account_id, actor=actor)
        if record.type == "restriction":
            rights.restrict_account(account_id, True, actor=actor)
            return {"restricted": True}
        rights.object_to_processing(account_id, purpose, True, actor=actor)
        return {"objected": purpose}

    def stats(self) -> dict[str, int]:
        now = self._clock()
        records = list(self.store.all())
        return {"open": sum(r.status in ("open", "awaiting_verification") for r in records),
                "overdue": sum(r.overdue(now) for r in records)}

    # --- helpers -----------------------------------------------------------------------------------

    def _open_by_link(self, account_id: str, request_type: str, *, opened_by: str,
                      mailed: Mailed | None = None) -> DsarRecord:
        ttl = self._settings.link_ttl_seconds
        record = self.store.create(account_id, request_type, channel="email", verified_by=None,
                                   opened_by=opened_by, verify_by=self._clock() + ttl)
        token, expires = self._links.issue(VERIFY_PURPOSE, record.id, ttl, self._clock(),
                                           account_id=account_id)
        self._mail(record, "dsar_verification", mailed, expires_at=expires,
                   link=f"{self._link_base}/v1/privacy/verify?token={token}")
        return record

    def _mail_opened(self, record: DsarRecord, mailed: Mailed | None = None) -> None:
        self._mail(record, "dsar_opened", mailed, deadline=record.deadline)

    def _mail(self, record: DsarRecord, template: str, mailed: Mailed | None = None,
              **params: Any) -> None:
        try:
            mail_id = self._notices.to_account(template, record.account_id, request_id=record.id,
                                               type=record.type, **params)
        except UnknownAccount:  # erased meanwhile: nobody to tell
            return
        if mailed is not None:
            mailed(mail_id)

    def _limit(self, *keys: str) -> None:
        with self._limiter_lock:
            for key in keys:
                if not self._limiter.check(key).allowed:
                    raise RateLimited("too many unverified data-subject requests; try again later")


def _check_type(request_type: str) -> None:
    if request_type not in REQUEST_TYPES:
        raise InputError(f"request type is one of {', '.join(REQUEST_TYPES)}")
