"""Every message the actors exchange, and the one codec they share.

A message is a frozen msgspec ``Struct`` with a wire ``TAG`` (never reused) and a schema ``VERSION``. On the
wire it is one msgpack array: ``[tag, field1, field2, ..., version]`` in declaration order. Batches carry
lists of small ``NamedTuple`` items, which msgpack writes as arrays and :func:`decode` turns back into the
named tuples.

The bytes are self-describing, so the same frames cross a process or host boundary unchanged.
:func:`decode` checks tag, version, arity and every field's type while it builds the message (msgspec does
it in C: ~0.6 µs per batch item, against ~0.4 µs for an unchecked ``msgpack.unpackb`` of the same bytes),
so there is one decode for every hop, inside a process or across one. Anything else raises
:class:`~engine.errors.MalformedMessage` with a reason, so a receiving actor turns bad input into an error
reply instead of dying.

>>> raw = encode(Tick(now=12.5))
>>> decode(raw)
Tick(now=12.5, version=1)

Naming: commands are imperative (``SubmitMessage``), events past tense (``CarrierResponded``), replies end in
``Reply``. Hot-path messages carry batches (``items``) so one actor hop moves many messages.
"""

from __future__ import annotations

import logging
import typing
from typing import Annotated, Any, ClassVar, Literal, NamedTuple, Union

import msgpack
import msgspec

from engine.billing.amounts import LIMIT_MICRO
from engine.errors import MalformedMessage

_REGISTRY: dict[int, type[Message]] = {}
_ARITY: dict[int, int] = {}  # tag -> the first byte of its frames (msgpack fixarray of its length)
_log = logging.getLogger(__name__)

#: An amount of an operator's or a depositor's message (a billion USD at most either way, as
#: ``engine.billing.amounts`` reads it): a frame from another process with an amount beyond it is
#: malformed. Without the bound a credit of 2**63-1 overflowed the ledger's 64-bit sums and stopped the
#: ledger. (Only on messages off the submit path: the per-message batches are not checked twice.)
Amount = Annotated[int, msgspec.Meta(gt=-LIMIT_MICRO, lt=LIMIT_MICRO)]
#: A message's price debited or refunded: never negative (a negative debit would credit the account, a
#: negative refund debit it), below a billion USD. One integer compare in C per item as it decodes.
Price = Annotated[int, msgspec.Meta(ge=0, lt=LIMIT_MICRO)]


class Message(msgspec.Struct, array_like=True, frozen=True):
    """Base class of every actor message (see the module docstring for the wire format)."""

    TAG: ClassVar[int]
    VERSION: ClassVar[int]
    _fields: ClassVar[tuple[str, ...]]  # the message's own fields, in wire order (without version)


def message(tag: int, version: int = 1):
    """Class decorator: make the class a tagged wire message and register it under ``tag``.

    The decorated class's annotations become the fields; a ``version`` field (``Literal[version]``) is
    appended, so a frame of another schema version fails to decode instead of being misread.
    """

    def wrap(cls: type) -> type[Message]:
        if tag in _REGISTRY:
            raise ValueError(f"message tag {tag} already used by {_REGISTRY[tag].__name__}")
        hints = typing.get_type_hints(cls, globalns=globals(), include_extras=True)
        names = cls.__struct_fields__
        defaults = cls.__struct_defaults__
        first_default = len(names) - len(defaults)
        fields: list[tuple] = [
            (name, hints[name]) if i < first_default else
            (name, hints[name], defaults[i - first_default])
            for i, name in enumerate(names)
        ]
        fields.append(("version", Literal[version], version))
        new = msgspec.defstruct(cls.__name__, fields, bases=(Message,), tag=tag,
                                module=cls.__module__)
        new.__doc__ = cls.__doc__
        new.__qualname__ = cls.__qualname__
        new.TAG = tag
        new.VERSION = version
        new._fields = tuple(names)
        if not 0 <= tag < 0x80 or len(names) + 2 > 15:  # (checked before it is registered)
            raise ValueError("a message needs a tag from 0 to 127 and at most 13 fields")
        _REGISTRY[tag] = new
        _ARITY[tag] = _HEADER[tag] = 0x90 + len(names) + 2  # the fixarray header of its frames
        global _decode
        _decode = _decode_first  # rebuilt with the new type on the next decode
        return new

    return wrap


