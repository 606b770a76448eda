"""Customer-port billing routes (the account itself, by its API key):

* ``GET /v1/usage?since=&until=&format=json|csv`` — the account's usage for a period, streamed
  (``engine.http.usage_export``): one row per message (id, time, destination country, segments, price,
  refund, status — never a body or a number), plus its deposits and adjustments.
* ``PUT /v1/balance/threshold`` ``{usd}`` — the low-balance threshold: when the balance goes below it, one
  ``account.low_balance`` webhook goes to the account's webhook URL (``"0"`` turns it off). Refused for a
  restricted or closed account (403), like every other setting.

The body is decoded by its msgspec type (:class:`engine.http.customer_schemas.ThresholdRequest`, the same
amount format as the control port's), from which the OpenAPI document is generated.
"""

from __future__ import annotations

from aiohttp import web

from engine.credentials import require_active
from engine.http import customer_schemas as cs
from engine.http.context import CTX, HttpContext
from engine.http.jsonio import json_response, read_body
from engine.http.middleware import require_account
from engine.http.schemas import decode
from engine.http.usage_export import stream_usage


async def get_usage(request: web.Request) -> web.StreamResponse:
    return await stream_usage(request, require_account(request))


async def put_threshold(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    body = decode(await read_body(request), cs.ThresholdRequest)  # before the account: 400 over 403
    require_active(await ctx.call(ctx.engine.account, account_id))
    threshold = await ctx.call(ctx.engine.billing.set_low_balance_threshold, account_id, body.usd)
    return json_response({"low_balance_threshold_micro_usd": threshold,
                          "balance_micro_usd": await ctx.call(ctx.engine.balance, account_id)})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/v1/usage", get_usage, allow_head=False)
    r.add_put("/v1/balance/threshold", put_threshold)
