"""Account operations of the embedding API: accounts, keys, senders, deposits, webhooks, and the
data-subject rights of policy section 7 (access, portability, rectification, erasure, restriction,
objection).

Only what policy 2.1 lists is collected: an email address, settings, API key digests, sender IDs, webhook
settings and receipt preferences. Deposits log chain, transaction hash and from-address to the ledger.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

from engine import apikeys
from engine import messages as m
from engine.billing.amounts import parse_usd
from engine.credentials import ApiKeyManager, NewApiKey, require_active
from engine.errors import AuthError, InputError, StoreFull, UnknownAccount, UnknownSender
from engine.ids import new_account_id
from engine.mail.delivery import delivery
from engine.privacy import former
from engine.privacy.incidents import affected, incident_for_holder
from engine.status import STATUSES
from engine.webhook_events import prefs_of
from storage.accounts import ACTIVE, CLOSED, RESTRICTED, AccountRecord
from storage.full_alarm import RefusalAlarm
from storage.keys import KEY_STORE

MAX_WEBHOOK_BATCH = 100  # events in one webhook POST
MAX_WEBHOOK_WAIT_MS = 10_000  # how long an event may wait for others to share its POST

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
_ALPHA_SENDER = re.compile(r"^[A-Za-z0-9 .\-&]{1,11}$")
_NUMERIC_SENDER = re.compile(r"^\+?[0-9]{3,15}$")
OBJECTABLE = ("analytics",)
CONFIRM_PURPOSE = "confirm_email"
CONFIRM_TTL_SECONDS = 7 * 86400


@dataclass(frozen=True)
class NewAccount:
    """A created account. ``api_key`` and ``webhook_secret`` are shown here once and never again."""

    id: str
    api_key: str
    email: str
    webhook_secret: str


def validate_sender(sender: str) -> str:
    if not isinstance(sender, str) or not (_ALPHA_SENDER.fullmatch(sender) or _NUMERIC_SENDER.fullmatch(sender)):
        raise InputError("a sender ID is 1-11 letters/digits (alphanumeric) or 3-15 digits (numeric)")
    if not any(c.isalpha() for c in sender) and not _NUMERIC_SENDER.fullmatch(sender):
        raise InputError("an all-digit sender ID must be a 3-15 digit number")
    return sender


def signing_secrets(record: AccountRecord, now: float, overlap_seconds: float) -> list[str]:
    """The newest webhook secret, and the previous one while the rotation overlap lasts."""
    current, previous = record.webhook_secrets[:1], record.webhook_secrets[1:2]
    if previous and now - record.webhook_secret_rotated_at < overlap_seconds:
        return current + previous
    return current


KEYS_FULL_SUMMARY_SECONDS = 60.0  # while new accounts' keys cannot be stored: one summary line this often


class AccountManager:
    """Mixed into :class:`engine.Engine`; every method is safe to call from any thread."""

    def __init__(self, runtime) -> None:
        self.runtime = runtime
        self.accounts = runtime.accounts
        self.key_index: dict[bytes, str] = self.accounts.key_index()
        self.credentials = ApiKeyManager(
            runtime, self.key_index, self._audit,
            alert=lambda account_id, kind: self.notices.security_alert(account_id, kind))
        # a new account whose keys cannot be stored (the key directory's disk is full): one ALARM, a
        # summary a minute, one line when an account's keys are stored again (before: counted only)
        self.keys_full = RefusalAlarm("accounts", KEY_STORE, KEYS_FULL_SUMMARY_SECONDS)

    # --- accounts and keys --------------------------------------------------------------------------

    def create_account(self, email: str) -> NewAccount:
        if not isinstance(email, str) or not _EMAIL.fullmatch(email):
            raise InputError("a valid email address is required")
        api_key = apikeys.new_api_key()
        secret = "whsec_" + secrets.token_urlsafe(32)
        record = AccountRecord(id=new_account_id(), email=email, created_at=time.time(),
                               key_digests=[apikeys.digest(api_key)], key_hints=[apikeys.hint(api_key)],
                               webhook_secrets=[secret])
        keys = self.runtime.account_keys
        try:
            keys.create(record.id)  # its confirmation mail is sealed under the account's data key
        except StoreFull as exc:
            if getattr(exc, "store", None) == KEY_STORE:
                self.keys_full.refused("a new account")
            raise
        self.keys_full.wrote()
        try:
            self.send_confirmation(record.id, email)  # queued first: a full outbox creates nothing
        except BaseException:
            keys.shred(record.id)
            raise
        api_keys = self.runtime.api_keys
        row = api_keys.new_row(record.key_digests[0], record.key_hints[0])
        try:  # the account and its key row in one transaction: a full store leaves neither
            self.accounts.create(record, also=lambda txn: api_keys.add_in(txn, record.id, row))
        except BaseException:
            keys.shred(record.id)  # its confirmation mail, queued above, can no longer be opened: dropped
            raise
        self.key_index[record.key_digests[0]] = record.id
        return NewAccount(record.id, api_key, email, secret)

    # --- e-mail confirmation (policy 2.1: the address is used for the confirmation link) ---------------

    def send_confirmation(self, account_id: str, email: str) -> None:
        """Mail a single-use link (7 days) that confirms ``email`` as the account's address."""
        token, expires = self.privacy.links.issue(CONFIRM_PURPOSE, _confirm_subject(account_id, email),
                                                  CONFIRM_TTL_SECONDS, account_id=account_id)
        link = f"{self.settings.email.link_base.rstrip('/')}/v1/email/confirm?token={token}"
        self.notices.send("account_confirmation", account_id, email, link=link, expires_at=expires)

    def resend_confirmation(self, account_id: str) -> dict[str, bool | str]:
        """Mail the account a new confirmation link; what became of it (``engine.mail.delivery``:
        ``sent`` false, ``delivery`` ``not_delivered`` when no mail server is configured)."""
        self.send_confirmation(account_id, self.accounts.get(account_id).email)
        return delivery(self.notices.delivers)

    def confirm_email(self, token: str) -> str:
        """Redeem a confirmation link; the account id. ``ChallengeInvalid`` for a used, expired or
        unknown link, or one sent to an address the account no longer has."""
        from engine.errors import ChallengeInvalid

        subject = self.privacy.links.redeem(CONFIRM_PURPOSE, token)
        account_id = subject.split(":", 1)[0]
        record = self.accounts.get(account_id)
        if _confirm_subject(account_id, record.email) != subject:
            raise ChallengeInvalid("the link was sent to an address this account no longer has")
        now = time.time()
        self.accounts.set_fields(account_id, email_confirmed_at=now)
        self.runtime.tell_session(account_id, m.EmailConfirmed(account_id, now))
        return account_id

    def account(self, account_id: str) -> AccountRecord:
        return self.accounts.get(account_id)

    def account_id_for_key(self, api_key: str | apikeys.PresentedKey) -> str:
        """The account a key (or a :class:`~engine.apikeys.PresentedKey`, hashed already) belongs to;
        ``AuthError`` for an unknown, revoked or closed account's key."""
        digest = apikeys.digest_of(api_key) or b""
        account_id = self.account_for_digest(digest)
        if account_id is None:
            raise AuthError("unknown or revoked API key")
        self.credentials.touch(account_id, digest)
        return account_id

    def account_for_digest(self, digest: bytes) -> str | None:
        """The account whose active key has this digest, or None. Every key lookup goes through here, so
        a refused key that is a revoked key of an account is counted against that account (many such
        failures send its holder a security alert)."""
        account_id = self.key_index.get(digest)
        if account_id is None:
            owner = self.credentials.revoked_owner(digest)
            if owner is not None:
                self.notices.failed_authentication(owner)
        return account_id

    def create_api_key(self, account_id: str, *, actor: str = "embedding-api") -> NewApiKey:
        """A further key for an active account: ``NewApiKey(id, api_key, hint)``, the key shown once."""
        return self.credentials.create(account_id, actor=actor)

    def add_api_key(self, account_id: str) -> str:
        """A further key for the account (shown once); :meth:`create_api_key` also gives its id."""
        return self.create_api_key(account_id).api_key

    def api_keys(self, account_id: str) -> list[dict]:
        """The account's keys (never the keys themselves): id, hint, created_at, last_used_at,
        revoked_at; active keys first."""
        return self.credentials.list(account_id)

    def revoke_api_key(self, account_id: str, key_id: str, *, actor: str = "embedding-api",
                       keep_last: bool = False) -> dict:
        """Revoke a key now (it authenticates nowhere from this call on); ``keep_last`` refuses to
        revoke the account's only key (``LastApiKey``)."""
        return self.credentials.revoke(account_id, key_id, actor=actor, keep_last=keep_last)

    def register_sender(self, account_id: str, sender: str) -> None:
        validate_sender(sender)
        self.accounts.update(account_id, lambda r: r if sender in require_active(r).senders
                             else replace(r, senders=[*r.senders, sender]))
        self.runtime.tell_session(account_id, m.SenderRegistered(account_id, sender))

    def remove_sender(self, account_id: str, sender: str, *, actor: str = "embedding-api") -> None:
        """Rectification (policy 7.1): take a sender ID off the account (a wrong one may be a person's
        name or number); submits from it are refused with ``UnknownSender`` from this call on. Allowed
        for a restricted account too (it removes data, it processes none). ``UnknownSender`` if it is
        not registered. Audit-logged without the sender itself (the log outlives the correction)."""

        def without(r: AccountRecord) -> AccountRecord:
            if sender not in r.senders:
                raise UnknownSender(f"sender ID {sender!r} is not registered for this account")
            return replace(r, senders=[s for s in r.senders if s != sender])

        if not isinstance(sender, str):
            raise UnknownSender("a sender ID is a string")
        self.accounts.update(account_id, without)
        self.runtime.tell_session(account_id, m.SenderRemoved(account_id, sender))
        self._audit(actor, "remove_sender", account_id)

    def deposit(self, account_id: str, usd, chain: str, tx_hash: str, from_address: str,
                timeout: float = 10.0) -> int:
        """Credit a top-up (idempotent on chain + tx hash); returns the new balance in micro-USD."""
        amount = parse_usd(usd)
        for name, value in (("chain", chain), ("tx_hash", tx_hash), ("from_address", from_address)):
            if not isinstance(value, str) or not value or len(value) > 200:
                raise InputError(f"{name} must be a non-empty string")
        self.accounts.get(account_id)  # UnknownAccount if there is none
        request_id, fut = self.runtime.bridge.new_request(lambda r: r.balance_micro_usd)
        self.runtime.directory.ledger.tell(m.encode(m.CreditAccount(
            request_id, account_id, amount, chain, tx_hash, from_address, time.time())))
        return fut.result(timeout)

    def balance(self, account_id: str) -> int:
        """The account's balance in micro-USD, after every debit of a message already accepted."""
        self.accounts.get(account_id)
        self.runtime.sync_ledger()
        return self.runtime.ledger_store.balance(account_id)

    # --- state: restriction (Art. 18) and closure ---------------------------------------------------

    def restrict_account(self, account_id: str, restricted: bool = True, *,
                         actor: str = "embedding-api") -> None:
        if not isinstance(restricted, bool):  # ("no" would restrict)
            raise InputError("restricted must be True or False")
        def change(r: AccountRecord) -> AccountRecord:
            if r.state == CLOSED:
                raise InputError("a closed account cannot be restricted or reopened")
            return replace(r, state=RESTRICTED if restricted else ACTIVE)

        rec = self.accounts.update(account_id, change)
        self.runtime.tell_session(account_id, m.AccountStateChanged(account_id, rec.state))
        self._audit(actor, "restrict" if restricted else "lift_restriction", account_id)

    def close_account(self, account_id: str) -> None:
        """Close: no new messages, and the account's keys authenticate nowhere any more; the record is
        kept 90 days after closure, then swept."""
        rec = self.accounts.update(account_id, lambda r: r if r.state == CLOSED
                                   else replace(r, state=CLOSED, closed_at=time.time()))
        self.credentials.account_closed(rec)
        self.runtime.tell_session(account_id, m.AccountStateChanged(account_id, rec.state))

    # --- webhooks ------------------------------------------------------------------------------------

    def set_webhook(self, account_id: str, url: str | None,
                    receipt_statuses: list[str] | None = None, *, batch_max: int = 1,
                    batch_wait_ms: int = 1000) -> None:
        """Where the account's status changes go, which statuses, and how many events per POST
        (``batch_max`` > 1 opts in to JSON arrays of up to that many events, the first waiting at most
        ``batch_wait_ms``). Setting it re-enables an endpoint that was disabled after ``410 Gone``."""
        if url is not None:
            self.check_webhook_url(url)
        if receipt_statuses is not None and not set(receipt_statuses) <= set(STATUSES):
            raise InputError(f"receipt statuses are a subset of {', '.join(STATUSES)}")
        if not (isinstance(batch_max, int) and 1 <= batch_max <= MAX_WEBHOOK_BATCH
                and isinstance(batch_wait_ms, int) and 0 <= batch_wait_ms <= MAX_WEBHOOK_WAIT_MS):
            raise InputError(f"batching: 1-{MAX_WEBHOOK_BATCH} events, waiting 0-"
                             f"{MAX_WEBHOOK_WAIT_MS} ms")
        rec = self.accounts.update(account_id, lambda r: replace(
            require_active(r), webhook_url=url, receipt_statuses=receipt_statuses,
            webhook_batch_max=batch_max, webhook_batch_wait_ms=batch_wait_ms,
            webhook_disabled_url=None, webhook_disabled_at=0.0))
        self.runtime.tell_pops(m.WebhookSettingsChanged(account_id))
        self.runtime.tell_session(account_id, prefs_of(account_id, rec))

    def check_webhook_url(self, url: str, field: str = "url") -> str:
        """``InvalidUrl`` / ``DestinationNotAllowed`` unless webhooks may go to ``url``: an absolute
        http(s) URL whose host (judged as the HTTP client will read it, without DNS) is a public
        destination, unless ``[http] webhook_allow_private_networks``. The HTTP API also resolves names;
        the webhook client checks every peer address again at connect time."""
        from engine.http.egress import judge_url, parse_url

        if self.runtime.settings.http.webhook_allow_private_networks:
            parse_url(url, field, given=True)
        else:
            judge_url(url, field, given=True)
        return url

    def rotate_webhook_secret(self, account_id: str) -> str:
        """A new signing secret (shown once). The previous one keeps signing beside it for
        ``[http] webhook_secret_overlap_seconds`` (24 h by default), then stops."""
        secret = "whsec_" + secrets.token_urlsafe(32)
        now = time.time()
        self.accounts.update(account_id, lambda r: replace(
            require_active(r), webhook_secrets=[secret, *r.webhook_secrets[:1]],
            webhook_secret_rotated_at=now))
        self.notices.security_alert(account_id, "webhook_secret_rotated")
        return secret

    def webhook_signing_secrets(self, record: AccountRecord, now: float | None = None) -> list[str]:
        """The secrets that sign the account's webhooks now, newest first."""
        return signing_secrets(record, time.time() if now is None else now, self._overlap())

    def _overlap(self) -> float:
        return float(self.runtime.settings.http.webhook_secret_overlap_seconds)

    def disable_webhook(self, account_id: str, url: str) -> bool:
        """The account's webhook endpoint answered 410 Gone: clear it (if still ``url``; in any
        account state) and alert."""
        now = time.time()
        rec = self.accounts.update(account_id, lambda r: replace(
            r, webhook_url=None, webhook_disabled_url=url, webhook_disabled_at=now)
            if r.webhook_url == url else r)
        if rec.webhook_url is not None:
            return False
        self.runtime.tell_pops(m.WebhookSettingsChanged(account_id))
        self.runtime.tell_session(account_id, prefs_of(account_id, rec))
        self.notices.security_alert(account_id, "webhook_disabled")
        return True

    # --- data-subject rights (policy section 7) -----------------------------------------------------

    def account_pseudonym(self, account_id: str) -> str:
        """The account's keyed pseudonym (``psn_…``): how the audit logs, the ledger's carve-out and
        the data-subject records name it; computable also after the account is erased."""
        return self.runtime.pseudonyms.pseudonym(account_id)

    def _audit(self, actor: str, action: str, account_id: str) -> None:
        """Data-subject actions are staff access to personal data (policy 9): audit-logged, synced."""
        self.runtime.core_audit.append(actor, action, account_id, "ok", account=account_id)
        self.runtime.core_env.sync(True)

    def export_account(self, account_id: str, *, actor: str = "embedding-api") -> dict:
        """Access and portability: everything held about the account, machine-readable, no secrets.

        Besides the record, its messages' metadata and its ledger rows, that is the rest of what policy
        2.1 collects about a holder and the engine keeps elsewhere: the API keys' metadata (ids, hints,
        when created, last used and revoked; never a key), the settings kept outside the record (the
        low-balance threshold, in the ledger), the debugging windows the holder opened (2.3 b: when,
        until when), the support correspondence that names the account, the record of its own
        data-subject requests, and the security incidents that affected it (policy 9: what happened,
        when, and where each stands; never the other accounts an incident affected). (Legal holds and lawful orders are not the holder's settings and are
        not disclosed here.)

        An account whose record was swept 90 days after closure while the ledger keeps its rows
        (``engine.privacy.former``) is exported too: ``account`` is None, ``account_record`` says the
        record was deleted at the end of its retention, and the rest is what is still held."""
        rec = self._record_or_former(account_id)
        self._audit(actor, "export_account", account_id)
        self.runtime.sync_ledger()
        messages = [r.to_dict() for r in self.runtime.shards.records_for_account(account_id)]
        ledger_store = self.runtime.ledger_store
        ledger = [e._asdict() for e in ledger_store.entries(account_id)]
        row = ledger_store.balance_row(account_id)
        if rec is None:  # a former account: existed at least since its first ledger row
            head = {"account": None, "account_record": former.record_note(),
                    "pseudonym": self.account_pseudonym(account_id)}
            created_at, api_keys = min((e["at"] for e in ledger), default=float("inf")), []
        else:
            head, created_at, api_keys = ({"account": rec.public_view()}, rec.created_at,
                                          self.api_keys(account_id))
        return {**head, "messages": messages, "ledger": ledger,
                "balance_micro_usd": row.balance, "low_balance_threshold_micro_usd": row.threshold,
                "debug_windows": self._debug_windows(account_id), "api_keys": api_keys,
                **self._privacy_records(account_id, created_at)}

    def _record_or_former(self, account_id: str) -> AccountRecord | None:
        """The account's record; None for a former account (swept, still in the ledger);
        ``UnknownAccount`` for an id nothing held names."""
        try:
            return self.accounts.get(account_id)
        except UnknownAccount:
            if former.is_former(self.runtime, account_id):
                return None
            raise

    def _debug_windows(self, account_id: str) -> list[dict]:
        """The account's open debugging windows (one hold per POP): id, POP, opened, until."""
        return [{"hold_id": h["hold_id"], "pop": h["pop"], "created_at": h["created_at"],
                 "until": h["until"]}
                for h in self.runtime.shards.active_holds()
                if h["kind"] == "debug_window" and h["account_id"] == account_id]

    def _privacy_records(self, account_id: str, created_at: float) -> dict:
        """The account's support cases, data-subject requests and the security incidents that
        affected it (kept in the privacy stores)."""
        privacy = getattr(self, "privacy", None)
        if privacy is None:  # not started yet (the engine opens it after the runtime)
            return {"support_cases": [], "privacy_requests": [], "incidents": []}
        psn = self.account_pseudonym(account_id)  # all that names it once its data key is gone
        cases = [c.public() for c in privacy.support.all()
                 if c.account_id == account_id or c.pseudonym == psn]
        requests = [r.public() for r in privacy.requests.store.all()
                    if r.account_id == account_id or r.subject == psn]
        incidents = [incident_for_holder(i) for i in privacy.incidents.store.all()
                     if affected(i, account_id, created_at)]
        return {"support_cases": sorted(cases, key=lambda c: c["opened_at"]),
                "privacy_requests": sorted(requests, key=lambda r: r["received_at"]),
                "incidents": sorted(incidents, key=lambda i: i["detected_at"])}

    def rectify_account(self, account_id: str, *, email: str,
                        actor: str = "embedding-api") -> dict[str, bool | str] | None:
        """Rectification (Art. 16) of the e-mail address. Mail already queued for the account goes to
        the new address (the sender reads the address when it sends); a confirmation link queued for
        the old address is not sent (``engine.mail.worker``). A new address is mailed a confirmation
        link: the answer says what became of it (``engine.mail.delivery``); None for the same address
        (nothing mailed)."""
        if not isinstance(email, str) or not _EMAIL.fullmatch(email):
            raise InputError("a valid email address is required")
        mailed = None
        if self.accounts.get(account_id).email != email:  # a new address is confirmed again
            # the sender waits for both steps; a crash between them leaves a link it drops unsent
            mail = getattr(self, "mail", None)
            with mail.readdressing(account_id) if mail is not None else nullcontext():
                self.send_confirmation(account_id, email)
                self.accounts.set_fields(account_id, email=email, email_confirmed_at=0.0)
            mailed = delivery(self.notices.delivers)
        self._audit(actor, "rectify_account", account_id)
        return mailed

    def object_to_processing(self, account_id: str, purpose: str, objected: bool = True, *,
                             actor: str = "embedding-api") -> None:
        """Objection (Art. 21): stop processing for a legitimate-interest purpose (``analytics``)."""
        if purpose not in OBJECTABLE:
            raise InputError(f"objection applies to: {', '.join(OBJECTABLE)}")
        self.accounts.update(account_id, lambda r: replace(r, objections=sorted(
            set(r.objections) | {purpose} if objected else set(r.objections) - {purpose})))
        self._audit(actor, f"{'object' if objected else 'withdraw_objection'}:{purpose}", account_id)

    def erase_account(self, account_id: str, *, actor: str = "embedding-api") -> dict:
        """Erasure (Art. 17) with the 7-year ledger carve-out: the account record, API keys and message
        records are deleted and the account's keys destroyed, so no copy of them (stale pages, backups of
        the data directory) can be read again; ledger rows keep kinds, amounts and times under the
        account's pseudonym, their identifiers shredded.

        It runs through the actors that own the data, in order: the session stops taking messages and
        hands over what it holds; each POP ends the account's in-flight messages, drops their bodies and
        deletes the account's records in its own thread (so no later status change writes one back); the
        ledger writes what is queued and shreds the account's ledger key. The customer's own debugging
        windows end and their notes are shredded; legal holds and lawful orders stay (they are the
        policy's exceptions to erasure). Last, the record goes and the account's data key with it, and
        every mail still queued for the account is removed from the outbox (sealed under that key, no
        copy of it opens any more, and none is sent after this returns).

        A former account (its record swept 90 days after closure, ``engine.privacy.former``) is erased
        the same way but for the record, already gone: the answer says so (``account_record``), and
        what the steps still found (message records, mails, pending links) is usually nothing."""
        rec = self._record_or_former(account_id)
        self._audit(actor, "erase_account", account_id)
        if rec is not None:
            self.close_account(account_id)
            for d in self.accounts.get(account_id).key_digests:
                self.key_index.pop(d, None)
        runtime = self.runtime
        deleted = runtime.shards.forget_account(account_id)  # here, or on every worker (a message)
        runtime.directory.forget_session(account_id)
        rows = runtime.directory.ledger.ask(m.encode(m.PseudonymiseAccount(account_id)), timeout=30)
        privacy = getattr(self, "privacy", None)  # its pending links and challenges, while its key is
        proofs = privacy.forget_account(account_id) if privacy is not None else {}  # still there
        self.accounts.delete(account_id, erasure=True)  # both its keys, in one unlink (full disk too)
        self.credentials.forget(account_id)
        mail = getattr(self, "mail", None)  # the engine's MailService (None before it is started)
        mails = mail.forget_account(account_id) if mail is not None else 0
        return {"account": account_id,
                "account_record": "erased" if rec is not None else former.DELETED_AFTER_RETENTION,
                "message_records_deleted": deleted,
                "queued_mails_deleted": mails,
                "pending_links_deleted": proofs.get("links_deleted", 0),
                "pending_challenges_deleted": proofs.get("challenges_deleted", 0),
                "ledger_entries_pseudonymised": rows,
                "ledger_token": runtime.pseudonyms.pseudonym(account_id),
                "kept": "billing ledger (7 years, AML/tax): each row's kind, amount and time under "
                        "ledger_token; its identifiers are shredded"}


def _confirm_subject(account_id: str, email: str) -> str:
    """What a confirmation link confirms: this address for this account (not whatever it is later)."""
    return f"{account_id}:{hashlib.sha256(email.lower().encode()).hexdigest()[:32]}"
