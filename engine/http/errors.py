"""The one JSON error shape both HTTP apps answer with, and how engine errors map to HTTP statuses.

Every error answer is ``{"error": {"code": "<stable code>", "message": "<human text>"}}`` with
``Content-Type: application/json``. Codes come from :mod:`engine.errors` (``SmsrouteError.code``) or from
:class:`HttpError` for conditions that only exist at the HTTP layer (wrong content type, rate limited,
idempotency conflicts). :func:`error_middleware` turns every exception a handler raises into that shape, so
no handler ever answers HTML or a bare traceback; an unexpected exception is a 500 whose message names no
internals (it is logged, without request bodies).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from engine import errors as E
from storage.full import FULL_ERRORS, store_full

log = logging.getLogger(__name__)

# Most specific class first: the first isinstance match wins.
_STATUS_BY_ERROR: tuple[tuple[type[E.SmsrouteError], int], ...] = (
    (E.BodyTooLarge, 413),
    (E.InvalidNumber, 422),
    (E.InvalidBody, 422),
    (E.UnknownSender, 403),
    (E.InvalidUrl, 422),
    (E.ConfigError, 422),
    (E.InvalidTransition, 409),
    (E.LedgerConflict, 409),
    (E.HoldConflict, 409),
    (E.NoticeTooShort, 422),
    (E.MalformedMessage, 400),
    (E.InputError, 400),
    (E.AuthError, 401),
    (E.UnknownAccount, 404),
    (E.LastApiKey, 409),
    (E.AccountRestricted, 403),
    (E.AccountUnconfirmed, 403),
    (E.InsufficientBalance, 402),
    (E.NoRoute, 422),
    (E.RoutingError, 422),
    (E.OverloadedError, 503),
    (E.RateLimited, 429),
    (E.StorageError, 503),
    (E.CarrierError, 503),
)

RETRY_AFTER_OVERLOADED_S = 1
CLIENT_CLOSED = 499
"""The status recorded (request log, metrics) for a request whose client hung up before it was read."""
"""What ``Retry-After`` tells a client the engine refused for overload or a transient storage error."""


class HttpError(Exception):
    """An HTTP-layer refusal: status, stable code, message and optional extra headers."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.close = close  # close the connection after answering (e.g. a body that stalled)


def status_for(exc: E.SmsrouteError) -> int:
    """The HTTP status an engine error is answered with (500 for an unmapped root error)."""
    for cls, status in _STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(code: str, message: str) -> bytes:
    """The serialized error shape."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON error answer in the one shape."""
    return web.Response(status=status, body=error_body(code, message),
                        content_type="application/json", headers=headers)


def from_engine_error(exc: E.SmsrouteError, *, customer: bool = False) -> web.Response:
    """Answer an engine error; overload and transient storage errors carry ``Retry-After``. To a
    ``customer`` (the customer API) with its ``public_message``: a cluster's errors name its worker
    processes for the operator (control port, logs), never for a customer."""
    status = status_for(exc)
    headers = {"Retry-After": str(RETRY_AFTER_OVERLOADED_S)} if status in (429, 503) else None
    if status == 500:
        log.error("unmapped engine error %s", type(exc).__name__)
        return error_response(500, "internal_error", "internal error")
    return error_response(status, exc.code, exc.public_message if customer else exc.message, headers)