_encoder = msgspec.msgpack.Encoder()
#: The fixarray header byte of a registered tag's frames, 0 for every other byte: indexed by a frame's
#: second byte (any byte value), so the arity check is one list index, not a dict lookup.
_HEADER: list[int] = [0] * 256

#: Serialise one message to msgpack bytes (``UnicodeEncodeError`` for a lone surrogate,
#: ``OverflowError`` for an int outside 64 bits). The shared encoder's own method, not a function
#: around it: ~10 encodes a message, and a Python frame costs more than encoding a small message.
encode = _encoder.encode


def peek_tag(raw: bytes) -> int | None:
    """The tag of an encoded message without decoding it (None if it cannot be read cheaply).

    Lets an actor forward a batch it does not need to open (a session passing status events on).
    """
    if len(raw) >= 2 and 0x92 <= raw[0] <= 0x9F and raw[1] < 0x80:
        return raw[1]
    return None


def decode(raw: bytes) -> Message:
    """Parse bytes from :func:`encode`; raise ``MalformedMessage`` (never anything else) on bad input.

    The fast path is one list index, one compare and msgspec's decode (which checks every field's type
    in C); everything else happens only for bad input.
    """
    # The frame's arity, from its fixarray header: the version has a default for construction, so a
    # frame one field short would otherwise decode with its fields shifted. (Every frame has at most
    # 15 elements and a tag below 128, so both bytes are always there; anything else is malformed.)
    try:
        if _HEADER[raw[1]] == raw[0]:
            return _decode(raw)
    except msgspec.DecodeError as exc:  # includes ValidationError
        raise MalformedMessage(_diagnose(raw, exc)) from None
    except IndexError:  # shorter than two bytes
        pass
    except Exception as exc:  # never let odd input escape as anything else
        raise MalformedMessage(f"not a message: {type(exc).__name__}") from None
    raise MalformedMessage(_diagnose(raw, msgspec.ValidationError("bad frame")))


def decode_or_drop(raw: bytes, receiver: str) -> Message | None:
    """:func:`decode` for an actor's ``on_receive``: a malformed message is logged (never its content)
    and dropped, and the actor carries on; None tells the caller there is nothing to handle.

    The fast path of :func:`decode` is repeated here rather than called: one Python frame less on
    every actor hop (~10 a message). Anything it does not take goes through :func:`decode`.
    """
    try:
        if _HEADER[raw[1]] == raw[0]:
            return _decode(raw)
    except Exception:  # decode below says why, and raises the one exception it may
        pass
    try:
        return decode(raw)
    except MalformedMessage as exc:
        _log.warning("%s: dropped a malformed message: %s", receiver, exc)
        return None


def _decode_first(raw: bytes) -> Message:
    """Build the decoder of every registered type (after the last registration), then decode."""
    global _decode
    _decode = msgspec.msgpack.Decoder(Union[tuple(_REGISTRY.values())]).decode  # noqa: UP007
    return _decode(raw)


_decode = _decode_first


def _diagnose(raw: bytes, exc: Exception) -> str:
    """A precise reason for a frame that did not decode (the slow path: only for bad input)."""
    if not isinstance(exc, msgspec.ValidationError):  # (a ValidationError is a DecodeError too)
        return "not valid msgpack"
    try:
        frame = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception:
        return "not valid msgpack"
    if not isinstance(frame, list) or len(frame) < 2:
        return "a message is an array [tag, fields..., version]"
    tag = frame[0]
    cls = _REGISTRY.get(tag) if type(tag) is int else None
    if cls is None:
        return f"unknown message tag {tag!r}"
    if len(frame) != len(cls._fields) + 2:
        return f"{cls.__name__} has {len(cls._fields)} fields, got {len(frame) - 2}"
    if frame[-1] != cls.VERSION:
        return f"{cls.__name__} schema version {frame[-1]!r}, expected {cls.VERSION}"
    return f"{cls.__name__}: {exc}"


# === items carried in batches =======================================================================


