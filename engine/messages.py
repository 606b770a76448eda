"""Every message the actors exchange, and the one codec they share.

A message is a frozen dataclass with a wire ``TAG`` (never reused) and a schema ``VERSION``. On the wire it is
one msgpack array: ``[tag, version, field1, field2, ...]`` in declaration order. Batches carry lists of small
``NamedTuple`` items, which msgpack writes as arrays and :func:`decode` turns back into the named tuples.

The bytes are self-describing, so the same frames can later cross a process or host boundary unchanged.
:func:`decode` checks tag, version, arity and field types, and raises :class:`~engine.errors.MalformedMessage`
with a reason for anything else, so a receiving actor turns bad input into an error reply instead of dying.

>>> raw = encode(Tick(now=12.5))
>>> decode(raw)
Tick(now=12.5)

Naming: commands are imperative (``SubmitMessage``), events past tense (``CarrierResponded``), replies end in
``Reply``. Hot-path messages carry batches (``items``) so one actor hop moves many messages.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import types
import typing
from typing import Any, ClassVar, NamedTuple, Union

import msgpack

from engine.errors import MalformedMessage

_REGISTRY: dict[int, type[Message]] = {}
_log = logging.getLogger(__name__)


class Message:
    """Base class of every actor message (see the module docstring for the wire format)."""

    TAG: ClassVar[int]
    VERSION: ClassVar[int] = 1
    _fields: ClassVar[tuple[str, ...]]
    _checks: ClassVar[tuple[Any, ...]]


def message(tag: int, version: int = 1):
    """Class decorator: make a frozen slotted dataclass and register it under ``tag``."""

    def wrap(cls: type) -> type:
        if tag in _REGISTRY:
            raise ValueError(f"message tag {tag} already used by {_REGISTRY[tag].__name__}")
        dc = dataclasses.dataclass(frozen=True, slots=True)(cls)
        dc.TAG = tag
        dc.VERSION = version
        hints = typing.get_type_hints(dc)
        dc._fields = tuple(f.name for f in dataclasses.fields(dc))
        dc._checks = tuple(_checker_for(hints[name]) for name in dc._fields)
        _REGISTRY[tag] = dc
        return dc

    return wrap


def encode(msg: Message) -> bytes:
    """Serialise one message to msgpack bytes."""
    return msgpack.packb([msg.TAG, msg.VERSION, *[getattr(msg, f) for f in msg._fields]])


def peek_tag(raw: bytes) -> int | None:
    """The tag of an encoded message without decoding it (None if it cannot be read cheaply).

    Lets an actor forward a batch it does not need to open (a session passing status events on).
    """
    if len(raw) >= 2 and 0x92 <= raw[0] <= 0x9F and raw[1] < 0x80:
        return raw[1]
    return None


def decode(raw: bytes) -> Message:
    """Parse bytes from :func:`encode`; raise ``MalformedMessage`` (never anything else) on bad input."""
    try:
        frame = msgpack.unpackb(raw, use_list=True, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise MalformedMessage(f"not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(frame, list) or len(frame) < 2:
        raise MalformedMessage("a message is an array [tag, version, fields...]")
    tag, version = frame[0], frame[1]
    cls = _REGISTRY.get(tag) if isinstance(tag, int) and not isinstance(tag, bool) else None
    if cls is None:
        raise MalformedMessage(f"unknown message tag {tag!r}")
    if version != cls.VERSION:
        raise MalformedMessage(f"{cls.__name__} schema version {version!r}, expected {cls.VERSION}")
    values = frame[2:]
    if len(values) != len(cls._fields):
        raise MalformedMessage(
            f"{cls.__name__} has {len(cls._fields)} fields, got {len(values)}"
        )
    try:
        checked = [check(v) for check, v in zip(cls._checks, values, strict=True)]
    except _BadField as exc:
        raise MalformedMessage(f"{cls.__name__}: {exc}") from None
    return cls(*checked)


def decode_or_drop(raw: bytes, receiver: str) -> Message | None:
    """:func:`decode` for an actor's ``on_receive``: a malformed message is logged (never its content)
    and dropped, and the actor carries on; None tells the caller there is nothing to handle."""
    try:
        return decode(raw)
    except MalformedMessage as exc:
        _log.warning("%s: dropped a malformed message: %s", receiver, exc)
        return None


# --- field checking ---------------------------------------------------------------------------------


class _BadField(Exception):
    pass


def _scalar(expected: tuple[type, ...], name: str):
    def check(v: Any) -> Any:
        if type(v) in expected:
            return v
        if float in expected and type(v) is int:
            return float(v)
        raise _BadField(f"expected {name}, got {type(v).__name__}")

    return check


def _optional(inner):
    def check(v: Any) -> Any:
        return None if v is None else inner(v)

    return check


def _list_of(inner):
    def check(v: Any) -> Any:
        if type(v) is not list:
            raise _BadField(f"expected a list, got {type(v).__name__}")
        return [inner(x) for x in v]

    return check


def _named_tuple(nt: type):
    hints = list(typing.get_type_hints(nt).values())
    checks = tuple(_checker_for(t) for t in hints)
    fast = _fast_types(hints)
    # Every exact combination of field types accepted without conversion (2 ** optional fields):
    # checking a whole item is then one C-level map and one set lookup.
    combos = frozenset(itertools.product(*fast)) if fast is not None else frozenset()
    n = len(checks)
    make = nt._make

    def check(v: Any) -> Any:
        if type(v) is not list or len(v) != n:
            raise _BadField(f"expected a {nt.__name__} of {n} fields")
        if tuple(map(type, v)) in combos:  # hot path: exactly the declared types
            return make(v)
        return make([c(x) for c, x in zip(checks, v, strict=True)])  # coerces, or says what is wrong

    return check


def _fast_types(hints: list[Any]) -> tuple[tuple[type, ...], ...] | None:
    """Per field, the exact types accepted without conversion; None if a field is not a plain scalar."""
    out = []
    for hint in hints:
        if typing.get_origin(hint) in (Union, types.UnionType):
            args = typing.get_args(hint)
            if not all(a in (str, bytes, int, float, bool, type(None)) for a in args):
                return None
            out.append(tuple(args))
        elif hint in (str, bytes, int, float, bool):
            out.append((hint,))
        else:
            return None
    return tuple(out)


def _checker_for(hint: Any):
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _optional(_checker_for(args[0]))
        raise TypeError(f"unsupported union {hint}")
    if origin is list:
        return _list_of(_checker_for(typing.get_args(hint)[0]))
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
        return _named_tuple(hint)
    if hint is float:
        return _scalar((float,), "float")  # an int is accepted and made a float
    if hint is bool:
        return _scalar((bool,), "bool")
    if hint is int:
        return _scalar((int,), "int")
    if hint in (str, bytes):
        return _scalar((hint,), hint.__name__)
    if hint is Any:
        return lambda v: v
    raise TypeError(f"unsupported field type {hint}")


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


class CarrierSubmitItem(NamedTuple):
    """What a carrier is allowed to see of a message: destination, sender ID, body and an opaque ref.

    No account id, balance or other customer data ever goes here (policy section 5).
    """

    ref: str
    to: str
    sender: str
    body: str


class CarrierResponseItem(NamedTuple):
    """A carrier's answer to one part of a submit (the ``submit_sm_resp`` of one segment)."""

    ref: str
    part: int  # 0-based segment index
    parts: int  # how many segments the carrier split the message into
    outcome: str  # "ok" | "retry" | "throttled" | "reject"
    carrier_message_id: str
    error: str  # carrier error code/text, "" on success


