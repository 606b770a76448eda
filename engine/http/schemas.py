"""The customer API's request and response bodies, defined once as msgspec Structs.

Why: the same types validate a request while it is decoded (msgspec does it in C, one pass, no dict in
between) and generate the OpenAPI document (:mod:`engine.http.openapi`), so the published schema and the
validator cannot disagree. Every bound a request must meet that can be written as a schema is written
here (lengths, patterns, ranges, the URL form); what a schema cannot express — a number the numbering plan
does not know, a sender not registered, the balance, the route, a webhook host that resolves to a private
address — is refused by the engine with one of the documented business codes in :data:`BUSINESS_CODES`.

:func:`decode` maps a schema violation to the API's error shape: malformed JSON, a wrong type, a missing or
unknown field are 400; a value of the right type that breaks a field's bound is 422 with that field's code
(``invalid_number`` for ``to``, ``invalid_url`` for URLs, ...), the same codes as before these types. The
control port decodes its bodies with the same function and its own :class:`ErrorCodes`
(:mod:`engine.http.control_schemas`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

from engine.http.errors import HttpError
from engine.http.field_docs import description_at
from engine.http.params import SHAPES
from engine.submission import CONTROL_CHARACTERS

T = TypeVar("T")

STATUSES = ("accepted", "delivered", "rejected", "failed", "expired")
MAX_VALIDITY_SECONDS = 86400
MAX_BATCH = 1000
MAX_CLIENT_REF = 64
MAX_URL_LENGTH = 2048  # engine.http.egress.MAX_URL_LENGTH
MAX_WEBHOOK_BATCH = 100
MAX_WEBHOOK_WAIT_MS = 10_000


def whole(pattern: str) -> str:
    """``pattern`` with every ``$`` meaning the end of the string in Python as in the document.

    msgspec checks a ``Meta`` pattern with Python's ``re``, whose ``$`` also matches before a final
    newline: ``^[A-Z]+$`` lets ``"ACME\\n"`` through, while a reader of the OpenAPI document (JSON
    Schema, ECMA-262) ends it at the end only. ``$(?!\\n)`` means the end in both.
    """
    return pattern.replace("$", _END_GUARD)


_END_GUARD = r"$(?!\n)"


IDEMPOTENCY_KEY_PATTERN = whole(r"^[\x21-\x7e]{1,255}$")  # 1-255 visible ASCII characters
# engine.accounts.validate_sender: 1-11 of letters, digits, space . - & with a letter, or 3-15 digits
SENDER_PATTERN = whole(r"^(?=.{1,11}$)[0-9 .\-&]*[A-Za-z][A-Za-z0-9 .\-&]*$|^\+?[0-9]{3,15}$")

# --- field types ------------------------------------------------------------------------------------

Number = Annotated[str, Meta(pattern=whole(r"^\+[0-9]{1,15}$"), examples=["+4915112345678"],
                             description="E.164: '+' and at most 15 digits, no spaces; it must also "
                                         "be a valid number by libphonenumber's metadata "
                                         "(else 422 invalid_number)")]
SenderId = Annotated[str, Meta(
    pattern=SENDER_PATTERN,
    description="a sender ID registered for the account: 1-11 letters, digits, space . - & with at "
                "least one letter (alphanumeric), or 3-15 digits (numeric); an unregistered one is "
                "403 unknown_sender")]
Body = Annotated[str, Meta(min_length=1, max_length=10_000,
                           description="the text; GSM-7 or UCS-2 (chosen by its characters), at "
                                       "most [engine] max_segments segments (else 413 "
                                       "body_too_large)")]
Url = Annotated[str, Meta(pattern=whole(r"^[Hh][Tt][Tt][Pp][Ss]?://[\x21-\x7e]+$"), max_length=MAX_URL_LENGTH,
                          description="an absolute http(s) URL, host in ASCII (xn-- for "
                                      "internationalised names), without user:password@ (webhooks "
                                      "are authenticated by their signature; else 422 invalid_url); "
                                      "by default only public destinations (else 422 "
                                      "destination_not_allowed)")]
Validity = Annotated[int, Meta(ge=1, le=MAX_VALIDITY_SECONDS,
                               description="seconds the message may wait for delivery (default "
                                           "[engine] default_validity_seconds)")]
ClientRef = Annotated[str, Meta(min_length=1, max_length=MAX_CLIENT_REF,
                                pattern=whole(f"^[^{CONTROL_CHARACTERS}]+$"),
                                description="your own reference (no control characters), stored "
                                            "sealed with the message record and echoed in its "
                                            "status and webhooks")]
Status = Literal["accepted", "delivered", "rejected", "failed", "expired"]
MessageId = Annotated[str, Meta(pattern=whole(SHAPES["message"].pattern),
                                description="a message id: msg_ and 32 lowercase hex digits")]


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=False):
    """A request body: unknown fields are refused (400 unknown_field)."""


# --- requests ---------------------------------------------------------------------------------------


class MessageRequest(Strict, rename={"sender": "from"}):
    """One message to send (``POST /v1/messages``, and each item of a batch)."""

    to: Number
    sender: SenderId
    body: Body
    callback_url: Url | None = None
    validity_seconds: Validity | None = None
    client_ref: ClientRef | None = None


class BatchRequest(Strict):
    """Up to 1,000 messages in one request (``POST /v1/messages/batch``); each gets its own result."""

    messages: Annotated[list[MessageRequest], Meta(min_length=1, max_length=MAX_BATCH)]


class BatchEnvelope(Strict):
    """How a batch is decoded: the envelope first, then each item on its own, so a bad item gets its
    own error object instead of refusing the whole batch (its schema is :class:`BatchRequest`)."""

    messages: Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=MAX_BATCH)]


class WebhookBatching(Strict):
    """Several events per POST (opt-in): at most ``max_events``, sent at the latest ``max_wait_ms``
    after the first one waiting."""

    max_events: Annotated[int, Meta(ge=1, le=MAX_WEBHOOK_BATCH)] = 1
    max_wait_ms: Annotated[int, Meta(ge=0, le=MAX_WEBHOOK_WAIT_MS)] = 1000


class WebhookRequest(Strict):
    """``PUT /v1/webhook``: where status changes go, which statuses, and how many per POST."""

    url: Url | None
    receipt_statuses: Annotated[list[Status], Meta(max_length=5)] | None = None
    batching: WebhookBatching | None = None


class SenderRequest(Strict):
    sender: SenderId


class DebugWindowRequest(Strict):
    hours: Annotated[float, Meta(ge=0.01, le=168, description="how long, at least 0.01 (36 s), at most "
                                                            "168 (7 days)")]
    reason: Annotated[str, Meta(max_length=200)] | None = None


# --- responses --------------------------------------------------------------------------------------


class AcceptedAnswer(msgspec.Struct, omit_defaults=True):
    """A message that is durably accepted (``202``)."""

    id: MessageId
    status: Status
    segments: int
    price_micro_usd: int
    encoding: str
    pop: str
    client_ref: str | None = None


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class BatchResult(msgspec.Struct, omit_defaults=True):
    """One message's result in a batch: the fields of :class:`AcceptedAnswer`, or only ``error`` (the
    API's error object). Encoded without the absent half, so each result is exactly one of the two
    shapes (the document says so with ``oneOf``)."""

    id: str | None = None
    status: str | None = None
    segments: int | None = None
    price_micro_usd: int | None = None
    encoding: str | None = None
    pop: str | None = None
    client_ref: str | None = None
    error: ErrorDetail | None = None


class BatchAnswer(msgspec.Struct):
    """One result per message, in the order given: an accepted message or an error object (a
    refusal's business code, or ``internal_error`` for an entry that failed unexpectedly: its outcome
    is unknown, check your messages before sending it again). ``refused`` counts the error objects."""

    results: list[BatchResult]
    accepted: int
    refused: int


class MessageView(msgspec.Struct, omit_defaults=False):
    """Status and metadata of one message (never its body)."""

    id: MessageId
    status: Status
    to: str
    sender: str = msgspec.field(name="from")
    country: str = ""
    pop: str = ""
    carrier: str = ""
    encoding: str = ""
    segments: int = 0
    price_micro_usd: int = 0
    submitted_at: float = 0.0
    updated_at: float = 0.0
    carrier_acked_at: float | None = None
    error: str = ""
    validity_seconds: int = 0
    callback_url: str | None = None
    attempts: int = 0
    refunded_micro_usd: int = 0  # the price credited back: no carrier ever acknowledged the message
    client_ref: str | None = None


class MessageList(msgspec.Struct):
    """A page of the account's messages, newest first; ``next_cursor`` is null on the last page."""

    messages: list[MessageView]
    next_cursor: str | None