# aiohttp's own refusals (routing, body size) get codes in our vocabulary.
_AIOHTTP_CODES = {
    404: ("not_found", "no such route"),
    405: ("method_not_allowed", "method not allowed on this route"),
    413: ("body_too_large", "request body too large"),
}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Turn anything a handler raises into the JSON error shape (the control port's: engine errors
    with their whole message)."""
    try:
        return await handler(request)
    except Exception as exc:
        resp = error_answer(request, exc)
        if resp is None:
            raise
        return resp


def error_answer(request: web.Request, exc: Exception, *, customer: bool = False
                 ) -> web.StreamResponse | None:
    """The JSON error answer for what a handler raised, or None when it must propagate (an aiohttp
    redirect or other non-error ``HTTPException``). Called inside the ``except`` block, so an
    unexpected exception is logged with its traceback. (A function rather than only a middleware: the
    customer app's one middleware calls it without a layer of its own.) ``customer``: engine errors
    with their ``public_message`` (no worker names; the customer API), else their whole message.

    A handler that fails after its answer started (a streamed answer: the usage export) cannot be
    answered again: the connection is closed at once, without the chunked body's terminating chunk,
    so the client sees a broken transfer (:func:`cut_off`). What is returned then is a
    :class:`CutAnswer` with the status the client saw (the streamed answer's, registered by
    :func:`start_stream`): it is never sent, but it is what the request log, the metrics and the control
    port's audit record - before, they recorded the error's 503/500 although the client got a 200.
    (Before f60651d aiohttp even wrote the error into the streamed body - a second status line after
    the rows, then a terminating chunk.) A client that left mid-answer is recorded 499, as before."""
    resp = _answer_for(request, exc, customer)
    if resp is not None and answer_started(request) and not client_gone(request):
        started = request.get(STREAMED)
        resp = CutAnswer(status=started.status if started is not None else resp.status)
        resp.sent_bytes = getattr(started, "sent_bytes", 0)  # what went out before the cut
        cut_off(request, exc, resp.status)
    return resp


STREAMED = web.RequestKey("streamed_answer", web.StreamResponse)
"""The answer a handler streams (:func:`start_stream`): what the client saw if it breaks off."""


class CutAnswer(web.Response):
    """What a request whose answer broke off after it started is recorded with: the status the client
    saw, marked ``cut``, and the body bytes that went out before the cut (``sent_bytes``: the request
    log's response size). Never sent (its connection is closed)."""

    cut = True
    sent_bytes = 0


async def start_stream(request: web.Request, resp: web.StreamResponse) -> None:
    """Send ``resp``'s status line and headers (``resp.prepare``), remembering it as this request's
    streamed answer, so a failure after this point is recorded with the status the client saw."""
    request[STREAMED] = resp
    await resp.prepare(request)


def answer_started(request: web.Request) -> bool:
    """True once bytes of this request's answer went out (a streamed answer's status line and
    chunks): from then on it can only be finished or cut off, not replaced by another answer."""
    writer = request.writer
    return writer is not None and writer.output_size > 0


def cut_off(request: web.Request, exc: BaseException, status: int) -> None:
    """Close the connection of an answer that broke off after it started, without its end (no final
    chunk, no further byte): the client sees an incomplete transfer, never a short answer that looks
    complete. Logged once, with the status the client saw, ``cut`` and the error's class, and counted
    (``smsroute_http_answers_cut_total``): the request log and the request metric show that status (a
    client that left is logged as such already)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        return  # the client left (or it was already cut): nothing to close
    app = getattr(request.protocol, "app_name", "http")
    log.warning("answer broke off after it started; connection closed without its end", extra={
        "app": app, "method": request.method, "route": _route_name(request), "status": status,
        "cut": True, "error": type(exc).__name__})
    transport.abort()
    from engine.http.context import CTX  # (not at the top: these import this module, indirectly)
    from engine.http.middleware import endpoint_name
    ctx = request.app.get(CTX)
    if ctx is not None:
        ctx.metrics.answers_cut.labels(app, endpoint_name(request)).inc()


def _answer_for(request: web.Request, exc: Exception, customer: bool) -> web.StreamResponse | None:
    if isinstance(exc, HttpError):
        resp = error_response(exc.status, exc.code, exc.message, exc.headers)
        if exc.close:
            resp.force_close()
            close_after = getattr(request.protocol, "close_after_answer", None)
            if close_after is not None:
                close_after()
        return resp
    if isinstance(exc, E.SmsrouteError):
        return from_engine_error(exc, customer=customer)
    if isinstance(exc, FULL_ERRORS):  # a store without its own mapping (storage.full): store_full
        return from_engine_error(store_full("data"))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        code, message = _AIOHTTP_CODES.get(exc.status, ("http_error", exc.reason))
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, code, message, headers)
    if isinstance(exc, ConnectionResetError) and client_gone(request):
        # the client hung up mid-request (e.g. mid-body): its doing, not a server fault; nobody reads
        # this answer, its 499 only keeps the request log and the 5xx metric honest
        log.info("client disconnected mid-request", extra={
            "app": getattr(request.protocol, "app_name", "http"), "method": request.method,
            "route": _route_name(request)})
        return error_response(CLIENT_CLOSED, "client_closed_request",
                              "the client closed the connection before the request was read")
    # a bug (or a reset of another socket a handler used, the client still there): log its type and
    # place, answer a generic 500
    log.exception("unhandled error in %s %s", request.method, _route_name(request))
    return error_response(500, "internal_error", "internal error")


def client_gone(request: web.Request) -> bool:
    """True when the client's own connection is closed (a reset from another socket a handler used,
    with the client still there, is a server-side failure)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"
