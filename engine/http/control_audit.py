"""The control port's audit trail: every request is written to the audit log, and a request that may change
something is written there *before* it acts.

Why before: staff access must be audit-logged (policy 9), so an action whose audit entry cannot be written
must not happen. An entry written only after the handler had acted could fail (the HTTP store full) and
then the request was answered 503 although its account, deposit or hold existed, and a retry made a second
one. Now:

* :func:`audit_intent_middleware` (innermost, after authentication) writes an intent entry (result
  ``started``) for every request other than GET before its handler runs. When that write fails the
  request is answered 503 with ``Retry-After`` — ``store_full`` naming the ``http`` store when its map or
  disk is full, ``audit_unavailable`` otherwise — and nothing was done: retrying is safe.
* :func:`audit_middleware` (outermost) writes the result entry (the HTTP status; ``detail.intent`` names the
  intent entry's sequence number) before the answer goes out. If it cannot be written for a request that
  acted, the answer is still the real one (the action happened, its intent entry records who did what,
  when) and the missing result is logged. A GET, or a request refused before its handler (401, 403, 400),
  changed nothing: when its one entry cannot be written it is answered ``503 audit_unavailable`` instead —
  except ``GET /metrics``: aggregate counters with nothing about a person, which monitoring must still
  read exactly when a store is full (it would otherwise go blind at that moment); the missing entry is
  logged.

Writes are group-committed (:class:`engine.http.store.GroupCommitter`): requests that finish together
share one fsync. Hold ids are audit targets, and accounts are, by their pseudonym (``storage.audit``);
bodies, keys, tokens and sender IDs never are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.errors import StoreFull
from engine.http.context import CTX, OPERATOR, HttpContext
from engine.http.errors import HttpError, error_response
from engine.http.middleware import endpoint_name
from engine.http.store import Apply

log = logging.getLogger(__name__)

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_INTENT = web.RequestKey("audit_intent", int)  # sequence number of the request's intent entry
_REFUSED = web.RequestKey("audit_refused", bool)  # its intent entry could not be written: it did nothing
_UNAUDITED = ("/healthz", "/readyz")
_MONITORING = ("/metrics",)  # served even when its audit entry cannot be written (see the docstring)
_READS = ("GET", "HEAD")
_RETRY = {"Retry-After": "5"}
STARTED = "started"
# path parameters never written to the trail: a sender ID may be a person's name or number, and the trail
# outlives its removal (the route's name and the account's pseudonym say what was done)
_NOT_TARGETS = frozenset({"sender"})


async def _append(request: web.Request, result: str, when: float, extra: dict[str, object]) -> int:
    """Write one entry about ``request`` (group-committed, durable on return); its sequence number."""
    ctx: HttpContext = request.app[CTX]
    who = request.get(OPERATOR) or "anonymous"
    ids = request.match_info
    account = ids.get("id") if request.path.startswith("/v1/accounts/") else None
    target = ",".join(f"{k}={v if v == account else v[:64]}" for k, v in ids.items()
                      if k not in _NOT_TARGETS) or "-"
    detail = {"at": when, "source_ip": request.remote or "", **extra}
    seq: list[int] = []
    await ctx.committer.write([Apply(lambda txn: seq.append(ctx.audit.append(
        who, endpoint_name(request), target, result, detail, account=account, txn=txn)))])
    return seq[-1]


@web.middleware
async def audit_intent_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Before a request other than GET acts: its intent entry, or 503 ``audit_unavailable`` (nothing done)."""
    ctx: HttpContext = request.app[CTX]
    if ctx.audit is not None and request.method not in _READS and request.path not in _UNAUDITED:
        try:
            request[_INTENT] = await _append(request, STARTED, time.time(), {})
        except Exception as exc:
            request[_REFUSED] = True
            log.error("audit intent entry not written (%s): request refused before it acted",
                      type(exc).__name__)
            if isinstance(exc, StoreFull):  # named and counted by the committer (storage.full)
                raise HttpError(503, "store_full", f"{exc.message.split(':')[0]}: the audit log could "
                                "not be written, nothing was done; retry later", _RETRY) from None
            raise HttpError(503, "audit_unavailable", "the audit log could not be written: nothing "
                            "was done; retry later", _RETRY) from None
    return await handler(request)


@web.middleware
async def audit_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """After the handler, before answering: the request's result entry (see the module docstring)."""
    ctx: HttpContext = request.app[CTX]
    when = time.time()
    resp = await handler(request)
    if ctx.audit is None or request.path in _UNAUDITED:
        return resp
    intent = request.get(_INTENT)
    try:
        extra: dict[str, object] = {} if intent is None else {"intent": intent}
        if getattr(resp, "cut", False):  # the client saw this status, then a closed connection
            extra["cut"] = True
        await _append(request, str(resp.status), when, extra)
    except Exception as exc:
        if intent is not None:  # it acted: answer what happened; the intent entry records the access
            log.error("audit result entry of intent %d not written (%s); answered %d", intent,
                      type(exc).__name__, resp.status)
            return resp
        if request.get(_REFUSED):  # already answered 503 audit_unavailable, having done nothing
            return resp
        if request.path in _MONITORING and request.method in _READS:
            log.error("audit entry of a metrics scrape not written (%s); served", type(exc).__name__)
            return resp
        log.error("audit entry not written (%s): answer withheld", type(exc).__name__)
        return error_response(503, "audit_unavailable", "the audit log could not be written; retry later",
                              _RETRY)
    return resp