class WebhookView(msgspec.Struct):
    """The account's webhook endpoint: settings and state."""

    url: str | None
    state: Literal["none", "active", "disabled"]
    receipt_statuses: list[Status] | None
    batching: WebhookBatching
    disabled_at: float | None
    disabled_reason: str | None
    backlog: int  # events waiting for this endpoint (not yet delivered or given up)
    callback_backlog: int  # events waiting for the account's messages' own callback_urls


class BalanceView(msgspec.Struct):
    balance_micro_usd: int
    currency: str
    low_balance_threshold_micro_usd: int = 0  # below it, one account.low_balance webhook (0: off)


class SenderView(msgspec.Struct):
    """A sender ID just registered (``201``)."""

    sender: str


class SenderRemoved(msgspec.Struct):
    """A sender ID just removed (rectification): submits from it are refused from now on."""

    sender: str
    removed: bool


class KeyView(msgspec.Struct):
    """One API key's metadata, never the key (``revoked_at``: null while it authenticates; a key that
    predates the key store has null ``created_at``). A revocation answers the revoked key's."""

    id: str
    hint: str
    created_at: float | None
    last_used_at: float | None
    revoked_at: float | None


class DebugWindowOpened(msgspec.Struct):
    """``POST /v1/debug-window``: until when bodies are kept, and the window's hold at each POP."""

    until: float
    hold_ids: list[str]


