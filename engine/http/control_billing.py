"""Control-port routes for the ledger (operators):

* ``GET /v1/ledger/verify`` — walk the hash chain and open every entry; ``{ok, entries, head, problems:
  [{seq, kind, detail}], first_broken_seq}`` (200 either way: the answer is the report).
* ``GET /v1/ledger/reconciliation`` — reconcile message records and ledger now and list the differences;
  ``?run=false`` answers the last report instead (the one the engine made at start-up, until another
  runs), 404 if there is none yet.
* ``POST /v1/accounts/{id}/adjustments`` ``{usd, reason, idempotency_key}`` — credit (``"2.50"``) or debit
  (``"-2.50"``) an account with a mandatory reason; 201 when written, 200 for a replay of the same key,
  amount and reason (nothing written), 409 ``adjustment_conflict`` for the same key with another amount
  or reason, 402 for a debit beyond the spendable balance. The operator token's name is recorded in the
  ledger entry and in the ``data_subject`` audit trail.
* ``GET /v1/accounts/{id}/usage`` — the account's usage export (as ``GET /v1/usage`` on the customer API).
* ``PUT /v1/accounts/{id}/low-balance`` ``{usd}`` — the account's low-balance threshold (``"0"``: none).
"""

from __future__ import annotations

from aiohttp import web

from engine.http import control_schemas as cs
from engine.http.context import CTX, OPERATOR, HttpContext
from engine.http.control_schemas import read_body_as
from engine.http.errors import HttpError
from engine.http.jsonio import json_response
from engine.http.params import query_value
from engine.http.usage_export import stream_usage

OP = "operator"
ROUTE_ROLES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/v1/ledger/verify"): frozenset({OP}),
    ("GET", "/v1/ledger/reconciliation"): frozenset({OP}),
    ("POST", "/v1/accounts/{id}/adjustments"): frozenset({OP}),
    ("GET", "/v1/accounts/{id}/usage"): frozenset({OP}),
    ("PUT", "/v1/accounts/{id}/low-balance"): frozenset({OP}),
}


async def verify(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    report = await ctx.call(ctx.engine.billing.verify)
    return json_response(report.as_dict())


async def reconciliation(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    run = query_value(request, "run", "true")
    if run not in ("true", "false"):
        raise HttpError(400, "invalid_query", "run is true or false")
    billing = ctx.engine.billing
    report = await ctx.call(billing.reconcile) if run == "true" else billing.last_reconciliation
    if report is None:
        raise HttpError(404, "not_found", "no reconciliation has run yet")
    return json_response(report.as_dict())


async def adjust(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.Adjustment)
    account_id = request.match_info["id"]
    done = await ctx.call(lambda: ctx.engine.billing.adjust(
        account_id, body.usd, body.reason, body.idempotency_key, actor=request[OPERATOR]))
    return json_response({"account_id": account_id, "amount_micro_usd": done.amount_micro_usd,
                          "balance_micro_usd": done.balance_micro_usd, "duplicate": done.duplicate},
                         status=200 if done.duplicate else 201)


async def usage(request: web.Request) -> web.StreamResponse:
    return await stream_usage(request, request.match_info["id"])


async def low_balance(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    body = await read_body_as(request, cs.LowBalanceThreshold)
    account_id = request.match_info["id"]
    threshold = await ctx.call(ctx.engine.billing.set_low_balance_threshold, account_id, body.usd)
    return json_response({"account_id": account_id, "low_balance_threshold_micro_usd": threshold})


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/v1/ledger/verify", verify, allow_head=False)
    r.add_get("/v1/ledger/reconciliation", reconciliation, allow_head=False)
    r.add_post("/v1/accounts/{id}/adjustments", adjust)
    r.add_get("/v1/accounts/{id}/usage", usage, allow_head=False)
    r.add_put("/v1/accounts/{id}/low-balance", low_balance)
