"""The customer API (``/v1`` on the customer port): submit, status, balance, senders, webhook settings,
API keys, debugging windows. A restricted account may read (status, balance, keys) but not send or change
settings (403 ``account_restricted``, decided by the engine); it may still revoke a key and close a
debugging window, which only reduce what is processed. A closed account's keys are refused everywhere (401).

Every handler answers JSON; every refusal is the one error shape (:mod:`engine.http.errors`). The API key
arrives as ``Authorization: Bearer``; :mod:`engine.http.middleware` resolves it and rate-limits per key.
``POST /v1/messages`` answers 202 only after the engine reports the message durable, and honours
``Idempotency-Key`` (:mod:`engine.http.idempotency`). Message bodies are never logged or stored here.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from engine.errors import SmsrouteError, StorageError
from engine.http import customer_privacy, openapi
from engine.http.context import (
    API_KEY,
    APP_NAME,
    BODY_TIMEOUT,
    CTX,
    LOG_REQUESTS,
    MAX_BODY,
    HttpContext,
)
from engine.http.errors import HttpError, error_middleware
from engine.http.idempotency import StoredAnswer, check_key, request_hash
from engine.http.jsonio import (
    DEFAULT_BODY_TIMEOUT_S,
    Field,
    json_response,
    parse_json,
    read_body,
    read_json,
)
from engine.http.middleware import customer_auth_middleware, frame_middleware, require_account
from engine.http.params import path_ids_middleware

log = logging.getLogger(__name__)

STATUSES = ("accepted", "delivered", "rejected", "failed", "expired")
MAX_VALIDITY_SECONDS = 86400

MESSAGE_SCHEMA = {
    "to": Field((str,)),
    "from": Field((str,)),
    "body": Field((str,)),
    "callback_url": Field((str,), required=False, nullable=True),
    "validity_seconds": Field((int,), required=False, nullable=True),
}
DEBUG_WINDOW_SCHEMA = {"hours": Field((int, float)), "reason": Field((str,), required=False)}
SENDER_SCHEMA = {"sender": Field((str,))}
WEBHOOK_SCHEMA = {
    "url": Field((str,), nullable=True),
    "receipt_statuses": Field((list,), required=False, nullable=True),
}


def check_statuses(value: object) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(s, str) and s in STATUSES for s in value):
        raise HttpError(422, "invalid_receipt_statuses",
                        f"receipt_statuses must be a list of {', '.join(STATUSES)}")
    return sorted(set(value), key=STATUSES.index)


async def _submit_args(ctx: HttpContext, data: dict) -> tuple[str, str, str, int | None, str | None]:
    validity = data.get("validity_seconds")
    if validity is not None and not 1 <= validity <= MAX_VALIDITY_SECONDS:
        raise HttpError(422, "invalid_validity",
                        f"validity_seconds must be between 1 and {MAX_VALIDITY_SECONDS}")
    callback = data.get("callback_url")
    if callback is not None:  # refused now (422) rather than silently dropped at delivery
        await ctx.destinations.check(callback, "callback_url")
    return data["to"], data["from"], data["body"], validity, callback


async def post_message(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    raw = await read_body(request)
    idem = request.headers.get("Idempotency-Key")
    body_hash = request_hash(raw, ctx.idempotency_secret)
    if idem is not None:
        stored = ctx.idempotency.lookup(account_id, check_key(idem), body_hash)
        if stored is not None:
            resp = web.Response(status=stored.status, body=stored.body,
                                content_type="application/json")
            resp.headers["Idempotent-Replayed"] = "true"
            return resp
    to, sender, body, validity, callback = await _submit_args(ctx, parse_json(raw, MESSAGE_SCHEMA))
    if idem is None:
        return await _submit(ctx, request[API_KEY], to, sender, body, validity, callback)
    ctx.idempotency.begin(account_id, idem, body_hash)
    try:
        return await _submit_once(ctx, request[API_KEY], account_id, idem, body_hash,
                                  (to, sender, body, validity, callback))
    finally:
        ctx.idempotency.end(account_id, idem)


async def _submit_once(ctx: HttpContext, api_key: str, account_id: str, idem: str,
                       body_hash: bytes, args: tuple) -> web.Response:
    """Submit under an idempotency key: pending record, submit, then the stored answer."""
    await ctx.idempotency.reserve(account_id, idem, body_hash, time.time())
    try:
        resp = await _submit(ctx, api_key, *args)
    except SmsrouteError:  # refused or not durable: nothing was sent, a retry re-evaluates
        try:
            await ctx.idempotency.abandon(account_id, idem)
        except StorageError:
            log.error("pending idempotency record not deleted")
        raise
    try:
        await ctx.idempotency.store(account_id, idem,
                                    StoredAnswer(body_hash, resp.status, resp.body, time.time()))
    except StorageError:  # the message is accepted: say so; a retry will get 409 outcome unknown
        log.error("idempotency answer not stored")
    return resp


async def _submit(ctx: HttpContext, api_key: str, to: str, sender: str, body: str,
                  validity: int | None, callback: str | None) -> web.Response:
    started = time.perf_counter()
    accepted = await ctx.engine.submit_async(api_key, to, sender, body,
                                             validity_seconds=validity, callback_url=callback)
    answer = {
        "id": accepted.message_id,
        "status": accepted.status,
        "segments": accepted.segments,
        "price_micro_usd": accepted.price_micro_usd,
        "encoding": accepted.encoding,
        "pop": accepted.pop,
    }
    ctx.metrics.observe_submit(accepted.pop, getattr(accepted, "country", ""),
                               time.perf_counter() - started)
    return json_response(answer, status=202)


async def get_message(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    record = ctx.engine.status(request.match_info["id"])
    if record is None or record.account_id != account_id:  # another account's id looks absent
        raise HttpError(404, "not_found", "no such message")
    data = dict(record.to_dict())
    data.pop("account_id", None)
    data.pop("body", None)
    return json_response(data)


async def get_balance(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    micro = await ctx.call(ctx.engine.balance, account_id)
    return json_response({"balance_micro_usd": micro, "currency": "USD"})


async def post_sender(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    data = await read_json(request, SENDER_SCHEMA)
    await ctx.call(ctx.engine.register_sender, account_id, data["sender"])
    return json_response({"sender": data["sender"]}, status=201)


async def put_webhook(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    data = await read_json(request, WEBHOOK_SCHEMA)
    url = None if data["url"] is None else await ctx.destinations.check(data["url"], "url")
    statuses = check_statuses(data.get("receipt_statuses"))
    await ctx.call(ctx.engine.set_webhook, account_id, url, statuses)
    _forget(ctx, account_id)
    return json_response({"url": url, "receipt_statuses": statuses})


async def rotate_webhook_secret(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    secret = await ctx.call(ctx.engine.rotate_webhook_secret, account_id)
    _forget(ctx, account_id)
    return json_response({"secret": secret}, status=201)


async def open_debug_window(request: web.Request) -> web.Response:
    """Policy 2.3(b): the customer opts in to keeping their own bodies for a bounded debugging window."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    data = await read_json(request, DEBUG_WINDOW_SCHEMA)
    hours = data["hours"]
    if not isinstance(hours, int | float) or isinstance(hours, bool) or not 0 < hours <= 168:
        raise HttpError(422, "invalid_window", "hours must be more than 0 and at most 168 (7 days)")
    reason = data.get("reason") or "customer opt-in: extended-retention debugging"

    def place() -> dict:
        return ctx.engine.place_hold(
            "debug_window", actor=f"customer:{account_id}", reason=reason[:200],
            reference="customer-opt-in", until=time.time() + hours * 3600, account_id=account_id)

    placed = await ctx.call(place)
    until = max(h["until"] for h in placed["holds"])
    return json_response({"until": until, "hold_ids": [h["hold_id"] for h in placed["holds"]]},
                         status=201)