class DebugWindowClosed(msgspec.Struct):
    """``DELETE /v1/debug-window``: how many windows (holds, one per POP) ended now; ``partial``: a
    part of the engine did not answer in time (2 s), so a window there may still be open - the same
    request again is safe and ends it."""

    closed: int
    partial: Annotated[bool, Meta(description=(
        "true if a part of the engine did not answer in time: a window there may still be open; "
        "the same request again is safe and ends it"))]


# --- events (the webhook body) ----------------------------------------------------------------------


class EventData(msgspec.Struct):
    id: MessageId
    status: Status
    pop: str
    carrier: str
    country: str
    segments: int
    price_micro_usd: int
    error: str
    client_ref: str | None


class Event(msgspec.Struct):
    """One status change as POSTed to a webhook (a batching endpoint gets a JSON array of these)."""

    id: str
    type: Literal["message.status"]
    created_at: float
    data: EventData


class LowBalanceData(msgspec.Struct):
    balance_micro_usd: int
    threshold_micro_usd: int


class LowBalanceEvent(msgspec.Struct):
    """The balance went below the account's threshold (once per crossing), POSTed alone to the account's
    webhook URL (never a message's callback_url; receipt_statuses does not filter it)."""

    id: str
    type: Literal["account.low_balance"]
    created_at: float
    data: LowBalanceData