class AcceptItem(NamedTuple):
    """One validated, priced message handed from a customer session to its POP."""

    request_id: int
    message_id: str
    account_id: str
    to: str  # E.164 with '+'
    country: str  # ISO region code of the destination, e.g. "DE"
    sender: str
    body: str
    encoding: str  # "GSM-7" | "UCS-2"
    segments: int
    price_micro_usd: int
    submitted_at: float  # unix seconds
    validity_seconds: int
    callback_url: str | None
    client_ref: str | None = None  # the customer's own reference, stored with the record
    reply_to: str = ""  # where the answer goes: "" this process's bridge, else an edge's node name


class CarrierSubmitItem(NamedTuple):
    """What a carrier is allowed to see of a message: destination, sender ID, body and an opaque ref.

    No account id, balance or other customer data ever goes here (policy section 5).
    """

    ref: str
    to: str
    sender: str
    body: str
    segments: int = 0  # how many parts the session counted (0: unknown, the carrier counts itself)


# What became of one part handed to a carrier (``CarrierResponseItem.outcome``):
OK = "ok"  # the carrier accepted the part (it has a carrier message id)
REJECT = "reject"  # a permanent error (e.g. SMPP 0x0B): final for the part, hence for the message
RETRY = "retry"  # a temporary error the carrier answered (0x08, 0x64, generic_nack) or no answer
#                  within the response timeout: counts towards max_attempts
THROTTLED = "throttled"  # the carrier asked to slow down or its queue is full (0x58, 0x14): not counted
OFFLINE = "offline"  # the link could not take or answer the part: no bind up within the bind wait,
#                      the connection dropped, the carrier is suspended or stopping: not counted
WITHDRAWN = "withdrawn"  # taken back before it was written (the POP withdrew the attempt, or another
#                          part of the message failed): it never reached the carrier
OUTCOMES = (OK, REJECT, RETRY, THROTTLED, OFFLINE, WITHDRAWN)


class CarrierResponseItem(NamedTuple):
    """A carrier's answer to one part of a submit (the ``submit_sm_resp`` of one segment)."""

    ref: str
    part: int  # 0-based segment index
    parts: int  # how many segments the carrier split the message into
    outcome: str  # one of OUTCOMES
    carrier_message_id: str
    error: str  # carrier error code/text, "" on success


class ReceiptItem(NamedTuple):
    """A delivery receipt for one part, already matched by the carrier actor to its ref. ``token`` (not 0):
    the carrier still owes the SMSC its answer, given once the POP says whether what the receipt changed
    is durable (``ReceiptsStored``)."""

    ref: str
    part: int
    state: str  # SMPP message state name: DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN, ACCEPTD, ENROUTE
    error: str
    at: float
    token: int = 0


class ExpectedReceiptItem(NamedTuple):
    """After a restart: a part the carrier acknowledged before it, whose receipt may still come."""

    carrier_message_id: str
    ref: str
    part: int


class StatusItem(NamedTuple):
    """One status change of one message, as the host and webhooks see it."""

    message_id: str
    account_id: str
    status: str  # accepted | delivered | rejected | failed | expired
    at: float
    pop: str
    carrier: str
    country: str
    segments: int
    price_micro_usd: int
    error: str
    callback_url: str | None
    client_ref: str | None = None  # the customer's own reference (echoed in webhooks)


class AcceptedItem(NamedTuple):
    """The answer to one submit that is now durable (POP -> bridge)."""

    request_id: int
    message_id: str
    segments: int
    price_micro_usd: int
    pop: str
    encoding: str
    country: str  # ISO 3166 of the destination: with ``pop``, the corridor


class CarrierAckItem(NamedTuple):
    message_id: str
    at: float  # unix seconds


class DebitItem(NamedTuple):
    message_id: str
    account_id: str
    amount_micro_usd: Price
    at: float


class RefundItem(NamedTuple):
    """A message no carrier ever acknowledged: its price goes back to the account (keyed by message id)."""

    message_id: str
    account_id: str
    amount_micro_usd: Price  # what is credited back
    at: float


class SubmitItem(NamedTuple):
    """One message of a ``SubmitMessages`` batch (the fields of ``SubmitMessage``)."""

    request_id: int
    key_digest: bytes
    to: str
    sender: str
    body: str
    validity_seconds: int
    callback_url: str | None
    received_at: float
    client_ref: str | None
    reply_to: str = ""  # where the answer goes ("" the bridge of the process that runs the core)


