"""OpenAPI paths of the e-mail confirmation, data-subject request, incident, policy-change and support
routes (merged into both documents by ``engine.http.openapi``). Request bodies are references to the
msgspec types that decode them (:mod:`engine.http.customer_schemas`, :mod:`engine.http.control_schemas`);
the answers to the types that describe them (:mod:`engine.http.control_privacy_answers`,
:mod:`engine.http.customer_answers`; the challenge's is written here by hand)."""

from __future__ import annotations

from typing import Any

from engine.http import control_privacy_answers as pa
from engine.http import control_schemas as cs
from engine.http import customer_answers as answers
from engine.http import customer_schemas
from engine.http.openapi import B, S, _obj, _op, _ref

N = {"type": "number"}
TOKEN = [{"name": "token", "in": "query", "required": True, "schema": S}]


def _optional_body(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` whose request body may be left out (its fields' defaults apply)."""
    op["requestBody"]["required"] = False
    return op


def customer_paths() -> dict[str, Any]:
    return {
        "/v1/email/confirm": {"get": _op("The confirmation mail's link: confirms the address", "200",
                                         security=False, errors=("401",), extra_params=TOKEN,
                                         ok_schema=_ref(answers.EmailConfirmed))},
        "/v1/email/confirmation": {"post": _op("Mail a new confirmation link (sent false, delivery "
                                               "not_delivered: no mail server is configured)", "202",
                                               ok_schema=_ref(answers.ConfirmationQueued))},
        "/v1/privacy/requests": {"post": _op(
            "A data-subject request by e-mail: a verification link goes to the address of record "
            "(the same answer whether or not the address is an account's)",
            "202", body=_ref(customer_schemas.PrivacyEmailRequest), security=False,
            ok_schema=_ref(answers.PrivacyRequestReceived))},
        "/v1/privacy/verify": {"get": _op("The verification mail's link: the request is opened and "
                                          "its deadline mailed (mail: queued, or not_delivered "
                                          "without a mail server)",
                                          "200", security=False, errors=("401",),
                                          extra_params=TOKEN,
                                          ok_schema=_ref(answers.PrivacyRequestVerified))},
        "/v1/privacy/challenges": {"post": _op(
            "A single-use message for a depositing wallet to sign", "201", security=False,
            body=_ref(customer_schemas.PrivacyChallengeRequest), errors=("404",),
            ok_schema=_obj(["challenge_id", "message", "expires_at"], challenge_id=S, message=S,
                           expires_at=N))},
        "/v1/privacy/signed-requests": {"post": _op(
            "Open a verified request with a wallet signature (EIP-191 personal_sign or TronWeb "
            "signMessageV2) over the challenge; its deadline is mailed (mail: queued, or "
            "not_delivered without a mail server)", "201", security=False,
            body=_ref(customer_schemas.SignedPrivacyRequest), errors=("401",),
            ok_schema=_ref(answers.PrivacyRequestSigned))},
    }


def control_paths() -> dict[str, Any]:
    o = _op
    overdue = [{"name": "overdue", "in": "query", "required": False, "schema": B}]
    return {
        "/v1/dsar": {
            "get": o("Data-subject requests with deadlines (overdue=true: only overdue)", "200",
                     extra_params=overdue, ok_schema=_ref(pa.DsarList)),
            "post": o("Register a request received at privacy@ (the holder verifies by link: mail "
                      "says what became of it; 409 for a swept account, which has no address: use "
                      "/v1/dsar/challenges)",
                      "201", body=_ref(cs.DsarOpen), errors=("400", "403", "404", "409"),
                      ok_schema=_ref(pa.DsarMailed)),
        },
        "/v1/dsar/challenges": {"post": o(
            "A single-use message for a depositing wallet to sign, for a holder who wrote to privacy@ "
            "(the only way for the former holder of an account swept after closure)", "201",
            body=_ref(cs.DsarChallenge), errors=("400", "403", "404"),
            ok_schema=_obj(["challenge_id", "message", "expires_at"], challenge_id=S, message=S,
                           expires_at=N))},
        "/v1/dsar/signed-requests": {"post": o(
            "Open a verified request in the operator's name with the holder's wallet signature over "
            "the challenge (mail: the holder's notice of it; null for a former account)", "201",
            body=_ref(cs.DsarSignedRequest), errors=("400", "401", "403"),
            ok_schema=_ref(pa.DsarMailed))},
        "/v1/dsar/{id}": {"get": o("One request", "200", params=("id",), errors=("403", "404"),
                                    ok_schema=_ref(pa.DsarView))},
        "/v1/dsar/{id}/extend": {"post": o("Extend the deadline once by 60 days (mails the holder; "
                                           "mail says what became of it)",
                                           "200", params=("id",), body=_ref(cs.DsarExtension),
                                           errors=("403", "404", "409"),
                                           ok_schema=_ref(pa.DsarMailed))},
        "/v1/dsar/{id}/fulfil": {"post": o(
            "Carry the request out through the matching right and close it (mails the holder; mail "
            "says what became of it, null when none went)", "200", params=("id",),
            body=_ref(cs.DsarFulfilment), errors=("403", "404", "409"),
            ok_schema=_ref(pa.DsarFulfilled))},
        "/v1/dsar/{id}/refuse": {"post": o("Refuse (with the reason mailed to the holder; mail says "
                                           "what became of it)", "200",
                                           params=("id",), body=_ref(cs.DsarRefusal),
                                           errors=("403", "404", "409"),
                                           ok_schema=_ref(pa.DsarMailed))},
        "/v1/incidents": {
            "get": o("Incidents with the 72-hour authority deadline", "200",
                     ok_schema=_ref(pa.IncidentList)),
            "post": o("Open an incident", "201", errors=("403", "404"),
                      body=_ref(cs.IncidentOpen), ok_schema=_ref(pa.IncidentView))},
        "/v1/incidents/{id}/authority-notified": {"post": o(
            "Record the supervisory authority's notification", "200", params=("id",),
            body=_ref(cs.AuthorityNotification), errors=("403", "404", "409"),
            ok_schema=_ref(pa.IncidentRecord))},
        "/v1/incidents/{id}/notify-customers": {"post": _optional_body(o(
            "Mail the incident notice to every affected account holder who has none yet: a retried "
            "call mails nobody twice (notices_queued by this call, already_notified not mailed "
            "again; resend_failed: true also mails again those whose notice was not delivered or "
            "unsent). Counts are per holder: customers_notified the mail server accepted, "
            "customers_queued, customers_not_delivered and customers_unsent the others",
            "200", params=("id",), body=_ref(cs.IncidentNotice),
            errors=("400", "403", "404"), ok_schema=_ref(pa.IncidentNotified)))},
        "/v1/incidents/{id}/close": {"post": o("Close an incident", "200", params=("id",),
                                               errors=("403", "404", "409"),
                                               ok_schema=_ref(pa.IncidentRecord))},
        "/v1/policy-changes": {"post": o(
            "Mail every account a privacy-policy change (effective at least 30 days later; mail "
            "says what became of the notices)", "201",
            body=_ref(cs.PolicyChange), errors=("403", "422"),
            ok_schema=_ref(pa.PolicyChangeAnswer))},
        "/v1/support/cases": {
            "get": o("Support cases (kept until resolution + 1 year)", "200",
                     ok_schema=_ref(pa.SupportCaseList)),
            "post": o("Open a support case", "201", errors=("403",),
                      body=_ref(cs.CaseOpen), ok_schema=_ref(pa.SupportCaseView))},
        "/v1/support/cases/{id}": {"get": o("One support case", "200", params=("id",),
                                            errors=("403", "404"),
                                            ok_schema=_ref(pa.SupportCaseView))},
        "/v1/support/cases/{id}/messages": {"post": o(
            "Add a message (in: from the customer, out: from us)", "201", params=("id",),
            body=_ref(cs.CaseMessage), errors=("403", "404", "409"),
            ok_schema=_ref(pa.SupportCaseView))},
        "/v1/support/cases/{id}/resolve": {"post": o("Resolve a case (its year of retention starts)",
                                                     "200", params=("id",),
                                                     errors=("403", "404", "409"),
                                                     ok_schema=_ref(pa.SupportCaseView))},
        "/v1/accounts/{id}/confirmation": {"post": o("Mail the account a new confirmation link (sent false, "
                                                     "delivery not_delivered: no mail server)",
                                                     "202", params=("id",), errors=("403", "404"),
                                                     ok_schema=_ref(pa.ConfirmationSent))},
    }

