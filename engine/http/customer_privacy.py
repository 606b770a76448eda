"""Customer-port routes outside the message path: e-mail confirmation and data-subject requests.

* ``GET /v1/email/confirm?token=…`` — the link of the confirmation mail; confirms the address.
* ``POST /v1/email/confirmation`` (API key) — mail a new confirmation link; the answer says whether it
  was queued for the mail server or not delivered (no mail server: ``engine.mail.delivery``).
* ``POST /v1/privacy/requests`` ``{type, email}`` — a request by e-mail: a verification link goes to the
  address of record of each account with that address; the answer is the same whether or not one exists.
* ``GET /v1/privacy/verify?token=…`` — the link of that mail; the request is verified and its 30-day
  deadline mailed (``mail``: what became of that mail, ``engine.mail.delivery``).
* ``POST /v1/privacy/challenges`` ``{account_id, type}`` — a message to sign with a depositing wallet.
* ``POST /v1/privacy/signed-requests`` ``{challenge_id, scheme, signature}`` — opens a verified request
  and mails its deadline (``mail``, as for the link).

The unauthenticated ones are rate-limited per source address (and per account or address) by the request
desk (429 ``rate_limited``), on top of the API's per-IP limit. Tokens in query strings are never logged: the
request log keeps the route template only.

Bodies are decoded by their msgspec types (:mod:`engine.http.customer_schemas`), from which the OpenAPI
document is generated; a body in the wrong form is refused before it reaches the desk, so it never counts
against the rate limit. The signature's form is the exception (the desk reads it after taking the
challenge, so a malformed one uses the challenge up).
"""

from __future__ import annotations

from aiohttp import web

from engine.http import customer_schemas as cs
from engine.http.context import CTX, HttpContext
from engine.http.errors import HttpError
from engine.http.jsonio import json_response, read_body
from engine.http.middleware import require_account
from engine.http.params import query_value
from engine.http.schemas import decode
from engine.mail.delivery import delivery
from storage.outbox import NOT_DELIVERED, QUEUED


def _desk(ctx: HttpContext):
    privacy = getattr(ctx.engine, "privacy", None)
    if privacy is None:
        raise HttpError(503, "not_available", "this engine does not take data-subject requests",
                        {"Retry-After": "60"})
    return privacy.requests


def _token(request: web.Request) -> str:
    token = query_value(request, "token", "")
    if not token:
        raise HttpError(400, "missing_token", "the link has no token")
    return token


async def confirm_email(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = await ctx.call(ctx.engine.confirm_email, _token(request))
    return json_response({"account_id": account_id, "email_confirmed": True})


async def resend_confirmation(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    outcome = await ctx.call(ctx.engine.resend_confirmation, account_id)
    return json_response(outcome, status=202)


async def request_by_email(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = decode(await read_body(request), cs.PrivacyEmailRequest)
    desk = _desk(ctx)
    await ctx.call(lambda: desk.request_by_email(body.email, body.type,
                                                 source=request.remote or "unknown"))
    # the same answer whether or not the address is an account's: it depends on the settings only
    if ctx.engine.notices.delivers:
        return json_response({"status": "if the address is an account's, a verification link was "
                                        "queued for it", "delivery": QUEUED}, status=202)
    return json_response({"status": "no mail server is configured ([email] host): no verification "
                                    "link is delivered, whether or not the address is an account's",
                          "delivery": NOT_DELIVERED}, status=202)


def _mail_outcome(ctx: HttpContext, mails: list[str]) -> dict | None:
    """What became of the mail a step queued to the holder (``engine.mail.delivery``); None when none
    went (the account was erased meanwhile)."""
    return delivery(ctx.engine.notices.delivers) if mails else None


async def verify_request(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    desk = _desk(ctx)
    token = _token(request)
    mails: list[str] = []
    record = await ctx.call(lambda: desk.verify_link(token, mailed=mails.append))
    return json_response({"id": record.id, "type": record.type, "status": record.status,
                          "deadline": record.deadline, "mail": _mail_outcome(ctx, mails)})


async def challenge(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = decode(await read_body(request), cs.PrivacyChallengeRequest)
    desk = _desk(ctx)
    issued = await ctx.call(lambda: desk.challenge(body.account_id, body.type,
                                                   source=request.remote or "unknown"))
    return json_response({"challenge_id": issued.challenge_id, "message": issued.message,
                          "expires_at": issued.expires_at}, status=201)


async def signed_request(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = decode(await read_body(request), cs.SignedPrivacyRequest)
    desk = _desk(ctx)
    mails: list[str] = []
    record = await ctx.call(lambda: desk.open_with_signature(
        body.challenge_id, body.scheme, body.signature, mailed=mails.append))
    return json_response({"id": record.id, "type": record.type, "status": record.status,
                          "verification": record.verification, "deadline": record.deadline,
                          "mail": _mail_outcome(ctx, mails)}, status=201)


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/v1/email/confirm", confirm_email, allow_head=False)
    r.add_post("/v1/email/confirmation", resend_confirmation)
    r.add_post("/v1/privacy/requests", request_by_email)
    r.add_get("/v1/privacy/verify", verify_request, allow_head=False)
    r.add_post("/v1/privacy/challenges", challenge)
    r.add_post("/v1/privacy/signed-requests", signed_request)