# === host -> customer session ========================================================================


@message(1, version=3)  # version 2: client_ref; 3: reply_to, for answers to an HTTP edge process
class SubmitMessage(Message):
    """A customer asks to send one SMS. Answered by ``SubmitsAccepted`` or ``SubmitRejected`` - to the
    bridge named by ``reply_to`` ("": the core's; an edge's node name: that edge's)."""

    request_id: int
    key_digest: bytes
    to: str
    sender: str
    body: str
    validity_seconds: int
    callback_url: str | None
    received_at: float
    client_ref: str | None = None
    reply_to: str = ""


@message(80, version=2)  # version 2: SubmitItem carries reply_to
class SubmitMessages(Message):
    """Many messages of one account in one hand-off (``Engine.submit_many``); each is answered on its
    own, exactly like a ``SubmitMessage``."""

    items: list[SubmitItem]


@message(2)
class SenderRegistered(Message):
    """The account registered a sender ID (the session accepts it from now on)."""

    account_id: str
    sender: str


@message(94)
class SenderRemoved(Message):
    """The account removed a sender ID (rectification): the session refuses it from now on."""

    account_id: str
    sender: str


@message(3)
class BalanceChanged(Message):
    """A credit or a refund was committed (ledger), or a reservation handed back (POP); the session adds
    ``delta`` to what it may spend."""

    account_id: str
    delta_micro_usd: int


@message(4)
class AccountStateChanged(Message):
    """An account was restricted, un-restricted or closed; the session refuses new submits while not active."""

    account_id: str
    state: str  # "active" | "restricted" | "closed"


@message(5)
class ApiKeyAdded(Message):
    account_id: str
    key_digest: bytes


@message(70)  # tag chosen clear of the range other branches add to
class EmailConfirmed(Message):
    """The account holder confirmed the e-mail address (``[email] require_confirmation`` lets its
    submits through from now on)."""

    account_id: str
    confirmed_at: float


@message(71)  # clear of the ranges other branches add to
class ApiKeyRevoked(Message):
    """A key of the account was revoked: the session refuses it from now on."""

    account_id: str
    key_digest: bytes


@message(6)
class RegisterSession(Message):
    """A session, at its start, asks the ledger for the balance it may spend (answered with
    ``SessionRegistered``); from then on the ledger tells it every ``BalanceChanged`` of its account."""

    account_id: str


@message(7, version=3)  # version 2: the account's snapshot travels with the balance; 3: and its webhook
class SessionRegistered(Message):
    """The core's answer to ``RegisterSession``: the balance the session may spend from now on, and the
    account as it is now (a session never reads the accounts store, which may be on another host);
    every later change of the account is told to the session as a message."""

    account_id: str
    balance_micro_usd: int
    key_digests: list[bytes]
    senders: list[str]
    state: str  # active | restricted | closed (also for an account that no longer exists)
    email_confirmed: bool
    webhook_url_set: bool = True  # the account has a webhook URL (True when not known: keep events)
    webhook_statuses: list[str] | None = None  # the statuses it wants; None: all


# === customer session -> POP ==========================================================================


@message(10, version=3)  # version 2: AcceptItem carries client_ref; 3: and reply_to
class AcceptMessages(Message):
    """A batch of validated, priced messages for the POP to make durable, acknowledge and route."""

    items: list[AcceptItem]


# === POP -> host (replies) ============================================================================


# Tag 20 (SubmitAccepted, one answer per message) is retired: answers travel in batches now.


@message(22, version=2)  # version 2: AcceptedItem carries the destination country
class SubmitsAccepted(Message):
    """The answers to every submit made durable by one group commit (POP -> bridge)."""

    items: list[AcceptedItem]


@message(21)
class SubmitRejected(Message):
    request_id: int
    code: str  # an engine.errors code
    reason: str


@message(23)
class CarriersAcked(Message):
    """Messages whose every part a carrier has acknowledged, and when (POP -> bridge, after the commit
    that records it): the host's ``on_carrier_ack`` callbacks."""

    items: list[CarrierAckItem]


