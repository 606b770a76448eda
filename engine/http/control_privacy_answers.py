"""The control port's answers to the data-subject request, incident, policy-change, confirmation and
support-case routes (``engine.http.control_privacy``), as msgspec Structs.

Why: as :mod:`engine.http.control_answers` (which lists these in its ``ANSWERS``), the published schema
is generated from them and a live test checks each answer against it. Each is the public form of its
store's record (``storage.dsar``, ``storage.incidents``, ``storage.support``: never a sealed blob); a
``...View`` adds what is computed when it is read (overdue, seconds left).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DsarType = Literal["access", "portability", "rectification", "erasure", "restriction", "objection"]
DsarStatus = Literal["awaiting_verification", "open", "completed", "refused", "lapsed"]
MailDelivery = Literal["queued", "not_delivered"]


class MailOutcome(msgspec.Struct, omit_defaults=True):
    """What became of the mail (or mails) a step queued to account holders (``engine.mail.delivery``):
    ``sent`` true and ``delivery`` ``queued`` when a mail server is configured (in the durable outbox;
    the mail worker hands it to the server, retrying: the answer does not wait for the server), or
    ``sent`` false and ``delivery`` ``not_delivered`` with a ``message`` when none is (only logged,
    nobody received it)."""

    sent: bool
    delivery: MailDelivery
    message: str = ""


class DsarRecordView(msgspec.Struct):
    """A data-subject request as stored (``POST /v1/dsar``, ``/extend``, ``/refuse``). ``account_id``
    is "" once the account is erased (``subject``, its pseudonym, still names it); ``channel`` email
    or wallet; ``verification`` pending, email_link, wallet:evm or wallet:tron; times are unix seconds,
    0 for not yet."""

    id: str
    account_id: str
    type: DsarType
    channel: str
    verification: str
    status: DsarStatus
    received_at: float
    deadline: float
    verify_by: float
    verified_at: float
    extended: bool
    extension_reason: str
    closed_at: float
    outcome: str
    opened_by: str
    notes: dict[str, Any]
    subject: str


class DsarMailed(DsarRecordView):
    """A step that mails the holder (``POST /v1/dsar``: the verification link, ``/extend``: the new
    deadline and why, ``/refuse``: the refusal and why, ``/signed-requests``: the request opened):
    the request as stored, and ``mail``, what became of that mail; null when none went (the account
    was erased meanwhile, or a former account: no address)."""

    mail: MailOutcome | None


class DsarView(DsarRecordView):
    """A request as listed (``GET /v1/dsar``, ``GET /v1/dsar/{id}``): also whether it is overdue and
    the seconds to its deadline (negative: past it)."""

    overdue: bool
    seconds_to_deadline: int


class DsarList(msgspec.Struct):
    requests: list[DsarView]


class DsarFulfilled(msgspec.Struct):
    """``POST /v1/dsar/{id}/fulfil``: the closed request, and what the matching right answered (access
    and portability: the export; erasure: what was erased; rectification ``{"rectified": [...]}``,
    restriction ``{"restricted": true}``, objection ``{"objected": purpose}``). For a request whose
    account nothing held names any more (``account_id`` ""), access and portability answer an export
    and erasure an erasure with ``account_record`` ``not_held`` (``engine.privacy.nothing_held``).
    ``mail``: what became of the mail telling the holder (null when none went: a former account, or
    one nothing names any more — staff answer through the channel the holder wrote from)."""

    request: DsarView
    result: dict[str, Any]
    mail: MailOutcome | None


class IncidentRecord(msgspec.Struct):
    """A security incident as stored (the steps after opening answer it): ``accounts`` the affected
    ids (``["*"]``: every account), ``subjects`` their pseudonyms; times unix seconds, 0 for not yet.
    The customers' notice, by what became of each mail (``storage.incidents``): ``customers_notified``
    the mail server accepted, ``customers_queued`` still waiting (or retrying), ``customers_not_delivered``
    only logged (no mail server configured), ``customers_unsent`` refused, expired or the account
    erased; ``customers_notified_at`` is when the notice was first queued. (An incident notified by an
    older version counts what was queued then in ``customers_notified``.)"""

    id: str
    summary: str
    detected_at: float
    opened_at: float
    opened_by: str
    accounts: list[str]
    authority_deadline: float
    authority_notified_at: float
    authority_reference: str
    customers_notified_at: float
    customers_notified: int
    closed_at: float
    subjects: list[str]
    customers_not_delivered: int
    customers_unsent: int
    customers_queued: int


class IncidentView(IncidentRecord):
    """An incident as opened (``POST /v1/incidents``) and listed: also where its 72-hour authority
    deadline stands."""

    all_accounts: bool
    seconds_to_authority_deadline: int
    authority_overdue: bool
    authority_deadline_close: bool


class IncidentNotified(IncidentRecord):
    """``POST /v1/incidents/{id}/notify-customers``: the incident, and what this call did. Each
    affected holder is mailed once: ``notices_queued`` holders were mailed by this call (those with
    no notice yet; with ``resend_failed`` also those whose notice was not delivered or unsent),
    ``already_notified`` were not mailed again (their notice was queued by an earlier call, whatever
    became of it: the ``customers_…`` counts say). ``mail``: what became of this call's mails (null
    when it queued none)."""

    notices_queued: int
    already_notified: int
    mail: MailOutcome | None


class IncidentList(msgspec.Struct):
    incidents: list[IncidentView]


class PolicyChangeAnswer(msgspec.Struct):
    """``POST /v1/policy-changes``: one notice queued per account not closed, and ``mail``, what became
    of them (null when there was no account to mail)."""

    effective_at: float
    notices_queued: int
    mail: MailOutcome | None


class ConfirmationSent(msgspec.Struct, omit_defaults=True):
    """``POST /v1/accounts/{id}/confirmation`` (202): a new link for the account's address, and what
    became of it, as on the customer port (``engine.mail.delivery``): ``sent`` true and ``delivery``
    ``queued`` (in the outbox; the mail worker hands it to the configured server), or ``sent`` false
    and ``delivery`` ``not_delivered`` with a ``message`` (no mail server: only logged)."""

    id: str
    sent: bool
    delivery: Literal["queued", "not_delivered"]
    message: str = ""


class SupportCaseView(msgspec.Struct):
    """A support case. Each of ``messages`` is ``[at, direction, author, text]`` (unix seconds, "in"
    from the customer or "out" from us, who wrote it, the text); ``account_id`` is "" for none or once
    the account is erased (``pseudonym`` still names it); ``resolved_at`` 0 while open."""

    id: str
    subject: str
    opened_at: float
    opened_by: str
    account_id: str
    resolved_at: float
    messages: list[list[float | str]]
    pseudonym: str


class SupportCaseList(msgspec.Struct):
    cases: list[SupportCaseView]


ANSWERS: tuple[type[msgspec.Struct], ...] = (
    MailOutcome, DsarRecordView, DsarMailed, DsarList, DsarView, DsarFulfilled, IncidentRecord,
    IncidentNotified, IncidentView, IncidentList, PolicyChangeAnswer, ConfirmationSent, SupportCaseView, SupportCaseList)
