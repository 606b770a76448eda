"""CustomerSessionActor: one per active account; the gate every message of that account passes.

Messages in: ``SubmitMessage`` and ``AdjustBalance`` debits (host), ``SessionRegistered`` and
``BalanceChanged`` (ledger),
``SenderRegistered``, ``SenderRemoved``, ``AccountStateChanged``, ``ApiKeyAdded``, ``ApiKeyRevoked``, ``EmailConfirmed``
(engine), ``StatusesChanged`` (POPs), ``Flush`` (itself).
Messages out: ``AcceptMessages`` batches to POPs, ``AdjustBalance`` (reserved) to the ledger,
``SubmitRejected`` and ``StatusesChanged`` to the bridge.

Per submit it authenticates the key digest in constant time, validates sender, number and body, segments
and prices the message, and reserves the price from the balance it may spend (the ledger's balance minus
what this session has already reserved). Because one actor serialises an account's submits, two concurrent
requests can never both spend the last cent. The reservation becomes a ledger debit when the POP has made
the message durable; if the POP cannot, it hands the amount back with ``BalanceChanged``. An operator's
debit adjustment is reserved the same way before the ledger writes it, so no balance goes below zero.

Threads: everything here runs on the actors' dispatcher thread (``actors.dispatch``). ``on_start`` tells
the ledger ``RegisterSession``; submits that arrive before its ``SessionRegistered`` answer wait for it.
"""

from __future__ import annotations

import logging

import msgspec

from actors.dispatch import DispatchedActor
from engine import apikeys, segments
from engine import messages as m
from engine.config import Settings
from engine.errors import (
    AccountRestricted,
    AccountUnconfirmed,
    AuthError,
    InsufficientBalance,
    SmsrouteError,
    UnknownSender,
)
from engine.ids import IdGenerator, id_time
from engine.numbers import parse_destination
from storage.accounts import ACTIVE

log = logging.getLogger(__name__)

MAX_VALIDITY_SECONDS = 86400