@message(24)
class MessagesResumed(Message):
    """A POP resumed ``count`` accepted-but-not-final messages after a restart (POP -> bridge): they
    hold in-flight slots like the messages accepted since."""

    pop: str
    count: int


# === POP <-> carrier ==================================================================================


@message(30)
class SubmitToCarrier(Message):
    """The POP hands a batch to one carrier link. The carrier answers each part with ``CarrierResponded``."""

    items: list[CarrierSubmitItem]


@message(31)
class CarrierResponded(Message):
    carrier: str
    items: list[CarrierResponseItem]


@message(32, version=2)  # version 2: ReceiptItem carries the token its answer waits under
class ReceiptsReceived(Message):
    carrier: str
    items: list[ReceiptItem]


@message(33)
class CarrierStateChanged(Message):
    """A carrier link went up or down (or was suspended); the POP stops or starts routing to it."""

    carrier: str
    available: bool
    reason: str


@message(35)
class ExpectReceipts(Message):
    """POP -> carrier after a restart: match receipts for these carrier message ids to these refs."""

    items: list[ExpectedReceiptItem]


@message(110)  # clear of the ranges other branches add to
class ReceiptsStored(Message):
    """POP -> carrier: the receipts under these tokens (``ReceiptItem.token``) were made durable by a
    commit (``stored``): the SMSC is answered 0; or that commit failed: it is answered a temporary error
    and delivers them again later (``engine.smpp.client``)."""

    tokens: list[int]
    stored: bool


@message(36)
class WithdrawSubmits(Message):
    """POP -> carrier: the attempts under these refs are abandoned; take back every part not yet written
    (each is answered ``withdrawn``). Parts already written are on the wire and are answered as usual."""

    refs: list[str]


@message(34)
class SetCarrierSuspended(Message):
    """Operator command to a carrier actor: stop (or resume) taking new submits."""

    suspended: bool


# === POP -> ledger, POP -> session, session -> host =====================================================


@message(40, version=2)  # version 2: the POP and its batch number, answered with DebitsRecorded
class DebitMessages(Message):
    """POP -> ledger: charge accepted messages. Idempotent on message id: a repeat (a batch sent again
    because its answer was late, or after a restart) is ignored, never billed twice. Answered with
    ``DebitsRecorded(batch)`` once the debits are durable (``storage.owed_debits``)."""

    pop: str
    batch: int
    items: list[DebitItem]


@message(48)
class DebitsRecorded(Message):
    """Ledger -> POP: the debits of these batches are durable in the ledger; the POP forgets it owes them."""

    batches: list[int]


@message(46)
class RefundMessages(Message):
    """POP -> ledger: credit back messages no carrier ever acknowledged. Idempotent on message id: a
    repeat (a replay, recovery after a crash) never refunds twice. Answered with ``RefundsRecorded``."""

    pop: str
    items: list[RefundItem]


@message(47)
class RefundsRecorded(Message):
    """Ledger -> POP: these refunds are durable in the ledger; the POP forgets that it owes them."""

    message_ids: list[str]


@message(41)
class CreditAccount(Message):
    """A deposit (top-up). Idempotent on (chain, tx_hash)."""

    request_id: int
    account_id: str
    amount_micro_usd: Amount
    chain: str
    tx_hash: str
    from_address: str
    at: float


@message(42)
class CreditApplied(Message):
    request_id: int
    account_id: str
    balance_micro_usd: int
    duplicate: bool


@message(43, version=2)  # version 2: StatusItem carries client_ref
class StatusesChanged(Message):
    """A batch of status changes (POP -> session -> host)."""

    items: list[StatusItem]


@message(44)
class ForgetAccount(Message):
    """Erasure, at a POP (asked): finish the account's in-flight messages, drop their bodies, and delete
    every record of the account in the POP's own thread, so nothing writes them back."""

    account_id: str


@message(45)
class PseudonymiseAccount(Message):
    """Erasure, at the ledger (asked): write what is queued, then shred the account's ledger key, so its
    rows keep only amounts, times and its pseudonym (and any later row of it has no identifiers)."""

    account_id: str


# === core <-> workers: questions about what a worker holds (engine/cluster/*shard*.py) ==================