# The refusals a request the schema allows may still get, and why (published in the OpenAPI document).
BUSINESS_CODES: dict[str, str] = {
    "invalid_number": "the number is well formed but not a valid number in its numbering plan",
    "unknown_sender": "the sender ID is not registered for the account",
    "body_too_large": "the body needs more than [engine] max_segments segments",
    "invalid_body": "the body holds a character no encoding can carry",
    "insufficient_balance": "the prepaid balance does not cover the price",
    "no_route": "no route serves the destination",
    "destination_not_allowed": "the URL's host is not a public destination",
    "invalid_url": "the URL does not parse as an absolute http(s) URL",
    "account_restricted": "the account is restricted (it may read, not send or change settings)",
    "account_unconfirmed": "the account's e-mail address is not confirmed yet",
    "idempotency_key_reused": "the Idempotency-Key was used with another body",
    "idempotency_conflict": "a request with the Idempotency-Key is still being processed",
    "idempotency_outcome_unknown": "an earlier request with the Idempotency-Key was interrupted",
    "rate_limited": "too many requests for the API key (or unverified data-subject requests from "
                    "the address)",
    "unknown_account": "no account has the id (a data-subject request's challenge)",
    "challenge_invalid": "the challenge is unknown, expired or already used",
    "invalid_signature": "the signature is not 65 bytes in hex or does not verify (the challenge is "
                         "used up)",
    "wallet_not_recognised": "the signing wallet never deposited to the account",
    "overloaded": "the engine is at its in-flight bound",
    "carriers_saturated": "the route's carriers are at capacity",
    "store_full": "the data store is full",
    "storage_error": "a store could not make the write durable",
}

# --- decoding ---------------------------------------------------------------------------------------



@dataclass(frozen=True)
class ErrorCodes:
    """How one API names a schema violation: structure errors (malformed JSON, a missing or unknown
    field, a wrong type) are the same everywhere; a value of the right type that breaks a bound gets the
    (status, code) its field has in ``fields`` (the last field name on the error's path), else
    ``other``. ``not_object`` is the answer to a body that is JSON but not an object."""

    fields: Mapping[str, tuple[int, str]]
    other: tuple[int, str] = (422, "invalid_field")
    not_object: tuple[int, str] = (400, "invalid_type")


CUSTOMER_CODES = ErrorCodes(fields={  # a bound broken by a field of the right type: its own code
    "to": (422, "invalid_number"), "from": (403, "unknown_sender"), "body": (422, "invalid_body"),
    "callback_url": (422, "invalid_url"), "url": (422, "invalid_url"),
    "validity_seconds": (422, "invalid_validity"), "client_ref": (422, "invalid_client_ref"),
    "receipt_statuses": (422, "invalid_receipt_statuses"), "hours": (422, "invalid_window"),
    "messages": (422, "invalid_batch"), "sender": (400, "invalid_request"),
    "max_events": (422, "invalid_batching"), "max_wait_ms": (422, "invalid_batching"),
    "reason": (422, "invalid_reason"),
    # the billing and privacy bodies (engine.http.customer_schemas): the codes the engine gave before
    "usd": (400, "invalid_request"), "type": (400, "invalid_request"),
    "email": (400, "invalid_request"), "scheme": (400, "invalid_request"),
    "account_id": (400, "invalid_id"), "challenge_id": (401, "challenge_invalid"),
})
NOT_OBJECT = "request body must be a JSON object"
_PATH = re.compile(r"`\$((?:\.[A-Za-z_]+|\[\d+\])*)`$")
_decoders: dict[Any, msgspec.json.Decoder] = {}
encoder = msgspec.json.Encoder()


