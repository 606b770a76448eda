"""Streaming a usage export over HTTP (``GET /v1/usage`` and ``GET /v1/accounts/{id}/usage``).

Query: ``since`` and ``until`` (unix seconds or ISO 8601 dates/date-times, UTC unless stated; default:
the account's beginning until now), ``format`` = ``json`` (default) or ``csv`` (also chosen by ``Accept:
text/csv``). The rows are read and encoded a chunk at a time on the HTTP thread pool and written as they
come (chunked transfer encoding), so an export of any size holds one chunk in memory. What the rows are,
and where each column comes from, is in ``engine.billing.usage``.

Headers are set before the first byte goes out — the security headers and, on the customer API, the
``RateLimit-*`` headers the middlewares would otherwise add after the handler (too late for a stream).
The first chunk (the first rows' records looked up: in a cluster, asked of the account's workers) is
read before the status line is sent, so a failure there - a worker that holds the account's messages
is hung - is an ordinary error answer (503 ``cluster_unavailable`` with ``Retry-After``); before, it
came after a ``200`` and broke the transfer off. A failure after the first byte (a store error
mid-export) closes the connection without the final chunk, so a client sees an incomplete transfer,
never a short export that looks complete (:func:`engine.http.errors.cut_off`, for every answer that
fails once started; before, an error answer was written into the body after the rows).
"""

from __future__ import annotations

import time

from aiohttp import web

from engine.billing.usage import FORMATS, encode_csv, encode_json, iso, parse_time
from engine.http.context import API_KEY, CTX, HttpContext
from engine.http.errors import HttpError, start_stream
from engine.http.middleware import HSTS
from engine.http.params import query_value
from engine.http.streamed import StreamedAnswer

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8"}


def _format(request: web.Request) -> str:
    fmt = query_value(request, "format")
    if fmt is None:
        fmt = "csv" if "text/csv" in request.headers.get("Accept", "") else "json"
    if fmt not in FORMATS:
        raise HttpError(400, "invalid_query", f"format is one of {', '.join(FORMATS)}")
    return fmt


async def stream_usage(request: web.Request, account_id: str) -> web.StreamResponse:
    """Answer the account's usage for the queried period, streamed."""
    ctx: HttpContext = request.app[CTX]
    fmt = _format(request)
    now = time.time()
    since = parse_time(query_value(request, "since"), 0.0, "since")
    until = parse_time(query_value(request, "until"), now, "until")
    rows = await ctx.call(ctx.engine.billing.usage, account_id, since, until)  # 404, 400 here
    if fmt == "csv":
        chunks = encode_csv(rows)
    else:
        head = {"account_id": account_id, "since": iso(since), "until": iso(until),
                "generated_at": iso(now), "currency": "USD"}
        chunks = encode_json(rows, head, lambda: {"balance_micro_usd": ctx.engine.balance(account_id)})
    first = await ctx.call(next, chunks, None)  # a failure here is still an error answer
    resp = StreamedAnswer(headers={
        "Content-Type": CONTENT_TYPES[fmt],
        "Content-Disposition": f'attachment; filename="usage-{account_id}-{iso(since)[:10]}-'
                               f'{iso(until)[:10]}.{fmt}"'})
    _frame_headers(request, ctx, resp)
    resp.enable_chunked_encoding()
    await start_stream(request, resp)  # a failure from here on is recorded as the 200 it cut
    chunk = first
    while chunk is not None:
        if chunk:
            await resp.write(chunk)
        chunk = await ctx.call(next, chunks, None)
    await resp.write_eof()
    return resp


def _frame_headers(request: web.Request, ctx: HttpContext, resp: web.StreamResponse) -> None:
    """What ``frame_middleware`` and the customer rate limiter add to every answer."""
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Server"] = "smsroute"
    resp.headers["Cache-Control"] = "no-store"
    if ctx.tls:
        resp.headers["Strict-Transport-Security"] = HSTS
    key = request.get(API_KEY)
    if key:
        resp.headers.update(ctx.limiter.peek(key.digest.hex()[:32]).headers())
