"""OpenAPI paths of the billing routes: usage exports, low-balance thresholds, adjustments, ledger
verification and reconciliation (merged into both documents by ``engine.http.openapi``)."""

from __future__ import annotations

from typing import Any

from engine.http import control_answers as ca
from engine.http import control_schemas as cs
from engine.http import customer_schemas
from engine.http.openapi import INT, S, _obj, _op, _ref, _with_content

N, B = {"type": "number"}, {"type": "boolean"}
PERIOD = [
    {"name": "since", "in": "query", "required": False, "schema": S,
     "description": "start (inclusive): unix seconds or an ISO 8601 date/date-time (UTC); default: the "
                    "account's beginning"},
    {"name": "until", "in": "query", "required": False, "schema": S,
     "description": "end (exclusive), same forms; default: now"},
    {"name": "format", "in": "query", "required": False,
     "schema": {"type": "string", "enum": ["json", "csv"]},
     "description": "json (default) or csv (also chosen by Accept: text/csv)"},
]
ROW = _obj(["type", "id", "time", "amount_micro_usd"], type={
    "type": "string", "enum": ["message", "deposit", "adjustment", "refund"]}, id=S, time=S, country=S,
    segments={"oneOf": [INT, S]}, status=S, price_micro_usd=INT, refund_micro_usd=INT,
    amount_micro_usd=INT, chain=S, from_address=S, reason=S)
USAGE = _obj(["account_id", "rows", "totals"], account_id=S, since=S, until=S, generated_at=S, currency=S,
             rows={"type": "array", "items": ROW},
             totals=_obj([], messages=INT, price_micro_usd=INT, refund_micro_usd=INT,
                         deposits_micro_usd=INT, adjustments_micro_usd=INT, amount_micro_usd=INT),
             balance_micro_usd=INT)
USAGE_TEXT = ("one row per message (id, time, destination country, segments, price, refund, status — "
              "never a body or a number) plus deposits and adjustments, streamed; rows sum to the "
              "balance change (CSV: the same columns)")
PROBLEM = _obj(["seq", "kind", "detail"], seq=INT, kind={"type": "string", "enum": [
    "missing", "broken_link", "unreadable", "head", "anchor"]}, detail=S, last_seq=INT)


def _usage(op: dict[str, Any]) -> dict[str, Any]:
    """A usage export answers JSON, or CSV with ``format=csv`` / ``Accept: text/csv``."""
    json_answer = op["responses"]["200"]["content"]["application/json"]
    return _with_content(op, "200", {"application/json": json_answer,
                                     "text/csv": {"schema": {"type": "string"}}})


def customer_paths() -> dict[str, Any]:
    return {
        "/v1/usage": {"get": _usage(_op(f"Your usage for a period: {USAGE_TEXT}", "200",
                                        ok_schema=USAGE, extra_params=PERIOD))},
        "/v1/balance/threshold": {"put": _op(
            "Low-balance threshold in USD (\"0\": off): one account.low_balance webhook each time the "
            "balance goes below it", "200", body=_ref(customer_schemas.ThresholdRequest),
            errors=("403",),
            ok_schema=_obj(["low_balance_threshold_micro_usd"], low_balance_threshold_micro_usd=INT,
                           balance_micro_usd=INT))},
    }


def control_paths() -> dict[str, Any]:
    o = _op
    return {
        "/v1/ledger/verify": {"get": o(
            "Walk the ledger's hash chain and open every entry; every broken place is listed", "200",
            errors=("403",), ok_schema=_obj(
                ["ok", "problems"], ok=B, entries=INT, first_seq=INT, anchor_seq=INT,
                first_broken_seq={"type": ["integer", "null"]},
                head=_obj(["seq", "link"], seq=INT, link=S),
                problems={"type": "array", "items": PROBLEM}))},
        "/v1/ledger/reconciliation": {"get": o(
            "Reconcile message records and ledger now (run=false: the last report, e.g. the start-up "
            "one) and list the differences", "200", errors=("403", "404"), extra_params=[
                {"name": "run", "in": "query", "required": False, "schema": B}],
            ok_schema=_ref(ca.ReconciliationReport))},
        "/v1/accounts/{id}/adjustments": {"post": o(
            "Credit (\"2.50\") or debit (\"-2.50\") an account with a reason, once per idempotency_key "
            "(201 written, 200 replayed)", "201", params=("id",), also_ok=("200",),
            body=_ref(cs.Adjustment), errors=("402", "403", "404", "409"),
            ok_schema=_ref(ca.AdjustmentAnswer))},
        "/v1/accounts/{id}/usage": {"get": _usage(o(
            f"An account's usage for a period: {USAGE_TEXT}", "200", params=("id",),
            errors=("403", "404"), ok_schema=USAGE, extra_params=PERIOD))},
        "/v1/accounts/{id}/low-balance": {"put": o(
            "An account's low-balance threshold in USD (\"0\": off)", "200", params=("id",),
            body=_ref(cs.LowBalanceThreshold), errors=("403", "404"),
            ok_schema=_obj(["low_balance_threshold_micro_usd"], account_id=S,
                           low_balance_threshold_micro_usd=INT))},
    }