def decode(raw: bytes, kind: type[T], codes: ErrorCodes = CUSTOMER_CODES) -> T:
    """Decode and validate a request body; ``HttpError`` in the API's vocabulary (``codes``) otherwise."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    if not raw:
        raise HttpError(400, "invalid_json", "request body is empty")
    try:
        decoded = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise validation_error(str(exc), codes, kind) from None
    except msgspec.DecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "invalid_json", "request body is not valid UTF-8") from None
        raise HttpError(400, "invalid_json", "request body is not valid JSON") from None
    if _may_repeat_a_key(raw, kind):
        _refuse_duplicate_keys(raw)
    return decoded


# --- duplicate keys ---------------------------------------------------------------------------------
# msgspec (like most JSON parsers) keeps the last of two equal keys, so {"to": a, "to": b} would send to b
# whatever the client meant. Both APIs refuse such a body as ambiguous (400 duplicate_key). Checking every
# body with a second parse would cost the hot path; a key can only repeat if its quoted name occurs twice in
# the raw bytes (the body is closed: unknown fields are refused), or if a name is spelled with a \u escape.

_NAMES: dict[Any, re.Pattern[bytes] | None] = {}  # per body type: its quoted field names


def _field_names(info: Any, into: set[bytes]) -> bool:
    """Add the quoted JSON names of every object ``info`` (a msgspec.inspect type) can hold to
    ``into``; False if it can hold a free-form mapping, whose keys are not known in advance."""
    if isinstance(info, mi.DictType):
        return False
    if isinstance(info, mi.StructType):
        into.update(b'"' + f.encode_name.encode() + b'"' for f in info.fields)
        return all(_field_names(f.type, into) for f in info.fields)
    inner = [getattr(info, a) for a in ("type", "item_type") if hasattr(info, a)]
    inner += [*getattr(info, "types", ()), *getattr(info, "item_types", ())]
    return all(_field_names(t, into) for t in inner)


def _may_repeat_a_key(raw: bytes, kind: Any) -> bool:
    """Whether a key may occur twice in ``raw`` (a body that decoded as ``kind``): one pass of a
    regular expression over the body for every quoted field name (counting each name with
    ``bytes.count`` cost about as much as decoding the body). In valid JSON a key's opening quote
    follows ``{``, ``,`` or white space, never a name's closing quote, so no key is hidden from the
    scan by an overlapping match."""
    if kind not in _NAMES:
        names: set[bytes] = set()
        closed = _field_names(mi.type_info(kind), names)
        _NAMES[kind] = re.compile(b"|".join(re.escape(n) for n in sorted(names)) or b"(?!)") \
            if closed else None
    scan = _NAMES[kind]
    if scan is None or b"\\u" in raw:
        return True
    found = scan.findall(raw)
    return len(found) != len(set(found))


def _refuse_duplicate_keys(raw: bytes) -> None:
    """400 ``duplicate_key`` if any object of the (valid) JSON body has a key twice."""
    def pairs(items: list[tuple[str, Any]]) -> None:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                shown = f"`{key}`" if re.fullmatch(r"[A-Za-z_]{1,40}", key) else "a key"
                raise HttpError(400, "duplicate_key", f"{shown} appears twice in one JSON object: "
                                "refused as ambiguous, send each key once")
            seen.add(key)
    json.loads(raw, object_pairs_hook=pairs)


def validation_error(text: str, codes: ErrorCodes = CUSTOMER_CODES, kind: Any = None) -> HttpError:
    """msgspec's message -> the API's (status, code): structure errors are 400, a broken bound is the
    field's code in ``codes``. A broken pattern is explained by the field's documented description (that
    of the body type ``kind``, as the OpenAPI document publishes it: ``engine.http.field_docs``), not by
    the regular expression; without one, the pattern is quoted as the document publishes it (without
    :func:`whole`'s end guard, which only Python's ``re`` needs)."""
    found = _PATH.search(text)
    if kind is not None and found and "matching regex" in text:
        description = description_at(kind, found.group(1))
        if description:
            text = f"Expected {description[:240]} - at `${found.group(1)}`"
    text = text.replace(_END_GUARD.replace("\\", "\\\\"), "$")  # (msgspec quotes it as a repr)
    if text.startswith("Expected `object`, got") and " - at `" not in text:  # the body itself
        return HttpError(*codes.not_object, NOT_OBJECT)
    if "unknown field" in text:
        return HttpError(400, "unknown_field", text[:200])
    if "missing required field" in text:
        return HttpError(400, "missing_field", text[:200])
    if ", got `" in text or text.startswith("Expected `object`"):
        return HttpError(400, "invalid_type", text[:200])
    field = ""
    if found:
        names = re.findall(r"\.([A-Za-z_]+)", found.group(1))
        field = names[-1] if names else ""
    status, code = codes.fields.get(field, codes.other)
    return HttpError(status, code, text[:300])