async def close_debug_window(request: web.Request) -> web.Response:
    """End the account's debugging windows now: every body kept for them is shredded."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)

    def release() -> int:
        ended = 0
        for hold in ctx.engine.active_holds():
            if hold["kind"] == "debug_window" and hold["account_id"] == account_id:
                ctx.engine.release_hold(hold["hold_id"], actor=f"customer:{account_id}",
                                        reason="customer closed the window")
                ended += 1
        return ended

    return json_response({"closed": await ctx.call(release)})


async def create_key(request: web.Request) -> web.Response:
    """A further API key: ``{id, api_key, hint}``, the key shown this once."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    new = await ctx.call(lambda: ctx.engine.create_api_key(account_id,
                                                           actor=f"customer:{account_id}"))
    return json_response({"id": new.id, "api_key": new.api_key, "hint": new.hint}, status=201)


async def list_keys(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    return json_response({"keys": await ctx.call(ctx.engine.api_keys, account_id)})


async def revoke_key(request: web.Request) -> web.Response:
    """Revoke a key now (also the one making this request); never the account's last key (409)."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    key_id = request.match_info["id"]
    return json_response(await ctx.call(lambda: ctx.engine.revoke_api_key(
        account_id, key_id, actor=f"customer:{account_id}", keep_last=True)))


def _forget(ctx: HttpContext, account_id: str) -> None:
    if ctx.notifier is not None:
        ctx.notifier.forget(account_id)


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi.customer_document())


def build_customer_app(ctx: HttpContext) -> web.Application:
    """The customer API application (body limit enforced by aiohttp's ``client_max_size``)."""
    app = web.Application(
        client_max_size=ctx.http.max_body_bytes,
        middlewares=[frame_middleware, customer_auth_middleware, error_middleware,
                     path_ids_middleware],
    )
    app[CTX] = ctx
    app[APP_NAME] = "customer"
    app[LOG_REQUESTS] = True
    app[MAX_BODY] = ctx.http.max_body_bytes
    app[BODY_TIMEOUT] = float(getattr(ctx.http, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_S))
    r = app.router
    r.add_post("/v1/messages", post_message)
    r.add_get("/v1/messages/{id}", get_message, allow_head=False)
    r.add_get("/v1/balance", get_balance, allow_head=False)
    r.add_post("/v1/senders", post_sender)
    r.add_put("/v1/webhook", put_webhook)
    r.add_post("/v1/webhook/secret", rotate_webhook_secret)
    r.add_post("/v1/debug-window", open_debug_window)
    r.add_delete("/v1/debug-window", close_debug_window)
    r.add_post("/v1/keys", create_key)
    r.add_get("/v1/keys", list_keys, allow_head=False)
    r.add_delete("/v1/keys/{id}", revoke_key)
    r.add_get("/v1/openapi.json", get_openapi, allow_head=False)
    customer_privacy.add_routes(r)
    return app
