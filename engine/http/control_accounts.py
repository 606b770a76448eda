"""Control-port routes for accounts, retention exceptions (legal holds), retention status, audit, tokens.

Accounts: create (the API key and the webhook signing secret are in the answer once and nowhere else;
``mail`` says what became of the confirmation link, as rectify's for a new address: ``engine.mail.delivery``),
API keys (create, list, revoke), deposits, senders (register; remove, a rectification), restrict, close. Operator tokens: create, list, revoke.
Data-subject rights (policy section 7, the ``privacy`` role): export (access and portability), rectify,
erase (ledger rows pseudonymised, kept 7 years), and objection to analytics. Restriction is ``restrict``.
Holds and retention go through engine methods (``active_holds``, ``place_hold``, ``release_hold``,
``retention_status``); an engine without them answers 503 ``not_available``. The operator's token name is
passed as the ``actor`` of every hold change, so the storage audit trail names who did it. Placing a hold
takes an ``Idempotency-Key`` (checked as on the customer API): 201 placed, 200 with
``Idempotent-Replayed: true`` for the same request again (nothing placed), 409 ``hold_conflict`` for the
key with other content (``engine.holds``).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import web

from engine.audit_pages import entries_before, page_end
from engine.errors import UnknownSender
from engine.http import control_schemas as cs
from engine.http.context import CTX, OPERATOR, HttpContext
from engine.http.control_schemas import read_body_as
from engine.http.errors import HttpError
from engine.http.idempotency import key_of
from engine.http.jsonio import json_response
from engine.http.params import query_value
from engine.http.tokens import TokenNameError
from engine.mail.delivery import delivery

AUDIT_PAGE = 1000


def _engine_method(ctx: HttpContext, name: str) -> Any:
    method = getattr(ctx.engine, name, None)
    if method is None:
        raise HttpError(503, "not_available", f"this engine does not offer {name}",
                        {"Retry-After": "60"})
    return method


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


async def create_account(request: web.Request) -> web.Response:
    """A new account: its first API key and its webhook signing secret are in the answer, once."""
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.AccountCreate)
    new = await ctx.call(ctx.engine.create_account, body.email)
    # its confirmation link is always mailed (queued before the account exists): what became of it
    return json_response({"id": new.id, "api_key": new.api_key, "webhook_secret": new.webhook_secret,
                          "mail": delivery(ctx.engine.notices.delivers)}, status=201)


async def create_key(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = request.match_info["id"]
    new = await ctx.call(lambda: ctx.engine.create_api_key(account_id, actor=request[OPERATOR]))
    return json_response({"id": new.id, "api_key": new.api_key, "hint": new.hint}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    return json_response({"keys": await ctx.call(ctx.engine.api_keys, request.match_info["id"])})


async def revoke_key(request: web.Request) -> web.Response:
    """Revoke any key of the account, its last one too (e.g. a leaked key; create another after)."""
    ctx: HttpContext = request.app[CTX]
    account_id, key_id = request.match_info["id"], request.match_info["key_id"]
    return json_response(await ctx.call(
        lambda: ctx.engine.revoke_api_key(account_id, key_id, actor=request[OPERATOR])))


async def get_account(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    record = await ctx.call(ctx.engine.account, request.match_info["id"])
    return json_response(record.public_view())


async def deposit(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.Deposit)
    balance = await ctx.call(ctx.engine.deposit, request.match_info["id"], body.usd,
                             body.chain, body.tx_hash, body.from_address)
    return json_response({"balance_micro_usd": balance}, status=201)


async def add_sender(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.SenderRegistration)
    await ctx.call(ctx.engine.register_sender, request.match_info["id"], body.sender)
    return json_response({"sender": body.sender}, status=201)


async def remove_sender(request: web.Request) -> web.Response:
    """Rectification (policy 7.1) asked of staff, e.g. by e-mail to privacy@: remove a wrong sender ID
    (it may be a person's name or number); submits from it are 403 ``unknown_sender`` from now on, 404
    ``unknown_sender`` if it is not registered. Audit-logged without the sender itself (the control
    trail leaves it out of the target, ``engine.http.control_audit``; the engine's entry never has it)."""
    ctx: HttpContext = request.app[CTX]
    account_id, sender = request.match_info["id"], request.match_info["sender"]
    try:
        await ctx.call(lambda: ctx.engine.remove_sender(account_id, sender, actor=request[OPERATOR]))
    except UnknownSender as exc:
        raise HttpError(404, exc.code, exc.message) from None
    return json_response({"sender": sender, "removed": True})


async def restrict(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.Restriction)
    await ctx.call(lambda: ctx.engine.restrict_account(request.match_info["id"], body.restricted,
                                                       actor=request[OPERATOR]))
    return json_response({"id": request.match_info["id"], "restricted": body.restricted})


async def close(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    await ctx.call(ctx.engine.close_account, request.match_info["id"])
    return json_response({"id": request.match_info["id"], "state": "closed"})


async def export_account(request: web.Request) -> web.Response:
    """Access and portability: everything held about the account, machine-readable, no secrets."""
    ctx: HttpContext = request.app[CTX]
    return json_response(await ctx.call(
        lambda: ctx.engine.export_account(request.match_info["id"], actor=request[OPERATOR])))


async def rectify(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.Rectification)
    mail = await ctx.call(lambda: ctx.engine.rectify_account(request.match_info["id"],
                                                             email=body.email, actor=request[OPERATOR]))
    # a new address is mailed a confirmation link (what became of it); the same one nothing (null)
    return json_response({"id": request.match_info["id"], "rectified": ["email"], "mail": mail})


async def erase(request: web.Request) -> web.Response:
    """Erasure with the ledger carve-out: the answer says what was deleted and what pseudonymised."""
    ctx: HttpContext = request.app[CTX]
    return json_response(await ctx.call(
        lambda: ctx.engine.erase_account(request.match_info["id"], actor=request[OPERATOR])))


async def object_to_processing(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.Objection)
    await ctx.call(lambda: ctx.engine.object_to_processing(request.match_info["id"], body.purpose,
                                                           body.objected, actor=request[OPERATOR]))
    return json_response({"id": request.match_info["id"], "purpose": body.purpose,
                          "objected": body.objected})


async def analytics(request: web.Request) -> web.Response:
    """De-identified corridor and carrier aggregates (no account, number or body)."""
    ctx: HttpContext = request.app[CTX]
    return json_response(await ctx.call(ctx.engine.analytics))


async def retention(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    status = await ctx.call(_engine_method(ctx, "retention_status"))
    return json_response(_plain(status))


async def list_holds(request: web.Request) -> web.Response:
    """Every active hold; in a cluster, the workers that did not answer in time in ``holds_missing``."""
    ctx: HttpContext = request.app[CTX]
    view = await ctx.call(_engine_method(ctx, "holds_view"))
    return json_response({**view, "holds": _plain(list(view["holds"]))})


async def place_hold(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    key = key_of(request.headers)
    body = await read_body_as(request, cs.HoldRequest)  # id shapes included (400 invalid_id)
    if body.kind == "debug_window":  # policy 2.3(b): only the customer opts in (POST /v1/debug-window)
        raise HttpError(403, "forbidden", "a debugging window is the customer's own opt-in "
                        "(customer API: POST /v1/debug-window); staff place legal holds and lawful orders")
    place = _engine_method(ctx, "place_hold")

    def call() -> Any:
        waiver = body.notice_not_permitted
        return place(body.kind, actor=request[OPERATOR], reason=body.reason,
                     reference=body.reference, until=body.until,
                     message_ids=body.message_ids, account_id=body.account_id,
                     idempotency_key=key, authority=body.authority,
                     notice_not_permitted=waiver and msgspec.structs.asdict(waiver))

    placed = _plain(await ctx.call(call))
    replayed = bool(placed.pop("replayed", False))
    resp = json_response(placed, status=200 if replayed else 201)
    if replayed:
        resp.headers["Idempotent-Replayed"] = "true"
    return resp


async def release_hold(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.HoldRelease)
    release = _engine_method(ctx, "release_hold")
    hold_id = request.match_info["id"]

    def call() -> Any:
        return release(hold_id, actor=request[OPERATOR], reason=body.reason)

    return json_response(_plain(await ctx.call(call)))


async def disclose(request: web.Request) -> web.Response:
    """One held body, read through the exception's own path (audit-logged). Under a lawful order it is
    refused (409 ``notice_pending`` / ``holder_not_notified``) until the account holder's notice was
    sent (a notice only logged, no mail server configured, is not), or recorded as not permitted (``engine.lawful_notice``). A hold that ended (released, expired)
    is 409 ``hold_ended``: the id is right but its copies are shredded, so asking again cannot help."""
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.Disclosure)
    read = _engine_method(ctx, "read_held_body")
    hold_id = request.match_info["id"]
    text = await ctx.call(lambda: read(hold_id, body.message_id, actor=request[OPERATOR]))
    return json_response({"hold_id": hold_id, "message_id": body.message_id, "body": text})


async def give_notice(request: web.Request) -> web.Response:
    """A stuck lawful order's notice given again, or its waiver recorded (``engine.lawful_notice``):
    for an order whose notice left the outbox unsent or that has none on record (placed by an older
    version); with no holder left, ``no_holders`` is recorded; 409 while a notice is queued or was
    sent, or after a waiver or ``no_holders``."""
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.OrderNoticeRequest)
    give = _engine_method(ctx, "give_notice_again")
    hold_id = request.match_info["id"]
    waiver = body.notice_not_permitted

    def call() -> Any:
        return give(hold_id, actor=request[OPERATOR], authority=body.authority,
                    notice_not_permitted=waiver and msgspec.structs.asdict(waiver))

    return json_response(_plain(await ctx.call(call)))


async def audit(request: web.Request) -> web.Response:
    """Every audit trail, oldest first: ``kind`` (repeatable or comma-separated: control, data_subject,
    retention_exception), ``since`` / ``until`` (unix seconds), ``limit`` (at most 1000), ``account``
    (an account id, also of an erased account: its pseudonym is computed) or ``subject`` (a pseudonym,
    ``psn_…``): only the entries about that account. While there are further entries, ``next_since``
    is where the next page starts: the instant of the first entry not on this page (a page ends
    before an instant it cannot hold whole, so paging repeats no entry: ``engine.audit_pages``). An
    entry about an account shows its pseudonym (``subject``) always and its id (``account_id``) while
    the account exists (``storage.audit``).
    In a cluster, ``workers_missing`` names the workers that did not answer within the stats deadline:
    their retention-exception entries are not in this page (a partial trail must say so)."""
    ctx: HttpContext = request.app[CTX]
    kinds = {k for value in request.query.getall("kind", []) for k in value.split(",") if k}
    since, until = _query_time(request, "since", 0.0), _query_time(request, "until", math.inf)
    try:
        limit = int(query_value(request, "limit", str(AUDIT_PAGE)))
    except ValueError:
        raise HttpError(400, "invalid_query", "limit must be an integer") from None
    if not 1 <= limit <= AUDIT_PAGE:
        raise HttpError(400, "invalid_query", f"limit must be between 1 and {AUDIT_PAGE}")
    trails = {"control": [ctx.audit] if ctx.audit is not None else []}
    trails.update(await ctx.call(_engine_method(ctx, "audit_trails")))
    if kinds - set(trails):
        raise HttpError(400, "invalid_query", f"kind is one of {', '.join(sorted(trails))}")
    wanted = {k: logs for k, logs in trails.items() if not kinds or k in kinds}
    about = await _audit_subject(ctx, request)
    entries = await ctx.call(audit_page, wanted, since, until, limit, about)
    shown, next_since = page_end(entries, limit, lambda e: e["ts"])
    answer: dict[str, Any] = {"entries": shown, "next_since": next_since}
    remote = [log for logs in wanted.values() for log in logs if hasattr(log, "missing")]
    if remote:  # a cluster's workers: those that did not answer in time, whose entries are not here
        answer["workers_missing"] = {node: why for log in remote for node, why in log.missing.items()}
    return json_response(answer)


def _query_time(request: web.Request, name: str, default: float) -> float:
    try:
        given = query_value(request, name)
        value = float(default if given is None else given)
    except ValueError:
        raise HttpError(400, "invalid_query", f"{name} must be a unix time") from None
    if math.isnan(value):
        raise HttpError(400, "invalid_query", f"{name} must be a unix time")
    return value


async def _audit_subject(ctx: HttpContext, request: web.Request) -> tuple[str, str] | None:
    """``(pseudonym, account id or "")`` of the ``account`` / ``subject`` query, or None for all."""
    account, subject = query_value(request, "account", ""), query_value(request, "subject", "")
    if account and subject:
        raise HttpError(400, "invalid_query", "give account or subject, not both")
    if subject:
        if not subject.startswith("psn_"):
            raise HttpError(400, "invalid_query", "subject is a pseudonym (psn_…)")
        return subject, ""
    if account:
        return await ctx.call(_engine_method(ctx, "account_pseudonym"), account), account
    return None


def audit_page(trails: dict[str, list[Any]], since: float, until: float, limit: int,
               about: tuple[str, str] | None = None) -> list[dict]:
    """Up to ``limit + 1`` entries of the given audit logs in ``[since, until)`` (only those about one
    account with ``about``), merged by time. Each log is in time order already, so this reads no
    further than the page; a cluster's workers (a log with ``page``) are asked for the page's size
    only (``engine.audit_pages``)."""
    def stream(kind: str, log: Any) -> Iterator[tuple[float, str, Any]]:
        read = log.page(since, until, limit + 1, about) if hasattr(log, "page") else (
            log.iter_entries(since))
        for entry in entries_before(read, until, about):
            yield entry.ts, kind, entry

    merged = heapq.merge(*(stream(kind, log) for kind, logs in trails.items() for log in logs),
                         key=lambda item: item[0])
    return [{"kind": kind, **_printable(entry._asdict())}
            for _, kind, entry in itertools.islice(merged, limit + 1)]


def _printable(value: Any) -> Any:
    """JSON-ready: a sealed value the trail could not open is shown as ``"sealed"``, never as bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "sealed"
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


async def create_token(request: web.Request) -> web.Response:
    """A new operator token; an operator can only grant roles it holds itself. Names are unique and
    the ``system:`` prefix is reserved (422 / 409). The name's and the roles' formats are the body
    type's (:class:`~engine.http.control_schemas.TokenRequest`); the store checks the name again."""
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.TokenRequest)
    roles = set(body.roles)
    mine = ctx.tokens.lookup(_token(request))
    if mine is None or not roles <= mine.roles:
        raise HttpError(403, "forbidden", "cannot grant a role you do not hold")
    try:
        token = await ctx.call(ctx.tokens.create, body.name, roles)
    except TokenNameError as exc:
        taken = "exists already" in str(exc)
        raise HttpError(409 if taken else 422, "token_name_taken" if taken else "invalid_token_name",
                        str(exc)) from None
    return json_response({"name": body.name, "roles": sorted(roles), "token": token}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    """Every operator token: name, roles, created, last use (never the token or its digest)."""
    ctx: HttpContext = request.app[CTX]
    tokens = await ctx.call(ctx.tokens.all)
    return json_response({"tokens": [{"name": t.name, "roles": sorted(t.roles),
                                      "created_at": t.created_at, "last_used_at": t.last_used_at}
                                     for t in tokens]})


async def revoke_token(request: web.Request) -> web.Response:
    """Revoke a token by name, from this request on; only a holder of all its roles may."""
    ctx: HttpContext = request.app[CTX]
    name = request.match_info["name"]
    target = next((t for t in await ctx.call(ctx.tokens.all) if t.name == name), None)
    if target is None:
        raise HttpError(404, "not_found", "no such token")
    mine = ctx.tokens.lookup(_token(request))
    if mine is None or not target.roles <= mine.roles:
        raise HttpError(403, "forbidden", "cannot revoke a token with a role you do not hold")
    if not await ctx.call(ctx.tokens.revoke_name, name):
        raise HttpError(404, "not_found", "no such token")
    return json_response({"name": name, "revoked": True})


def _token(request: web.Request) -> str:
    from engine.http.middleware import bearer

    return bearer(request) or ""


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_post("/v1/accounts", create_account)
    r.add_get("/v1/accounts/{id}", get_account, allow_head=False)
    r.add_post("/v1/accounts/{id}/deposits", deposit)
    r.add_post("/v1/accounts/{id}/senders", add_sender)
    r.add_delete("/v1/accounts/{id}/senders/{sender}", remove_sender)
    r.add_post("/v1/accounts/{id}/restrict", restrict)
    r.add_post("/v1/accounts/{id}/close", close)
    r.add_get("/v1/accounts/{id}/export", export_account, allow_head=False)
    r.add_post("/v1/accounts/{id}/rectify", rectify)
    r.add_post("/v1/accounts/{id}/erase", erase)
    r.add_post("/v1/accounts/{id}/objections", object_to_processing)
    r.add_get("/v1/analytics", analytics, allow_head=False)
    r.add_get("/v1/retention", retention, allow_head=False)
    r.add_get("/v1/holds", list_holds, allow_head=False)
    r.add_post("/v1/holds", place_hold)
    r.add_post("/v1/holds/{id}/release", release_hold)
    r.add_post("/v1/holds/{id}/disclosures", disclose)
    r.add_post("/v1/holds/{id}/notice", give_notice)
    r.add_get("/v1/audit", audit, allow_head=False)
    r.add_post("/v1/tokens", create_token)
    r.add_get("/v1/tokens", list_tokens, allow_head=False)
    r.add_delete("/v1/tokens/{name}", revoke_token)
    r.add_post("/v1/accounts/{id}/keys", create_key)
    r.add_get("/v1/accounts/{id}/keys", list_keys, allow_head=False)
    r.add_delete("/v1/accounts/{id}/keys/{key_id}", revoke_key)
