"""The operator control port: health, metrics, carriers, routing, accounts, holds, retention, ledger.

Operators authenticate with bearer tokens (:mod:`engine.http.tokens`); each route names the roles that may
call it (:data:`ROUTE_ROLES`, checked by :func:`control_auth_middleware` before the handler runs, and
tested route by route). ``/healthz``, ``/readyz`` and the OpenAPI document need no token. A source address
with too many failed authentications (``[http] control_auth_failures_per_minute``) is answered 429 until
its budget refills. Every request — allowed, refused or failed — is written to the append-only audit log
(who, what, when, result), and one that may change something is written there before it acts
(:mod:`engine.http.control_audit`). Hold ids are audit targets, and accounts are, by their pseudonym
(``id=psn_…``; the account id sealed under its data key, which erasure destroys: ``storage.audit``);
bodies, keys, tokens and sender IDs never are.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.errors import AuthError
from engine.http import control_billing, control_privacy, control_schemas, openapi
from engine.http.context import (
    APP_NAME,
    BODY_TIMEOUT,
    CTX,
    MAX_BODY,
    OPERATOR,
    HttpContext,
)
from engine.http.control_audit import audit_intent_middleware, audit_middleware
from engine.http.errors import HttpError, error_middleware
from engine.http.jsonio import DEFAULT_BODY_TIMEOUT_S, json_response
from engine.http.middleware import bearer, frame_middleware
from engine.http.params import path_ids_middleware
from engine.mail.delivery import delivery

log = logging.getLogger(__name__)

V, OP, P = "viewer", "operator", "privacy"
PUBLIC = frozenset()
# (method, route template) -> roles allowed (any one suffices); PUBLIC needs no token.
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/v1/openapi.json"): PUBLIC,
    ("GET", "/metrics"): frozenset({V, OP}),
    ("GET", "/v1/carriers"): frozenset({V, OP}),
    ("POST", "/v1/carriers/{name}/suspend"): frozenset({OP}),
    ("POST", "/v1/carriers/{name}/resume"): frozenset({OP}),
    ("GET", "/v1/stats"): frozenset({V, OP}),
    ("GET", "/v1/routing"): frozenset({V, OP}),
    ("PUT", "/v1/routing"): frozenset({OP}),
    ("POST", "/v1/accounts"): frozenset({OP}),
    ("GET", "/v1/accounts/{id}"): frozenset({OP, P}),
    ("POST", "/v1/accounts/{id}/deposits"): frozenset({OP}),
    ("POST", "/v1/accounts/{id}/senders"): frozenset({OP}),
    ("DELETE", "/v1/accounts/{id}/senders/{sender}"): frozenset({P}),  # a rectification, as rectify
    ("POST", "/v1/accounts/{id}/restrict"): frozenset({OP, P}),
    ("POST", "/v1/accounts/{id}/close"): frozenset({OP}),
    ("GET", "/v1/accounts/{id}/export"): frozenset({P}),
    ("POST", "/v1/accounts/{id}/rectify"): frozenset({P}),
    ("POST", "/v1/accounts/{id}/erase"): frozenset({P}),
    ("POST", "/v1/accounts/{id}/objections"): frozenset({P}),
    ("GET", "/v1/analytics"): frozenset({V, OP}),
    ("GET", "/v1/retention"): frozenset({V, P}),
    ("GET", "/v1/holds"): frozenset({P}),
    ("POST", "/v1/holds"): frozenset({P}),
    ("POST", "/v1/holds/{id}/release"): frozenset({P}),
    ("POST", "/v1/holds/{id}/disclosures"): frozenset({P}),
    ("POST", "/v1/holds/{id}/notice"): frozenset({P}),
    ("GET", "/v1/audit"): frozenset({P}),
    ("POST", "/v1/tokens"): frozenset({OP}),
    ("GET", "/v1/tokens"): frozenset({OP}),
    ("DELETE", "/v1/tokens/{name}"): frozenset({OP}),
    ("POST", "/v1/accounts/{id}/keys"): frozenset({OP}),
    ("GET", "/v1/accounts/{id}/keys"): frozenset({OP}),
    ("DELETE", "/v1/accounts/{id}/keys/{key_id}"): frozenset({OP}),
    **control_privacy.ROUTE_ROLES,  # data-subject requests, incidents, policy changes, support cases
    **control_billing.ROUTE_ROLES,  # ledger verification, reconciliation, adjustments, usage exports
}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_key(request: web.Request) -> tuple[str, str] | None:
    resource = request.match_info.route.resource
    return None if resource is None else (request.method, resource.canonical)


@web.middleware
async def control_auth_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Authenticate the operator token and check the route's roles (401 / 403)."""
    ctx: HttpContext = request.app[CTX]
    key = _route_key(request)
    allowed = ROUTE_ROLES.get(key) if key is not None else PUBLIC
    if allowed is None:  # a route without a role entry is a bug: refuse rather than open it
        raise HttpError(403, "forbidden", "route has no role assignment")
    token = bearer(request)  # 400 for two Authorization headers, on every route
    if allowed:
        source = f"ip:{request.remote}"
        limiter = ctx.auth_failures
        if limiter is not None and not (blocked := limiter.peek(source)).allowed:
            raise HttpError(429, "too_many_failed_logins",
                            "too many failed authentications from this address; retry later",
                            {"Retry-After": str(max(1, math.ceil(blocked.retry_after_s)))})
        info = ctx.tokens.lookup(token) if token is not None else None
        if info is None:
            if limiter is not None:
                limiter.check(source)  # one failure more for this address
            raise AuthError("a valid operator token is required (Authorization: Bearer op_...)")
        request[OPERATOR] = info.name
        if not info.roles & allowed:
            raise HttpError(403, "forbidden", f"requires one of the roles: {', '.join(sorted(allowed))}")
    return await handler(request)