class ReceiptItem(NamedTuple):
    """A delivery receipt for one part, already matched by the carrier actor to its ref."""

    ref: str
    part: int
    state: str  # SMPP message state name: DELIVRD, UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN, ACCEPTD, ENROUTE
    error: str
    at: float


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


class AcceptedItem(NamedTuple):
    """The answer to one submit that is now durable (POP -> bridge)."""

    request_id: int
    message_id: str
    segments: int
    price_micro_usd: int
    pop: str
    encoding: str
    country: str  # ISO 3166 of the destination: with ``pop``, the corridor


class DebitItem(NamedTuple):
    message_id: str
    account_id: str
    amount_micro_usd: int
    at: float


# === host -> customer session ========================================================================


@message(1)
class SubmitMessage(Message):
    """A customer asks to send one SMS. Answered by ``SubmitsAccepted`` or ``SubmitRejected``."""

    request_id: int
    key_digest: bytes
    to: str
    sender: str
    body: str
    validity_seconds: int
    callback_url: str | None
    received_at: float


@message(2)
class SenderRegistered(Message):
    """The account registered a sender ID (the session accepts it from now on)."""

    account_id: str
    sender: str


@message(3)
class BalanceChanged(Message):
    """The ledger committed a credit or a refund; the session adds ``delta`` to what it may spend."""

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
    """A session asks the ledger (the one ``ask`` in the engine, at session start) for the balance it may
    spend; from then on the ledger tells it every ``BalanceChanged`` of its account."""

    account_id: str


# === customer session -> POP ==========================================================================


@message(10)
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


# === POP <-> carrier ==================================================================================


@message(30)
class SubmitToCarrier(Message):
    """The POP hands a batch to one carrier link. The carrier answers each part with ``CarrierResponded``."""

    items: list[CarrierSubmitItem]


@message(31)
class CarrierResponded(Message):
    carrier: str
    items: list[CarrierResponseItem]


@message(32)
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


@message(34)
class SetCarrierSuspended(Message):
    """Operator command to a carrier actor: stop (or resume) taking new submits."""

    suspended: bool


# === POP -> ledger, POP -> session, session -> host =====================================================


@message(40)
class DebitMessages(Message):
    """Charge accepted messages. Idempotent on message id: a repeat is ignored, never billed twice."""

    items: list[DebitItem]


@message(41)
class CreditAccount(Message):
    """A deposit (top-up). Idempotent on (chain, tx_hash)."""

    request_id: int
    account_id: str
    amount_micro_usd: int
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


@message(43)
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


# === housekeeping =====================================================================================


@message(50)
class Tick(Message):
    """A periodic wake-up from the clock: retries and expiries due at ``now`` are processed."""

    now: float


@message(51)
class Flush(Message):
    """An actor's note to itself: process what has accumulated (the group-commit point)."""


@message(52)
class RetryDue(Message):
    """The backoff of a message has passed; route it again (POP to itself via the clock)."""

    message_id: str


@message(53)
class CarrierEmitDue(Message):
    """A simulated carrier's scheduled responses and receipts are due."""

    now: float


def message_types() -> dict[int, type[Message]]:
    """All registered message classes by tag (for tests and documentation)."""
    return dict(_REGISTRY)