@message(60)
class ShardQuery(Message):
    """The core asks a worker about what its POP shards and sessions hold (a message's record, an
    account's records, counters, carriers) or to do something to them (suspend a carrier, forget an
    erased account, take a new routing table). Answered with ``ShardReply``. A worker asks the core
    the same way for the routing table it routes by (``kind="routing"``, no args: the core's current
    table as a document) when it starts and after its NATS link comes back."""

    kind: str
    args: list[Any]


@message(61)
class ShardReply(Message):
    ok: bool
    result: Any
    error: str  # an engine.errors code when not ok


@message(62)
class ShardReplyParts(Message):
    """A worker's answer too large for one NATS message (1 MB by default: a long hold list or audit
    trail, a webhook backlog): the worker keeps the encoded ``ShardReply`` for a minute and the asker
    fetches it in ``count`` parts, ``ShardQuery("answer_part", [token, i])`` each, answered with a
    ``ShardReply`` whose result is that part's bytes."""

    token: str
    count: int


@message(64)
class WorkerPresence(Message):
    """A worker -> everyone listening on ``<prefix>.presence`` (the core, HTTP edges): ``state`` is
    ``"ready"`` (sent after every heartbeat round in which its actors and NATS loop answered, and in
    answer to a ``"ask"`` by a process that just started listening) or ``"stopping"`` (sent once, when
    it is told to stop); ``"ask"`` from a listener (``node`` is the asker's) asks each worker to say
    where it is now; ``"here"`` from the core (``node`` is ``"core"``) answers an ``"ask"`` and greets a
    worker newly heard. ``protocol`` is the sender's cluster protocol (``engine.cluster.protocol``: the
    core hands no work to a worker of another one, and a worker or edge logs a core of another one).
    ``engine.cluster.presence`` keeps the verdicts a submit is refused by. NEVER change this message's
    layout (tag, fields, version): every smsroute version must read every other's announcement to tell
    it speaks another protocol - a change would make the two sides drop each other's as malformed."""

    node: str
    state: str
    protocol: Annotated[int, msgspec.Meta(ge=0, lt=1 << 31)]


# === billing: adjustments and low-balance notices ======================================================


@message(90)  # clear of the ranges other branches add to
class AdjustBalance(Message):
    """An operator's credit (positive) or debit (negative) with a mandatory reason, idempotent on ``key``
    per account. A debit passes the account's session first (it reserves the amount, so no balance ever
    goes below zero), then the ledger; a credit goes to the ledger at once. Answered with
    ``CreditApplied`` or ``SubmitRejected`` (``insufficient_balance``, ``adjustment_conflict``)."""

    request_id: int
    account_id: str
    amount_micro_usd: Amount
    reason: str
    key: str
    actor: str  # who made it: the operator token's name, or "embedding-api"
    at: float
    reserved: bool = False  # set by the session that reserved the debit (the ledger hands it back)


@message(91)
class BalanceLow(Message):
    """Ledger -> bridge: a write took the account's balance below its low-balance threshold (told once
    per crossing; ``seq`` is the ledger entry that crossed it, 0 when the threshold was set above the
    balance)."""

    account_id: str
    balance_micro_usd: int
    threshold_micro_usd: int
    seq: int
    at: float


@message(92)
class SetLowBalanceThreshold(Message):
    """Host -> ledger (asked): the account's low-balance threshold in micro-USD (0: none). The answer is
    the threshold stored; a ``BalanceLow`` follows at once if the balance is already below it."""

    account_id: str
    threshold_micro_usd: Amount


# === housekeeping =====================================================================================


@message(50)
class Tick(Message):
    """A periodic wake-up from the clock: retries and expiries due at ``now`` are processed."""

    now: float


@message(51)
class Flush(Message):
    """An actor's note to itself: process what has accumulated (the group-commit point)."""


@message(93)
class GroupCommitted(Message):
    """The committer has written (or failed to write) this POP's staged batches: answer them now
    (``actors.group_commit``; the outcome is handed over on the one dispatcher thread they share)."""


@message(52)
class RetryDue(Message):
    """The backoff of a message has passed; route it again (POP to itself via the clock)."""

    message_id: str


