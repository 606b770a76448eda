"""The customer API (``/v1`` on the customer port): submit, status, balance, senders, webhook settings,
API keys, debugging windows. A restricted account may read (status, balance, keys) but not send or change
settings (403 ``account_restricted``, decided by the engine); it may still revoke a key, close a
debugging window and remove a sender ID, which only reduce what is processed. A closed account's keys are refused everywhere (401).

Every handler answers JSON; every refusal is the one error shape (:mod:`engine.http.errors`). The API key
arrives as ``Authorization: Bearer``; :func:`engine.http.middleware.customer_middleware` (the app's one
middleware) resolves it and rate-limits per key. The message routes are in
:mod:`engine.http.customer_messages`, billing and privacy in :mod:`engine.http.customer_billing` and
:mod:`engine.http.customer_privacy`; every request body is decoded by a msgspec type of
:mod:`engine.http.schemas` or :mod:`engine.http.customer_schemas`, from which the OpenAPI document is
generated. Message bodies are never logged or
stored here.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from engine.errors import UnknownSender
from engine.http import customer_billing, customer_messages, customer_privacy, openapi
from engine.http import schemas as s
from engine.http.context import APP_NAME, BODY_TIMEOUT, CTX, MAX_BODY, HttpContext
from engine.http.errors import HttpError
from engine.http.jsonio import DEFAULT_BODY_TIMEOUT_S, json_response, read_body
from engine.http.middleware import customer_middleware, require_account

log = logging.getLogger(__name__)

JSON = "application/json"


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON)


async def get_balance(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    micro = await ctx.call(ctx.engine.balance, account_id)
    threshold = await ctx.call(ctx.engine.billing.low_balance_threshold, account_id)
    return json_response({"balance_micro_usd": micro, "currency": "USD",
                          "low_balance_threshold_micro_usd": threshold})


async def post_sender(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    data = s.decode(await read_body(request), s.SenderRequest)
    await ctx.call(ctx.engine.register_sender, account_id, data.sender)
    return json_response({"sender": data.sender}, status=201)


async def delete_sender(request: web.Request) -> web.Response:
    """Rectification (policy 7.1): remove a sender ID; submits from it are 403 ``unknown_sender`` from
    now on. 404 ``unknown_sender`` if it is not registered. A restricted account may remove one."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    sender = request.match_info["sender"]
    try:
        await ctx.call(lambda: ctx.engine.remove_sender(account_id, sender,
                                                        actor=f"customer:{account_id}"))
    except UnknownSender as exc:
        raise HttpError(404, exc.code, exc.message) from None
    return json_response({"sender": sender, "removed": True})


async def put_webhook(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    data = s.decode(await read_body(request), s.WebhookRequest)
    url = None if data.url is None else await ctx.destinations.check(data.url, "url")
    statuses = None if data.receipt_statuses is None else sorted(
        set(data.receipt_statuses), key=s.STATUSES.index)
    batching = data.batching or s.WebhookBatching()

    def change() -> None:
        ctx.engine.set_webhook(account_id, url, statuses, batch_max=batching.max_events,
                               batch_wait_ms=batching.max_wait_ms)

    await ctx.call(change)
    _forget(ctx, account_id, url)
    return _json(s.encoder.encode(await _webhook_view(ctx, account_id)))


async def get_webhook(request: web.Request) -> web.Response:
    """The endpoint's settings and state: ``none`` (no URL), ``active``, or ``disabled`` after the
    endpoint answered ``410 Gone`` (a new ``PUT`` enables it again); the events waiting for it, and
    apart from them those waiting for the messages' own ``callback_url``s (not this endpoint's)."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    return _json(s.encoder.encode(await _webhook_view(ctx, account_id)))


async def _webhook_view(ctx: HttpContext, account_id: str) -> s.WebhookView:
    record = await ctx.call(ctx.engine.account, account_id)
    backlog, callbacks = ctx.feed.backlog_of(account_id) if ctx.feed is not None else (0, 0)
    batching = s.WebhookBatching(record.webhook_batch_max, record.webhook_batch_wait_ms)
    if record.webhook_url is None and record.webhook_disabled_url is not None:
        return s.WebhookView(record.webhook_disabled_url, "disabled", record.receipt_statuses,
                             batching, record.webhook_disabled_at,
                             "the endpoint answered 410 Gone", backlog, callbacks)
    state = "none" if record.webhook_url is None else "active"
    return s.WebhookView(record.webhook_url, state, record.receipt_statuses, batching, None, None,
                         backlog, callbacks)


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
    data = s.decode(await read_body(request), s.DebugWindowRequest)
    hours = data.hours
    reason = data.reason or "customer opt-in: extended-retention debugging"

    def place() -> dict:
        return ctx.engine.place_hold(
            "debug_window", actor=f"customer:{account_id}", reason=reason[:200],
            reference="customer-opt-in", until=time.time() + hours * 3600, account_id=account_id)

    placed = await ctx.call(place)
    until = max(h["until"] for h in placed["holds"])
    return json_response({"until": until, "hold_ids": [h["hold_id"] for h in placed["holds"]]},
                         status=201)


async def close_debug_window(request: web.Request) -> web.Response:
    """End the account's debugging windows now: every body kept for them is shredded. In a cluster a
    worker that does not answer within 2 s does not hold the answer: ``partial`` says a part of the
    engine did not answer, where a window may still be open (asking again is safe and ends it). The
    customer is not told which part (worker names are the operator's)."""
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    done = await ctx.call(lambda: ctx.engine.close_debug_windows(account_id,
                                                                 actor=f"customer:{account_id}"))
    return _json(s.encoder.encode(s.DebugWindowClosed(done["closed"],
                                                      bool(done.get("workers_missing")))))


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


def _forget(ctx: HttpContext, account_id: str, url: str | None = None) -> None:
    if ctx.notifier is not None:
        ctx.notifier.forget(account_id, url)


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi.customer_document())


def batch_body_limit(ctx: HttpContext) -> int:
    return int(getattr(ctx.http, "max_batch_body_bytes", ctx.http.max_body_bytes))


def build_customer_app(ctx: HttpContext) -> web.Application:
    """The customer API application (body limit enforced by aiohttp's ``client_max_size``)."""
    app = web.Application(client_max_size=max(ctx.http.max_body_bytes, batch_body_limit(ctx)),
                          middlewares=[customer_middleware])  # each route checks its own limit
    app[CTX] = ctx
    app[APP_NAME] = "customer"
    app[MAX_BODY] = ctx.http.max_body_bytes
    app[BODY_TIMEOUT] = float(getattr(ctx.http, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_S))
    r = app.router
    customer_messages.add_routes(r)
    r.add_get("/v1/balance", get_balance, allow_head=False)
    r.add_post("/v1/senders", post_sender)
    r.add_delete("/v1/senders/{sender}", delete_sender)
    r.add_get("/v1/webhook", get_webhook, allow_head=False)
    r.add_put("/v1/webhook", put_webhook)
    r.add_post("/v1/webhook/secret", rotate_webhook_secret)
    r.add_post("/v1/debug-window", open_debug_window)
    r.add_delete("/v1/debug-window", close_debug_window)
    r.add_post("/v1/keys", create_key)
    r.add_get("/v1/keys", list_keys, allow_head=False)
    r.add_delete("/v1/keys/{id}", revoke_key)
    r.add_get("/v1/openapi.json", get_openapi, allow_head=False)
    customer_privacy.add_routes(r)
    customer_billing.add_routes(r)  # usage export, low-balance threshold
    return app
