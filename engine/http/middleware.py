"""Middlewares around the handlers: the customer app's one middleware, and the control port's frame.

The customer app has one middleware, :func:`customer_middleware` (each layer cost a call and a wrapper
per request on the hot path): it resolves the API key, applies GCRA per key, checks path ids, runs the
handler with every failure turned into the error shape, then adds the security and ``RateLimit-*``
headers (so every answer, errors included, carries them), the request log and the metric. The control
port's outermost middleware is :func:`frame_middleware` (metrics, security headers; no request log: the
control port's requests are in its own audit log, :mod:`engine.http.control_audit`); its others are in
:mod:`engine.http.app_control`.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine import apikeys
from engine.errors import AuthError, SmsrouteError
from engine.http.context import ACCOUNT_ID, API_KEY, APP_NAME, CTX
from engine.http.errors import HttpError, error_answer, error_response, from_engine_error
from engine.http.params import check_path_ids

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HSTS = "max-age=31536000; includeSubDomains"


_ENDPOINTS: dict[tuple[str, object], str] = {}  # (method, route resource) -> name: built once each


def endpoint_name(request: web.Request) -> str:
    """``METHOD /route/{template}`` — never the concrete path (no ids in logs or metric labels)."""
    resource = request.match_info.route.resource
    name = _ENDPOINTS.get((request.method, resource))
    if name is None:
        name = f"{request.method} unmatched" if resource is None else \
            f"{request.method} {resource.canonical}"
        if len(_ENDPOINTS) < 10_000:  # routes and methods are a bounded set; be safe anyway
            _ENDPOINTS[(request.method, resource)] = name
    return name


def _size(resp: web.StreamResponse) -> int:
    """The request log's response size: the body's length, or what a streamed (or cut) answer wrote
    (``sent_bytes``; it has no Content-Length: before, every export was logged with 0 bytes)."""
    if type(resp) is not web.Response:  # (a plain answer, the common case, skips the lookup)
        sent = getattr(resp, "sent_bytes", None)
        if sent is not None:
            return sent
    if isinstance(resp, web.Response) and resp.body is not None:
        return len(resp.body) if isinstance(resp.body, bytes | bytearray) else (resp.content_length or 0)
    return resp.content_length or 0


@web.middleware
async def frame_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Time the request (the request metric) and add the security headers. Only the control port uses
    it, and its requests are recorded by its audit log, not the customer API's request log (policy 2.1)."""
    ctx = request.app[CTX]
    started = time.perf_counter()
    resp = await handler(request)
    endpoint = endpoint_name(request)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Server"] = "smsroute"  # no software versions on the wire
    resp.headers["Cache-Control"] = "no-store"
    if ctx.tls:
        resp.headers["Strict-Transport-Security"] = HSTS
    ctx.metrics.observe_request(request.app[APP_NAME], endpoint, resp.status,
                                time.perf_counter() - started)
    return resp


def bearer(request: web.Request) -> str | None:
    """The bearer credential of ``Authorization``, or None; 400 ``ambiguous_authorization`` for a
    request with more than one ``Authorization`` header (which credential was meant is ambiguous: the
    first one no longer silently wins)."""
    headers = request.headers.getall("Authorization", [])
    if len(headers) > 1:
        raise HttpError(400, "ambiguous_authorization", "send exactly one Authorization header")
    header = headers[0] if headers else ""
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


def require_account(request: web.Request) -> str:
    """The caller's account id; 401 when the API key is missing or unknown."""
    account_id = request.get(ACCOUNT_ID)
    if account_id is None:
        raise AuthError("a valid API key is required (Authorization: Bearer sk_live_...)")
    return account_id


@web.middleware
async def customer_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """The customer app's one middleware, and the only frame around its handlers (each layer cost a
    call, and a wrapper, per request on the hot path). In order: resolve the API key, GCRA per key (per
    source IP without one), check path ids, run the handler with every failure turned into the error
    shape (:func:`engine.http.errors.error_answer`, inline: no layer of its own), then the security and
    ``RateLimit-*`` headers, the policy-2.1 request log and the request metric."""
    ctx = request.app[CTX]
    started = time.perf_counter()
    if ctx.edge_token:
        request = _from_edge(ctx, request)
    account_id = None
    resp: web.StreamResponse | None = None
    try:
        credential = bearer(request)
    except HttpError as exc:
        credential, resp = None, error_response(exc.status, exc.code, exc.message)
    # hashed once here, for everything the request does with it (the account, the rate limiter's
    # key, the engine's submit): before, each hashed the key again
    key = None if credential is None else apikeys.PresentedKey(credential)
    if key is not None:
        try:
            account_id = ctx.engine.account_id_for_key(key)
        except AuthError:
            pass
        except SmsrouteError as exc:
            resp = from_engine_error(exc, customer=True)
    request[API_KEY] = key
    request[ACCOUNT_ID] = account_id
    decision = None
    if resp is None:
        # per API key (its digest, never the key itself); unauthenticated callers per source IP
        limit_key = key.digest.hex()[:32] if account_id is not None else f"ip:{request.remote}"
        decision = ctx.limiter.check(limit_key)
        if not decision.allowed and (recheck := getattr(ctx.limiter, "recheck_after_lease", None)):
            # an HTTP edge's limiter: a refusal while the key's lease is on its way waits for it
            decision = await recheck(limit_key, decision)
        if not decision.allowed:
            resp = error_response(429, "rate_limited", "too many requests; retry later")
        else:
            try:
                check_path_ids(request)
                resp = await handler(request)
            except Exception as exc:
                resp = error_answer(request, exc, customer=True)
                if resp is None:  # not an error (an aiohttp redirect): aiohttp answers it
                    raise
    return finish(ctx, request, resp, started, decision)


def _from_edge(ctx, request: web.Request) -> web.Request:
    """A request an HTTP edge forwarded (``engine.cluster.edge``) carries its client's address; it is
    believed only with the edge token this core gave its edges, compared in constant time."""
    forwarded = request.headers.get("X-Smsroute-Forwarded-For")
    if forwarded is None or not ctx.edge_token:
        return request
    if not hmac.compare_digest(request.headers.get("X-Smsroute-Edge-Token", "").encode(),
                               ctx.edge_token.encode()):
        return request
    return request.clone(remote=forwarded)


_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff",
                     "Server": "smsroute",  # no software versions on the wire
                     "Cache-Control": "no-store"}
_SECURITY_HEADERS_TLS = {**_SECURITY_HEADERS, "Strict-Transport-Security": HSTS}


def finish(ctx, request: web.Request, resp: web.StreamResponse, started: float, decision) -> \
        web.StreamResponse:
    """Headers, request log and metric of one customer answer."""
    headers = resp.headers
    if decision is not None:
        headers.update(decision.headers())
    headers.update(_SECURITY_HEADERS_TLS if ctx.tls else _SECURITY_HEADERS)  # one call, not four
    endpoint = endpoint_name(request)
    status = resp.status
    ctx.requestlog.record_answer(time.time(), endpoint, request.remote or "", status, _size(resp))
    ctx.metrics.observe_request("customer", endpoint, status, time.perf_counter() - started)
    return resp