@message(53)
class CarrierEmitDue(Message):
    """A simulated carrier's scheduled responses and receipts are due."""

    now: float


# === webhook outbox (POP <-> host) ======================================================================


@message(81)
class WebhookSettingsChanged(Message):
    """Engine -> every POP: the account's webhook settings changed; read them again before deciding
    whether its next status changes go to the webhook outbox."""

    account_id: str


@message(84)
class WebhookPrefs(Message):
    """Core -> the account's session (after a change of its webhook settings), and session -> every POP
    of its process (at its start and after each change): whether the account's status changes go to
    the webhook outbox at all. A POP of a cluster worker cannot read the accounts store; without this it
    would store every status change and leave the core to drop the unwanted ones."""

    account_id: str
    webhook_url_set: bool
    webhook_statuses: list[str] | None  # None: every status


@message(82)
class WebhookEventsStored(Message):
    """POP -> bridge: these status changes are in the POP's durable webhook outbox (same commit as the
    changes); ``seqs[i]`` is the outbox sequence of ``items[i]``, the handle to report it done. ``pop`` is
    the POP shard's address (``<node>/<pop>`` in a cluster, where every worker has a shard of each POP)."""

    pop: str
    seqs: list[int]
    items: list[StatusItem]


@message(83)
class WebhookEventsDone(Message):
    """Host -> POP: these outbox events are delivered or given up; the next group commit removes them."""

    seqs: list[int]


@message(85)
class WebhookEventsRetrying(Message):
    """Host -> POP: these outbox events were sent ``attempt`` times and failed; the next try is not before
    ``next_at`` (unix s). The next group commit records it beside them (``storage.webhook_outbox``)."""

    seqs: list[int]
    attempt: int
    next_at: float


def message_types() -> dict[int, type[Message]]:
    """All registered message classes by tag (for tests and documentation)."""
    return dict(_REGISTRY)


# === many submits in one frame (a cluster's transport) ==================================================

if SubmitItem._fields != SubmitMessage._fields:  # the splice below relies on it
    raise TypeError("SubmitItem must carry exactly the fields of SubmitMessage, in the same order")

_SUBMIT_HEAD = bytes([_ARITY[SubmitMessage.TAG], SubmitMessage.TAG])
_SUBMIT_TAIL = SubmitMessage.VERSION  # (a positive fixint: one byte, the frame's last)
_ITEM_HEAD = bytes([0x90 + len(SubmitItem._fields)])
_BATCH_HEAD = bytes([_ARITY[SubmitMessages.TAG], SubmitMessages.TAG])
_BATCH_TAIL = bytes([SubmitMessages.VERSION])


def is_submit_frame(raw: bytes) -> bool:
    """A ``SubmitMessage`` frame of this schema version, as :func:`encode` writes it (header and
    trailer checked, not the fields): one :func:`join_submits` may splice."""
    return raw[:2] == _SUBMIT_HEAD and raw[-1] == _SUBMIT_TAIL


def join_submits(frames: list[bytes]) -> bytes:
    """One ``SubmitMessages`` frame holding the ``SubmitMessage`` frames ``frames`` (each
    :func:`is_submit_frame`), in order - the bytes :func:`encode` gives for
    ``SubmitMessages([SubmitItem(*fields) ...])``, spliced without decoding anything.

    Why: a cluster's core sends every submit to its account's session as a frame of its own; the worker
    validated each on entry and its session then took each in a turn of its own. The transport joins the
    submits for one session that leave in one flush, so the worker validates and tells one batch (the
    session answers each item exactly as it would the frame). A ``SubmitItem`` is the message's fields
    without its tag and version, so an item is the frame without its first two bytes and its last, under
    an array header of its own."""
    n = len(frames)
    if n < 16:
        count = bytes([0x90 + n])
    elif n < 0x10000:
        count = b"\xdc" + n.to_bytes(2, "big")
    else:
        count = b"\xdd" + n.to_bytes(4, "big")
    parts = [_BATCH_HEAD, count]
    for raw in frames:
        parts.append(_ITEM_HEAD)
        parts.append(raw[2:-1])
    parts.append(_BATCH_TAIL)
    return b"".join(parts)