class CustomerSessionActor(DispatchedActor):
    stage = "session"

    def __init__(self, account_id: str, settings: Settings, directory, ids: IdGenerator) -> None:
        super().__init__()
        self.account_id = account_id
        self.key_digests: list[bytes] = []
        self.senders: set[str] = set()
        self.state = ACTIVE
        self.confirmed = False
        self.settings = settings
        self.directory = directory
        self.ids = ids
        self.available = 0
        self._registered = False  # until the core's SessionRegistered, messages wait in _held
        self._held: list[m.Message] = []
        self._pending: dict[str, list[m.AcceptItem]] = {}
        self._flush_scheduled = False

    def on_start(self) -> None:
        # Registered first, snapshot second: a change stored before the core reads the account is in the
        # snapshot; a change stored after it is told to this session as a message. Every message that
        # arrives before the snapshot waits and is applied after it, in order (the account changes are
        # all idempotent: add, remove, set), so none is lost whichever way the two race.
        self.directory.sessions[self.account_id] = self.actor_ref
        self.directory.ledger.tell(m.encode(m.RegisterSession(self.account_id)))

    def on_receive(self, raw: bytes) -> None:
        if m.peek_tag(raw) == m.StatusesChanged.TAG:
            self.directory.bridge.tell(raw)  # status batches pass through unopened
            return
        msg = m.decode_or_drop(raw, "session")
        if msg is not None:  # (malformed: logged and dropped)
            self._handle(msg)

    def _handle(self, msg: m.Message) -> None:
        match msg:
            case m.SessionRegistered():
                self._on_session_registered(msg)
            case _ if not self._registered:
                self._held.append(msg)  # bounded by the in-flight gate; handled once registered
            case m.SubmitMessage():
                self._on_submit_message(msg)
            case m.SubmitMessages(items=items):
                for item in items:
                    self._on_submit_message(item)
            case m.AdjustBalance():
                self._on_adjust_balance(msg)
            case m.Flush():
                self._on_flush()
            case m.BalanceChanged(delta_micro_usd=delta):
                self.available += delta
            case m.SenderRegistered(sender=sender):
                self.senders.add(sender)
            case m.SenderRemoved(sender=sender):
                self.senders.discard(sender)
            case m.AccountStateChanged(state=state):
                self.state = state
            case m.EmailConfirmed():
                self.confirmed = True
            case m.ApiKeyAdded(key_digest=digest):
                if digest not in self.key_digests:
                    self.key_digests.append(digest)
            case m.ApiKeyRevoked(key_digest=digest):
                self.key_digests = [d for d in self.key_digests if d != digest]
            case m.WebhookPrefs():
                self._tell_pops(msg)
            case _:
                log.error("session: unexpected %s", type(msg).__name__)

    def _on_session_registered(self, msg: m.SessionRegistered) -> None:
        if self._registered:
            return  # a duplicate answer (at-least-once transport): the first one counts
        self._registered = True
        self.available += msg.balance_micro_usd
        self.key_digests = list(msg.key_digests)
        self.senders = set(msg.senders)
        self.state = msg.state
        self.confirmed = msg.email_confirmed
        self._tell_pops(m.WebhookPrefs(self.account_id, msg.webhook_url_set, msg.webhook_statuses))
        held, self._held = self._held, []
        for earlier in held:
            self._handle(earlier)

    def _tell_pops(self, prefs: m.WebhookPrefs) -> None:
        """The account's webhook settings, to every POP of this process: they decide which of its status
        changes are stored for webhooks. Told before this session's first message reaches them, and
        after every change in the order this session learns them, so a POP's view is never older than
        the accounts it was handed messages of."""
        raw = m.encode(prefs)
        for ref in self.directory.pops.values():
            ref.tell(raw)

    def _on_adjust_balance(self, msg: m.AdjustBalance) -> None:
        """An operator's debit: reserve it like a message's price (never below zero), then the ledger
        writes it (and hands the reservation back if it writes nothing)."""
        if -msg.amount_micro_usd > self.available:
            self.directory.bridge.tell(m.encode(m.SubmitRejected(
                msg.request_id, InsufficientBalance.code,
                f"balance {self.available} micro-USD is below the debit {-msg.amount_micro_usd} "
                "micro-USD")))
            return
        self.available += min(0, msg.amount_micro_usd)
        self.directory.ledger.tell(m.encode(msgspec.structs.replace(msg, reserved=True)))

    def _on_submit_message(self, msg: m.SubmitMessage | m.SubmitItem) -> None:
        try:
            item, pop = self._accept(msg)
        except SmsrouteError as exc:
            self.directory.reply_ref(msg.reply_to).tell(
                m.encode(m.SubmitRejected(msg.request_id, exc.code, exc.message)))
            return
        self.available -= item.price_micro_usd
        self._pending.setdefault(pop, []).append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.actor_ref.tell(m.encode(m.Flush()))

    def _accept(self, msg: m.SubmitMessage | m.SubmitItem) -> tuple[m.AcceptItem, str]:
        """Validate and price one submit; raise a typed error for anything the customer must fix."""
        if not apikeys.matches(self.key_digests, msg.key_digest):
            raise AuthError("unknown API key")
        if self.state != ACTIVE:
            raise AccountRestricted(f"account is {self.state}: new messages are not accepted")
        if self.settings.email.require_confirmation and not self.confirmed:
            raise AccountUnconfirmed("confirm the account's e-mail address (the link we mailed) "
                                     "before sending")
        if msg.sender not in self.senders:
            raise UnknownSender(f"sender ID {msg.sender!r} is not registered for this account")
        dest = parse_destination(msg.to)
        plan = segments.plan(msg.body, max_segments=self.settings.engine.max_segments)
        routing = self.directory.routing
        pop = routing.pop_for(dest.e164, dest.region)
        price = routing.price(dest.region, len(plan.segments))
        if price > self.available:
            raise InsufficientBalance(
                f"balance {self.available} micro-USD is below the price {price} micro-USD")
        validity = msg.validity_seconds or self.settings.engine.default_validity_seconds
        validity = max(1, min(validity, MAX_VALIDITY_SECONDS))
        message_id = self.ids.new()
        # positional: a named tuple built from keywords costs ~1 µs more (its __new__ parses them).
        # submitted_at is the id's time, not msg.received_at (another clock read): the listing's
        # since/until filter by the id, so the submitted_at a client sees must be that same time
        item = m.AcceptItem(
            msg.request_id, message_id, self.account_id, dest.e164, dest.region, msg.sender, msg.body,
            plan.encoding, len(plan.segments), price, id_time(message_id), validity, msg.callback_url,
            msg.client_ref, msg.reply_to)
        return item, pop

    def on_stop(self) -> None:
        self._on_flush()  # what was accepted for validation still reaches its POP

    def _on_flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for pop, items in pending.items():
            self.directory.pops[pop].tell(m.encode(m.AcceptMessages(items)))
