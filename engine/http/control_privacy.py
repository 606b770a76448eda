"""Control-port routes for policy 7.5, 9, 13 and 2.1: data-subject requests, incidents, policy-change
notices and support cases.

A holder with no address of record (the former holder of an account swept 90 days after closure) opens a
data-subject request through staff: ``POST /v1/dsar/challenges`` gives a message for a wallet that
deposited to the account to sign, ``POST /v1/dsar/signed-requests`` opens the verified request
(``engine.privacy.requests``).

Data-subject requests, incidents and policy changes are the ``privacy`` role's; support cases also the
``operator``'s (support staff). Every step names the operator (the token's name) as its actor in the
engine's audit log, besides the control port's own audit of every request.

A step that mails account holders says what became of the mail (``mail``: ``engine.mail.delivery``,
null when none went), as the confirmation routes do: the data-subject request steps, an incident's
customer notice and a policy change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiohttp import web

from engine.http import control_schemas as cs
from engine.http.context import CTX, OPERATOR, HttpContext
from engine.http.control_schemas import read_body_as
from engine.http.errors import HttpError
from engine.http.jsonio import json_response
from engine.http.params import query_value
from engine.mail.delivery import delivery

OP, P = "operator", "privacy"
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/v1/dsar"): frozenset({P}),
    ("POST", "/v1/dsar"): frozenset({P}),
    ("POST", "/v1/dsar/challenges"): frozenset({P}),
    ("POST", "/v1/dsar/signed-requests"): frozenset({P}),
    ("GET", "/v1/dsar/{id}"): frozenset({P}),
    ("POST", "/v1/dsar/{id}/extend"): frozenset({P}),
    ("POST", "/v1/dsar/{id}/fulfil"): frozenset({P}),
    ("POST", "/v1/dsar/{id}/refuse"): frozenset({P}),
    ("GET", "/v1/incidents"): frozenset({P}),
    ("POST", "/v1/incidents"): frozenset({P}),
    ("POST", "/v1/incidents/{id}/authority-notified"): frozenset({P}),
    ("POST", "/v1/incidents/{id}/notify-customers"): frozenset({P}),
    ("POST", "/v1/incidents/{id}/close"): frozenset({P}),
    ("POST", "/v1/policy-changes"): frozenset({P}),
    ("GET", "/v1/support/cases"): frozenset({OP, P}),
    ("POST", "/v1/support/cases"): frozenset({OP, P}),
    ("GET", "/v1/support/cases/{id}"): frozenset({OP, P}),
    ("POST", "/v1/support/cases/{id}/messages"): frozenset({OP, P}),
    ("POST", "/v1/support/cases/{id}/resolve"): frozenset({OP, P}),
    ("POST", "/v1/accounts/{id}/confirmation"): frozenset({OP}),
}

def _privacy(ctx: HttpContext) -> Any:
    privacy = getattr(ctx.engine, "privacy", None)
    if privacy is None:
        raise HttpError(503, "not_available", "this engine has no privacy services",
                        {"Retry-After": "60"})
    return privacy


def _plain(value: Any) -> Any:
    if hasattr(value, "public"):  # a data-subject request, a support case: not their sealed blobs
        return value.public()
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


async def _answer(request: web.Request, fn, status: int = 200) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    return json_response(_plain(await ctx.call(fn)), status=status)


async def _mailing_answer(request: web.Request, fn, status: int = 200) -> web.Response:
    """:func:`_answer` of a data-subject request step that may mail the holder (``fn(mailed)``), with
    ``mail``: what became of that mail, null when none went."""
    ctx: HttpContext = request.app[CTX]
    mails: list[str] = []
    answer = _plain(await ctx.call(lambda: fn(mails.append)))
    return json_response({**answer, "mail": delivery(ctx.engine.notices.delivers) if mails else None},
                         status=status)


# --- data-subject requests ---------------------------------------------------------------------


async def list_dsar(request: web.Request) -> web.Response:
    desk = _privacy(request.app[CTX]).requests
    overdue = query_value(request, "overdue", "") in ("1", "true", "yes")
    return await _answer(request, lambda: {"requests": desk.list(overdue_only=overdue)})


async def open_dsar(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.DsarOpen)
    desk = _privacy(request.app[CTX]).requests
    return await _mailing_answer(request, lambda mailed: desk.register(
        body.account_id, body.type, actor=request[OPERATOR], mailed=mailed), 201)


async def dsar_challenge(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.DsarChallenge)
    desk = _privacy(request.app[CTX]).requests
    ctx: HttpContext = request.app[CTX]
    issued = await ctx.call(lambda: desk.staff_challenge(body.account_id, body.type))
    return json_response({"challenge_id": issued.challenge_id, "message": issued.message,
                          "expires_at": issued.expires_at}, status=201)


async def signed_dsar(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.DsarSignedRequest)
    desk = _privacy(request.app[CTX]).requests
    return await _mailing_answer(request, lambda mailed: desk.open_for_holder(
        body.challenge_id, body.scheme, body.signature, actor=request[OPERATOR], mailed=mailed), 201)


async def get_dsar(request: web.Request) -> web.Response:
    desk = _privacy(request.app[CTX]).requests
    return await _answer(request, lambda: desk.get(request.match_info["id"]))


async def extend_dsar(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.DsarExtension)
    desk = _privacy(request.app[CTX]).requests
    return await _mailing_answer(request, lambda mailed: desk.extend(
        request.match_info["id"], body.reason, actor=request[OPERATOR], mailed=mailed))


async def fulfil_dsar(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.DsarFulfilment)
    desk = _privacy(request.app[CTX]).requests
    return await _mailing_answer(request, lambda mailed: desk.fulfil(
        request.match_info["id"], actor=request[OPERATOR], email=body.email, purpose=body.purpose,
        mailed=mailed))


async def refuse_dsar(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.DsarRefusal)
    desk = _privacy(request.app[CTX]).requests
    return await _mailing_answer(request, lambda mailed: desk.refuse(
        request.match_info["id"], body.reason, actor=request[OPERATOR], mailed=mailed))


# --- incidents ---------------------------------------------------------------------------------


async def list_incidents(request: web.Request) -> web.Response:
    desk = _privacy(request.app[CTX]).incidents
    return await _answer(request, lambda: {"incidents": desk.list()})


async def open_incident(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.IncidentOpen)
    desk = _privacy(request.app[CTX]).incidents
    ctx: HttpContext = request.app[CTX]
    incident = await ctx.call(lambda: desk.open(body.summary, body.detected_at, body.accounts,
                                                actor=request[OPERATOR]))
    return json_response(incident.view(incident.opened_at), status=201)


async def authority_notified(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.AuthorityNotification)
    desk = _privacy(request.app[CTX]).incidents
    return await _answer(request, lambda: desk.authority_notified(
        request.match_info["id"], at=body.at, reference=body.reference, actor=request[OPERATOR]))


async def notify_customers(request: web.Request) -> web.Response:
    """Each affected holder is mailed once however often this is called (a retry mails nobody twice);
    the optional body ``{"resend_failed": true}`` also mails again those whose notice failed."""
    body = (await read_body_as(request, cs.IncidentNotice) if request.body_exists
            else cs.IncidentNotice())
    desk = _privacy(request.app[CTX]).incidents
    return await _answer(request, lambda: desk.notify_customers(
        request.match_info["id"], actor=request[OPERATOR], resend_failed=body.resend_failed))


async def close_incident(request: web.Request) -> web.Response:
    desk = _privacy(request.app[CTX]).incidents
    return await _answer(request, lambda: desk.close(request.match_info["id"],
                                                     actor=request[OPERATOR]))


# --- policy changes, confirmation --------------------------------------------------------------


async def policy_change(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.PolicyChange)
    engine = request.app[CTX].engine
    return await _answer(request, lambda: engine.announce_policy_change(
        body.effective_at, body.summary, actor=request[OPERATOR]), 201)


async def resend_confirmation(request: web.Request) -> web.Response:
    engine = request.app[CTX].engine
    account_id = request.match_info["id"]
    outcome = await request.app[CTX].call(engine.resend_confirmation, account_id)
    return json_response({"id": account_id, **outcome}, status=202)


# --- support cases -----------------------------------------------------------------------------


async def list_cases(request: web.Request) -> web.Response:
    cases = _privacy(request.app[CTX]).support
    return await _answer(request, lambda: {"cases": [c.public() for c in cases.all()]})


async def open_case(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.CaseOpen)
    cases = _privacy(request.app[CTX]).support
    return await _answer(request, lambda: cases.open(
        body.subject, body.text, opened_by=request[OPERATOR], account_id=body.account_id or ""), 201)


async def get_case(request: web.Request) -> web.Response:
    cases = _privacy(request.app[CTX]).support
    return await _answer(request, lambda: cases.get(request.match_info["id"]))


async def add_case_message(request: web.Request) -> web.Response:
    body = await read_body_as(request, cs.CaseMessage)
    cases = _privacy(request.app[CTX]).support
    return await _answer(request, lambda: cases.add_message(
        request.match_info["id"], body.direction, body.text, request[OPERATOR]), 201)


async def resolve_case(request: web.Request) -> web.Response:
    cases = _privacy(request.app[CTX]).support
    return await _answer(request, lambda: cases.resolve(request.match_info["id"]))


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/v1/dsar", list_dsar, allow_head=False)
    r.add_post("/v1/dsar", open_dsar)
    r.add_post("/v1/dsar/challenges", dsar_challenge)
    r.add_post("/v1/dsar/signed-requests", signed_dsar)
    r.add_get("/v1/dsar/{id}", get_dsar, allow_head=False)
    r.add_post("/v1/dsar/{id}/extend", extend_dsar)
    r.add_post("/v1/dsar/{id}/fulfil", fulfil_dsar)
    r.add_post("/v1/dsar/{id}/refuse", refuse_dsar)
    r.add_get("/v1/incidents", list_incidents, allow_head=False)
    r.add_post("/v1/incidents", open_incident)
    r.add_post("/v1/incidents/{id}/authority-notified", authority_notified)
    r.add_post("/v1/incidents/{id}/notify-customers", notify_customers)
    r.add_post("/v1/incidents/{id}/close", close_incident)
    r.add_post("/v1/policy-changes", policy_change)
    r.add_get("/v1/support/cases", list_cases, allow_head=False)
    r.add_post("/v1/support/cases", open_case)
    r.add_get("/v1/support/cases/{id}", get_case, allow_head=False)
    r.add_post("/v1/support/cases/{id}/messages", add_case_message)
    r.add_post("/v1/support/cases/{id}/resolve", resolve_case)
    r.add_post("/v1/accounts/{id}/confirmation", resend_confirmation)
