"""The customer port's answers to the e-mail confirmation and data-subject request routes
(``engine.http.customer_privacy``), and the OpenAPI document both ports serve, as msgspec Structs.

Why: as for the message and key answers (:mod:`engine.http.schemas`), the published schema is generated
from these types (:func:`engine.http.openapi.customer_document`), so a generated client parses what the
server sends and a live test (``tests/engine/http/test_openapi_live_functional.py``) checks each answer
against it. The handlers still write plain dicts (the answers are tiny and not on the message path); the
live test is what keeps the two in step.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from engine.http.control_privacy_answers import DsarStatus, DsarType, MailDelivery, MailOutcome
from engine.http.schemas import whole


class EmailConfirmed(msgspec.Struct):
    """``GET /v1/email/confirm``: the account whose address the link confirmed."""

    account_id: str
    email_confirmed: bool


class ConfirmationQueued(msgspec.Struct, omit_defaults=True):
    """``POST /v1/email/confirmation`` (202): a new link for the account's address, and what became of
    it (``engine.mail.delivery``): ``sent`` true and ``delivery`` ``queued`` when a mail server is
    configured (the link is in the durable outbox; the mail worker hands it to the server, retrying:
    the answer does not wait for the server to accept it); ``sent`` false and ``delivery``
    ``not_delivered`` when none is (``[email]`` has no ``host``): only logged, nobody received it,
    ``message`` says so."""

    sent: bool
    delivery: MailDelivery
    message: str = ""


class PrivacyRequestReceived(msgspec.Struct):
    """``POST /v1/privacy/requests`` (202): the same answer whether or not the address is an
    account's, so it does not tell who is a customer. ``delivery`` ``queued`` (a link, if the address
    is an account's, is in the outbox for the mail server) or ``not_delivered`` (no mail server is
    configured: no link reaches anyone)."""

    status: str
    delivery: MailDelivery


class PrivacyRequestVerified(msgspec.Struct):
    """``GET /v1/privacy/verify``: the request the link opened, its deadline (unix seconds), and
    ``mail``, what became of the mail that tells the holder that deadline (``engine.mail.delivery``:
    ``queued``, or ``not_delivered`` without a mail server); null when none went (the account was
    erased meanwhile)."""

    id: str
    type: DsarType
    status: DsarStatus
    deadline: float
    mail: MailOutcome | None


class PrivacyRequestSigned(PrivacyRequestVerified):
    """``POST /v1/privacy/signed-requests`` (201): also how it was verified (wallet:evm, wallet:tron)."""

    verification: str


class OpenApiInfo(msgspec.Struct):
    """The document's ``info``; further fields (``x-business-codes`` on the customer port: business
    error code -> meaning) are open-ended."""

    title: str
    version: str


class OpenApiDocument(msgspec.Struct):
    """``GET /v1/openapi.json`` on either port: an OpenAPI 3.1 document. Only its frame is described
    here (``openapi``, ``info``, ``paths``: route -> path item, method -> operation); what a document
    holds is the OpenAPI 3.1 specification's to define, and further top-level members
    (``components``, ``security``, ``webhooks``) are open-ended."""

    openapi: Annotated[str, Meta(pattern=whole(r"^3\.1\.\d+$"),
                                 description="the OpenAPI version the document follows, 3.1.x")]
    info: OpenApiInfo
    paths: dict[str, dict[str, Any]]


ANSWERS: tuple[type[msgspec.Struct], ...] = (
    EmailConfirmed, ConfirmationQueued, PrivacyRequestReceived, PrivacyRequestVerified,
    PrivacyRequestSigned, OpenApiDocument)

# Components whose further fields are open-ended: name -> ``additionalProperties``.
OPEN: dict[str, dict[str, Any]] = {
    "OpenApiInfo": {"type": ["string", "object"]},
    "OpenApiDocument": {"type": ["object", "array"]},
}
