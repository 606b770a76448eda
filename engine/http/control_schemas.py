"""The control port's JSON request bodies, defined once as msgspec Structs.

Why: as for the customer API (:mod:`engine.http.schemas`), the same types validate a body while it is
decoded and generate the control port's OpenAPI document (:func:`engine.http.openapi.control_document`), so
the published formats and the validator cannot disagree. Every format a handler or the engine enforces that
a schema can state is written here: amounts as decimal strings, e-mail addresses, id shapes, token names,
roles, hold kinds, request types, purposes, text lengths. The engine keeps its own checks (it has callers
besides HTTP), and what a schema cannot express stays there with its error: a time relative to now (a hold
ends in the future, a policy change is 30 days away, an incident is not detected in the future), an id that
is well formed but unknown, a token name already taken, the hold's cross-field rule (a legal hold names
messages, a debugging window or order an account), and what an e-mail may not carry (phone numbers,
secrets).

A violation is answered in the control port's vocabulary (:data:`CONTROL_CODES`), the codes it answered
before these types: a missing or unknown field or a wrong type is 400 ``missing_field`` / ``unknown_field``
/ ``invalid_type``; a broken format is 400 ``invalid_request`` (the engine's ``InputError``), except an id
(400 ``invalid_id``), roles (422 ``invalid_roles``) and a token name (422 ``invalid_token_name``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from aiohttp import web
from msgspec import Meta

from engine.http.control_privacy_answers import MailOutcome
from engine.http.jsonio import read_body
from engine.http.params import SHAPES
from engine.http.schemas import (
    IDEMPOTENCY_KEY_PATTERN,
    SENDER_PATTERN,
    ErrorCodes,
    MessageId,
    Strict,
    decode,
    whole,
)

T = TypeVar("T")

CONTROL_CODES = ErrorCodes(
    fields={"account_id": (400, "invalid_id"), "message_ids": (400, "invalid_id"),
            "roles": (422, "invalid_roles"), "name": (422, "invalid_token_name")},
    other=(400, "invalid_request"), not_object=(400, "invalid_json"))

# --- field types ------------------------------------------------------------------------------------

_DECIMALS = r"[0-9]{1,9}(\.[0-9]{1,6})?$"  # below a billion USD, at most 6 decimals (micro-USD)
_NOT_ZERO = r"(?=[0-9.]*[1-9])"  # some digit is not 0
PositiveUsd = Annotated[str, Meta(pattern=whole(f"^{_NOT_ZERO}{_DECIMALS}"), examples=["10.00"],
                                  description="USD as a decimal string (never a JSON number): "
                                              "positive, at most 6 decimals, below a billion")]
SignedUsd = Annotated[str, Meta(pattern=whole(f"^-?{_NOT_ZERO}{_DECIMALS}"), examples=["2.50", "-2.50"],
                                description="USD as a decimal string: a credit, or a debit with a "
                                            "leading '-'; not zero, at most 6 decimals, below a "
                                            "billion")]
ThresholdUsd = Annotated[str, Meta(pattern=whole(f"^{_DECIMALS}"), examples=["5.00", "0"],
                                   description="USD as a decimal string, at most 6 decimals; \"0\" "
                                               "turns the notice off")]
Email = Annotated[str, Meta(pattern=whole(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"),
                            examples=["ops@example.com"],
                            description="an e-mail address: local part, '@', a domain with a dot "
                                        "(engine.accounts._EMAIL)")]
AccountId = Annotated[str, Meta(pattern=whole(SHAPES["account"].pattern), examples=["acc_0123456789abcdef"],
                                description="an account id: acc_ and 16 lowercase hex digits")]
Sender = Annotated[str, Meta(pattern=SENDER_PATTERN,
                             description="1-11 letters, digits, space . - & with at least one "
                                         "letter (alphanumeric), or 3-15 digits (numeric)")]
TokenName = Annotated[str, Meta(
    pattern=whole(r"^(?![Ss][Yy][Ss][Tt][Ee][Mm]:)" + SHAPES["token"].pattern.removeprefix("^")),
    description="1-64 letters, digits or ._@:- starting with a letter or digit; 'system:' is reserved; "
                "unique (a taken name is 409 token_name_taken)")]
Role = Literal["viewer", "operator", "privacy"]  # engine.http.tokens.ROLES
HoldKind = Literal["legal_hold", "debug_window", "lawful_order"]  # storage.holds.HoldKind
Scheme = Literal["evm", "tron"]  # engine.privacy.wallets.SCHEMES (a wallet signature's format)
DsarType = Literal["access", "portability", "rectification", "erasure", "restriction",
                   "objection"]  # storage.dsar.REQUEST_TYPES
Purpose = Literal["analytics"]  # engine.accounts.OBJECTABLE
Direction = Literal["in", "out"]


def _text(max_length: int, what: str, note: str = "") -> Any:
    """A text that must say something: 1 to ``max_length`` characters, not only white space (the
    engine's ``not value.strip()`` check, as a pattern: some character is not a space)."""
    return Annotated[str, Meta(min_length=1, max_length=max_length, pattern=r"\S",
                               description=f"{what} (1-{max_length} characters, not only "
                                           f"spaces){note}")]


MAIL_SAFE = "; mailed, so no phone number (8+ digit run) or secret (else 400 invalid_request)"
AdjustmentReason = _text(500, "why, kept in the ledger entry")  # billing.service.MAX_REASON_CHARS
IncidentSummary = _text(4000, "what happened", MAIL_SAFE)  # privacy.incidents.MAX_SUMMARY
PolicySummary = _text(4000, "what changes", MAIL_SAFE)  # engine.mail.announcements.policy_change
CaseSubject = _text(200, "the case's subject")  # storage.support._check_text
CaseText = _text(20_000, "the message")  # storage.support.MAX_TEXT
MAX_UNIX_TIME = 1e11  # the year 5138: past it a date cannot be written in a mail (time.gmtime)


def _time(description: str, *, positive: bool = False) -> Any:
    """Unix seconds, 0 (or above, when ``positive``) to :data:`MAX_UNIX_TIME`."""
    low = {"gt": 0} if positive else {"ge": 0}
    return Annotated[float, Meta(**low, le=MAX_UNIX_TIME, description=description)]


HoldEnd = _time("unix seconds, in the future, at most the kind's maximum ahead (legal hold 90 days, "
                "debugging window 7 days)")
DetectedAt = _time("unix seconds, not in the future", positive=True)
NotifiedAt = _time("unix seconds (absent or null: now)")
EffectiveAt = _time("unix seconds, at least 30 days from now (else 422 notice_too_short)")


# --- accounts, tokens, holds (control_accounts) -----------------------------------------------------


class AccountCreate(Strict):
    email: Email


class Deposit(Strict):
    """A crypto top-up; chain + tx_hash make it idempotent."""

    usd: PositiveUsd
    chain: Annotated[str, Meta(min_length=1, max_length=200)]
    tx_hash: Annotated[str, Meta(min_length=1, max_length=200)]
    from_address: Annotated[str, Meta(min_length=1, max_length=200)]


class SenderRegistration(Strict):
    sender: Sender


class Restriction(Strict):
    restricted: bool


class Rectification(Strict):
    email: Email


class Objection(Strict):
    purpose: Purpose
    objected: bool = True


class NoticeWaiver(Strict):
    """Why the account holder may not be told of a lawful order (e.g. a non-disclosure order)."""

    reason: Annotated[str, Meta(min_length=1, max_length=2000)]
    reference: Annotated[str, Meta(min_length=1, max_length=200)]


class HoldRequest(Strict):
    """A retention exception. A legal hold names ``message_ids``; a lawful order names ``account_id``
    and/or ``message_ids`` (else 400 invalid_request: a rule across fields, checked by the engine). A
    debugging window is the customer's own opt-in: refused here (403), opened on the customer API.

    A lawful order also states its ``authority``, and its account holders are mailed a notice (the
    authority type, the reference, what it covers, until when) unless ``notice_not_permitted`` records
    why they may not be (policy 5: "where legally permitted"). Both fields only for a lawful order."""

    kind: HoldKind
    reason: Annotated[str, Meta(min_length=1)]
    reference: Annotated[str, Meta(min_length=1)]
    until: HoldEnd
    message_ids: list[MessageId] = msgspec.field(default_factory=list)
    account_id: AccountId | None = None
    authority: Literal["subpoena", "court_order", "regulator_directive"] | None = None
    notice_not_permitted: NoticeWaiver | None = None


class OrderNoticeRequest(Strict):
    """A stuck lawful order's notice given again (``POST /v1/holds/{id}/notice``): the ``authority``
    the holder is told of and, instead of a mail, ``notice_not_permitted``, as at placement."""

    authority: Literal["subpoena", "court_order", "regulator_directive"]
    notice_not_permitted: NoticeWaiver | None = None


class Disclosure(Strict):
    """A held body to disclose under a hold (audit-logged; under a lawful order only after notice)."""

    message_id: MessageId


class HoldRelease(Strict):
    reason: str


class TokenRequest(Strict):
    """A new operator token; only roles the caller holds may be granted (else 403)."""

    name: TokenName
    roles: Annotated[list[Role], Meta(min_length=1)]


_ANSWER_ONLY = {"readOnly": True}


class RoutingTable(Strict):
    """The routing table and rate card; their content is validated by the engine (422 invalid_config).

    Why the two read-only fields: ``PUT /v1/routing`` answers the table with ``price_notices_queued``
    and ``mail`` beside it, and a client that keeps the last answer sends it back as the next request
    (a GET/PUT round-trip). They are taken and ignored (they say what an earlier replacement mailed, not
    what this one should), so the answer is itself a request that changes nothing; any other unknown
    field is still refused."""

    routes: list[dict[str, Any]]
    rates: dict[str, Any] = msgspec.field(default_factory=dict)
    price_notices_queued: Annotated[int | None, Meta(
        description="read-only: the answer's count, ignored on input",
        extra_json_schema=_ANSWER_ONLY)] = None
    mail: Annotated[MailOutcome | None, Meta(
        description="read-only: the answer's mail outcome, ignored on input",
        extra_json_schema=_ANSWER_ONLY)] = None


# --- ledger (control_billing) -----------------------------------------------------------------------


class Adjustment(Strict):
    usd: SignedUsd
    reason: AdjustmentReason
    idempotency_key: Annotated[str, Meta(pattern=IDEMPOTENCY_KEY_PATTERN,
                                         description="1-255 visible ASCII characters")]


class LowBalanceThreshold(Strict):
    usd: ThresholdUsd


# --- data-subject requests, incidents, policy changes, support (control_privacy) --------------------


class DsarOpen(Strict):
    account_id: AccountId
    type: DsarType


class DsarChallenge(Strict):
    """``POST /v1/dsar/challenges``: a message for a depositing wallet to sign, for a holder who wrote
    to privacy@ (the former holder of a swept account above all)."""

    account_id: AccountId
    type: DsarType


class DsarSignedRequest(Strict):
    """``POST /v1/dsar/signed-requests``: the challenge the holder signed. Any attempt with a known
    challenge uses it up (a malformed signature included: its form is the engine's to check)."""

    challenge_id: Annotated[str, Meta(pattern=whole(SHAPES["challenge"].pattern),
                                      description="the challenge_id of POST /v1/dsar/challenges")]
    scheme: Scheme
    signature: Annotated[str, Meta(description="r | s | v, 65 bytes in hex ('0x' optional), as the "
                                               "holder's wallet made it (else 401 invalid_signature)")]


class DsarExtension(Strict):
    reason: Annotated[str, Meta(pattern=r"\S", description="why, mailed to the holder (the first "
                                                           "500 characters)" + MAIL_SAFE)]


class DsarRefusal(Strict):
    reason: Annotated[str, Meta(description="why, mailed to the holder (the first 500 characters)"
                                            + MAIL_SAFE)]


class DsarFulfilment(Strict):
    email: Email | None = None  # the corrected address of a rectification request
    purpose: Purpose = "analytics"  # what an objection request objects to


class IncidentOpen(Strict):
    summary: IncidentSummary
    detected_at: DetectedAt
    accounts: Annotated[list[AccountId], Meta(min_length=1)] | Literal["all"]


class AuthorityNotification(Strict):
    reference: Annotated[str, Meta(description="the authority's reference (the first 200 "
                                               "characters are kept)")]
    at: NotifiedAt | None = None


class IncidentNotice(Strict):
    """``POST /v1/incidents/{id}/notify-customers`` (the body is optional): ``resend_failed`` also mails
    again the holders whose notice was not delivered (no mail server then) or unsent (refused,
    expired)."""

    resend_failed: bool = False


class PolicyChange(Strict):
    effective_at: EffectiveAt
    summary: PolicySummary


class CaseOpen(Strict):
    subject: CaseSubject
    text: CaseText
    account_id: AccountId | None = None


class CaseMessage(Strict):
    direction: Annotated[Direction, Meta(description="in: from the customer, out: from us")]
    text: CaseText


# Every control request body, in the order the OpenAPI document lists its components.
BODIES: tuple[type[Strict], ...] = (
    AccountCreate, Deposit, SenderRegistration, Restriction, Rectification, Objection, HoldRequest,
    Disclosure, OrderNoticeRequest, HoldRelease, TokenRequest, RoutingTable, Adjustment,
    LowBalanceThreshold, DsarOpen, DsarChallenge, DsarSignedRequest, DsarExtension,
    DsarRefusal, DsarFulfilment, IncidentOpen, AuthorityNotification, IncidentNotice, PolicyChange,
    CaseOpen,
    CaseMessage)


async def read_body_as(request: web.Request, kind: type[T]) -> T:
    """The request's JSON body decoded into ``kind``; ``HttpError`` in :data:`CONTROL_CODES` otherwise
    (and 415/413/408 from :func:`engine.http.jsonio.read_body` before a byte is decoded)."""
    return decode(await read_body(request), kind, CONTROL_CODES)