# --- health, metrics, carriers, routing ---------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready unless the engine is stopping, one of its actors is not running, or a POP's message store
    refuses new messages for lack of space (503, naming them). Carriers that are down do not make it not
    ready: messages are still accepted, stored and sent once a carrier is back."""
    ctx: HttpContext = request.app[CTX]
    stopping = bool(getattr(ctx.engine, "stopping", False))
    if stopping:
        raise HttpError(503, "not_ready", "the engine is stopping", {"Retry-After": "1"})
    dead_actors = getattr(ctx.engine, "dead_actors", None)
    dead = dead_actors() if dead_actors is not None else []  # flags only: never waits on an actor
    if dead:
        raise HttpError(503, "actors_down", f"not running: {', '.join(dead)}", {"Retry-After": "1"})
    full_stores = getattr(ctx.engine, "full_stores", None)
    full = full_stores() if full_stores is not None else []  # flags only, as above
    if full:
        raise HttpError(503, "store_full", "refusing new messages, no space left (disk or LMDB map): "
                        f"{', '.join(full)}", {"Retry-After": "5"})
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await ctx.call(ctx.metrics.exposition)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def carriers(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    return json_response(await ctx.call(ctx.engine.carrier_view))


def _carrier_switch(suspended: bool) -> _Handler:
    async def handler(request: web.Request) -> web.Response:
        ctx: HttpContext = request.app[CTX]
        name = request.match_info["name"]
        if name not in ctx.engine.carrier_names():  # the configuration: a hung worker cannot hold it
            raise HttpError(404, "not_found", "no such carrier")
        await ctx.call(ctx.engine.suspend_carrier, name, suspended)
        return json_response({"carrier": name, "suspended": suspended})

    return handler


async def stats(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    return json_response(await ctx.call(ctx.engine.stats))


async def get_routing(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    return json_response(await ctx.call(ctx.engine.routing_table))


async def put_routing(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await control_schemas.read_body_as(request, control_schemas.RoutingTable)
    table = {"routes": body.routes, "rates": body.rates}
    queued = await ctx.call(ctx.engine.replace_routing, table)  # validates first; ConfigError -> 422
    # the table now, and the price-change notices the replacement mailed (what became of them)
    return json_response({**await ctx.call(ctx.engine.routing_table), "price_notices_queued": queued,
                          "mail": delivery(ctx.engine.notices.delivers) if queued else None})


def build_control_app(ctx: HttpContext) -> web.Application:
    """The control port application."""
    from engine.http import control_accounts

    app = web.Application(
        client_max_size=ctx.http.max_body_bytes,
        middlewares=[frame_middleware, audit_middleware, error_middleware, control_auth_middleware,
                     path_ids_middleware, audit_intent_middleware],
    )
    app[CTX] = ctx
    app[APP_NAME] = "control"
    app[MAX_BODY] = ctx.http.max_body_bytes
    app[BODY_TIMEOUT] = float(getattr(ctx.http, "body_timeout_seconds", DEFAULT_BODY_TIMEOUT_S))
    r = app.router
    r.add_get("/healthz", healthz, allow_head=False)
    r.add_get("/readyz", readyz, allow_head=False)
    r.add_get("/metrics", metrics, allow_head=False)
    r.add_get("/v1/openapi.json", _openapi, allow_head=False)
    r.add_get("/v1/carriers", carriers, allow_head=False)
    r.add_post("/v1/carriers/{name}/suspend", _carrier_switch(True))
    r.add_post("/v1/carriers/{name}/resume", _carrier_switch(False))
    r.add_get("/v1/stats", stats, allow_head=False)
    r.add_get("/v1/routing", get_routing, allow_head=False)
    r.add_put("/v1/routing", put_routing)
    control_accounts.add_routes(r)
    control_privacy.add_routes(r)
    control_billing.add_routes(r)
    return app


async def _openapi(request: web.Request) -> web.Response:
    return json_response(openapi.control_document())
