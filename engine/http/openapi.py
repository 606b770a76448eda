"""OpenAPI 3 documents of the customer API (``/v1/openapi.json`` on the customer port) and the control port.

Every request body of both APIs, and the customer API's message, batch, listing and webhook answers, are
generated from the msgspec types that decode or encode them (:mod:`engine.http.schemas`,
:mod:`engine.http.customer_schemas`, :mod:`engine.http.control_schemas`), so the published schema and the
validator cannot disagree, formats included; both documents are OpenAPI 3.1 (JSON Schema 2020-12, what
msgspec emits). The control port's answers that automation parses are generated from
:mod:`engine.http.control_answers` the same way (open-ended ones say so with ``additionalProperties``);
the other answers' schemas are written by hand next to the routes. A test walks
each app's router and checks every (method, route) is described here, and that every described operation
exists; others send requests generated from the documents (``test_fuzz_functional``,
``test_customer_bodies_functional``, ``test_control_bodies_functional``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine import listing
from engine.http import control_answers as ca
from engine.http import control_oversight_answers as oa
from engine.http import control_schemas as cs
from engine.http import customer_answers as answers
from engine.http import customer_schemas, schemas
from engine.http.connections import MAX_HEADER_LINE_BYTES, MAX_URL_BYTES
from engine.http.params import SHAPES
from engine.http.schemas import IDEMPOTENCY_KEY_PATTERN

ERROR = {"$ref": "#/components/schemas/Error"}
RATE_HEADERS = {
    name: {"schema": {"type": "integer"}, "description": text}
    for name, text in (("RateLimit-Limit", "burst size"),
                       ("RateLimit-Remaining", "requests allowed right now"),
                       ("RateLimit-Reset", "seconds until the limit is fully restored"))
}
COMMON_ERRORS = {"400": "malformed request (also: more than one Authorization header, "
                        "ambiguous_authorization; a key twice in a JSON object, duplicate_key; a "
                        "single-value query parameter twice, duplicate_parameter; a body that does not "
                        "decode as its Content-Encoding, gzip or deflate, says, invalid_content_encoding)",
                 "401": "missing, unknown, revoked or closed credential",
                 "408": "request head or body did not arrive in time", "413": "body too large",
                 "414": f"request URL (query included) longer than {MAX_URL_BYTES} bytes, uri_too_long",
                 "415": "not application/json", "429": "rate limited",
                 "431": f"a request header line longer than {MAX_HEADER_LINE_BYTES} bytes, header_too_large",
                 "503": "overloaded or too many connections; see Retry-After"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": props}


S, INT, B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}


def _op(summary: str, ok: str, *, body: dict | None = None, errors: tuple[str, ...] = (),
        ok_schema: dict | None = None, params: tuple[str, ...] = (), security: bool = True,
        extra_params: list | None = None, also_ok: tuple[str, ...] = ()) -> dict[str, Any]:
    """One operation; ``also_ok``: other success statuses with the same body (e.g. 200 for a replay
    of what answers 201 when first written)."""
    responses: dict[str, Any] = {code: {"description": "success", "headers": RATE_HEADERS,
                                        "content": {"application/json": {"schema": ok_schema or
                                                                          {"type": "object"}}}}
                                 for code in (ok, *also_ok)}
    for code in sorted(set(errors) | set(COMMON_ERRORS)):
        responses[code] = {"description": COMMON_ERRORS.get(code, "refused"),
                           "content": {"application/json": {"schema": ERROR}}}
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    parameters = [{"name": p, "in": "path", "required": True, "schema": S} for p in params]
    parameters += extra_params or []
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    if not security:
        op["security"] = []
    return op


def _with_content(op: dict[str, Any], code: str, content: dict[str, Any]) -> dict[str, Any]:
    """``op`` with ``content`` (media type -> schema) as what its ``code`` answer carries, for a
    route that answers something other than JSON."""
    op["responses"][code] = {**op["responses"][code], "content": content}
    return op


AUDIT_PARAMS = [
    {"name": "kind", "in": "query", "required": False, "explode": True,
     "description": "repeatable or comma-separated",
     "schema": {"type": "array", "items": {"type": "string", "enum": [
         "control", "data_subject", "retention_exception"]}}},
    {"name": "since", "in": "query", "required": False, "schema": {"type": "number"},
     "description": "unix seconds, included; the previous page's next_since to go on"},
    {"name": "until", "in": "query", "required": False, "schema": {"type": "number"},
     "description": "unix seconds, excluded"},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
    {"name": "account", "in": "query", "required": False,
     "schema": {"type": "string", "pattern": schemas.whole(SHAPES["account"].pattern)},
     "description": "only the entries about this account (also after its erasure: its pseudonym "
                    "is computed); not with subject"},
    {"name": "subject", "in": "query", "required": False,
     "schema": {"type": "string", "pattern": schemas.whole("^psn_[0-9a-f]{32}$")},
     "description": "only the entries about the account with this pseudonym; not with account"},
]


def _document(title: str, paths: dict[str, dict[str, Any]], scheme: str,
              version: str = "3.0.3") -> dict[str, Any]:
    return {
        "openapi": version,
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": scheme}},
            "schemas": {"Error": _obj(["error"], error=_obj(["code", "message"], code=S,
                                                           message=S))},
        },
    }


NEW_KEY = _obj(["id", "api_key", "hint"], id=S, api_key=S, hint=S)
TIME_OR_NULL = {"type": ["number", "null"]}  # OpenAPI 3.1 (JSON Schema): no "nullable"
KEY_LIST = _obj(["keys"], keys={"type": "array", "items": _obj(
    ["id", "hint"], id=S, hint=S, created_at=TIME_OR_NULL, last_used_at=TIME_OR_NULL,
    revoked_at=TIME_OR_NULL)})
IDEMPOTENCY = [{"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN},
                "description": "1-255 visible ASCII characters; retries with the same key and body "
                               "get the first answer"}]
STRUCTS = (schemas.MessageRequest, schemas.BatchRequest, schemas.AcceptedAnswer, schemas.BatchAnswer,
           schemas.MessageView, schemas.MessageList, schemas.WebhookRequest, schemas.WebhookView,
           schemas.SenderRequest, schemas.SenderView, schemas.SenderRemoved,
           schemas.DebugWindowRequest, schemas.DebugWindowOpened, schemas.DebugWindowClosed,
           schemas.KeyView, schemas.BalanceView, schemas.Event,
           schemas.LowBalanceEvent, *customer_schemas.BODIES, *answers.ANSWERS)
SIGNED = ("Signed: Smsroute-Signature: t=<unix>,v1=<hex HMAC-SHA256 of '<t>.<raw body>'> (one v1 per "
          "valid secret during a rotation). Answer 2xx; others are retried, 410 disables the URL. ")
ONE_EVENT = "Smsroute-Event-Id: the event's id, the same as the body's `id` (deduplicate on it)."
MAYBE_BATCHED = ("Deduplicate on each event's `id` (the body's, or each array element's). "
                 "Smsroute-Event-Id is the event's id for one event, but for an array only a digest of "
                 "the ids it holds: after a restart the same events may be grouped differently.")


def _webhooks() -> dict[str, Any]:
    """What the engine POSTs to customers (OpenAPI 3.1 ``webhooks``): the body types it encodes."""
    def post(summary: str, schema: dict[str, Any], dedupe: str) -> dict[str, Any]:
        return {"post": {"summary": summary, "description": SIGNED + dedupe,
                         "requestBody": {"required": True,
                                         "content": {"application/json": {"schema": schema}}},
                         "responses": {"200": {"description": "received"}}}}

    return {
        "messageStatus": post("A message's status changed (a batching endpoint: a JSON array of them)",
                              {"oneOf": [_ref(schemas.Event),
                                         {"type": "array", "items": _ref(schemas.Event)}]},
                              MAYBE_BATCHED),
        "accountLowBalance": post("The balance went below the account's threshold",
                                  _ref(schemas.LowBalanceEvent), ONE_EVENT),
    }


def _ref(struct: type) -> dict[str, str]:
    """A reference to a Struct's schema in the document's components (its class name)."""
    return {"$ref": f"#/components/schemas/{struct.__name__}"}


def _business(codes: tuple[str, ...]) -> str:
    return "; ".join(f"{c}: {schemas.BUSINESS_CODES[c]}" for c in codes)


SUBMIT_CODES = ("invalid_number", "unknown_sender", "body_too_large", "invalid_body",
                "insufficient_balance", "no_route", "destination_not_allowed", "account_restricted",
                "account_unconfirmed", "idempotency_key_reused", "idempotency_conflict",
                "idempotency_outcome_unknown", "rate_limited", "overloaded", "carriers_saturated",
                "store_full", "storage_error")
LIST_PARAMS = [
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": listing.MAX_LIMIT, "default": 50}},
    {"name": "cursor", "in": "query", "required": False,
     "schema": {"type": "string", "pattern": schemas.whole(SHAPES["message"].pattern)},
     "description": "the next_cursor of the previous page"},
    {"name": "status", "in": "query", "required": False, "explode": True,
     "schema": {"type": "array", "items": {"type": "string", "enum": list(schemas.STATUSES)}}},
    {"name": "since", "in": "query", "required": False,
     "schema": {"type": "number", "minimum": 0, "exclusiveMaximum": listing.MAX_UNIX_TIME},
     "description": "submitted_at >= since (unix seconds; the submitted_at shown)"},
    {"name": "until", "in": "query", "required": False,
     "schema": {"type": "number", "minimum": 0, "exclusiveMaximum": listing.MAX_UNIX_TIME},
     "description": "submitted_at < until (unix seconds; the submitted_at shown)"},
]


def customer_document() -> dict[str, Any]:
    codes = _business(SUBMIT_CODES)
    paths = {
        "/v1/messages": {
            "post": _op("Submit a message; 202 once it is durably accepted. Refusals of a request the "
                        "schema allows: " + codes, "202", body=_ref(schemas.MessageRequest),
                        ok_schema=_ref(schemas.AcceptedAnswer), errors=("402", "403", "409", "422"),
                        extra_params=IDEMPOTENCY),
            "get": _op("Your messages, newest first (limit + cursor; status and time filters); a page "
                       "may hold fewer than limit when a filter skipped many: follow next_cursor "
                       "until it is null", "200", ok_schema=_ref(schemas.MessageList),
                       extra_params=LIST_PARAMS),
        },
        "/v1/messages/batch": {"post": _op(
            "Submit up to 1,000 messages in one request; 200 once each is durable or refused, with one "
            "result per message in order (the single submit's answer or an error object). An entry "
            "that failed unexpectedly gets the error object with code internal_error (its outcome "
            "is unknown: check your messages before sending it again), never a 500 for the whole "
            "batch. Idempotent as a whole by Idempotency-Key (kept when at least one message was "
            "accepted or has an unknown outcome)", "200",
            body=_ref(schemas.BatchRequest), ok_schema=_ref(schemas.BatchAnswer),
            errors=("409", "422"), extra_params=IDEMPOTENCY)},
        "/v1/messages/{id}": {"get": _op("Status and metadata of one of your messages (never "
                                         "the body)", "200", params=("id",), errors=("404",),
                                         ok_schema=_ref(schemas.MessageView))},
        "/v1/balance": {"get": _op("Prepaid balance in micro-USD", "200",
                                   ok_schema=_ref(schemas.BalanceView))},
        "/v1/senders": {"post": _op("Register a sender ID for your account", "201",
                                    body=_ref(schemas.SenderRequest), errors=("403", "422"),
                                    ok_schema=_ref(schemas.SenderView))},
        "/v1/senders/{sender}": {"delete": _op(
            "Remove a sender ID from your account (rectification, policy 7.1): submits from it are "
            "refused (403 unknown_sender) from now on; 404 unknown_sender if it is not registered",
            "200", params=("sender",), errors=("404",), ok_schema=_ref(schemas.SenderRemoved))},
        "/v1/webhook": {
            "put": _op("Set the webhook URL, which statuses are sent and how many events per POST "
                       "(batching, opt-in); re-enables an endpoint disabled after 410", "200",
                       body=_ref(schemas.WebhookRequest), ok_schema=_ref(schemas.WebhookView),
                       errors=("403", "422")),
            "get": _op("The webhook endpoint's settings and state (none, active, or disabled after "
                       "410 Gone) and the events waiting for it", "200",
                       ok_schema=_ref(schemas.WebhookView)),
        },
        "/v1/webhook/secret": {"post": _op("Rotate the webhook signing secret (shown once; the "
                                           "previous one keeps signing during the overlap)", "201",
                                           ok_schema=_obj(["secret"], secret=S))},
        "/v1/debug-window": {
            "post": _op("Opt in to keeping your own message bodies for debugging (policy 2.3 b), at "
                        "most 7 days; audit-logged", "201",
                        body=_ref(schemas.DebugWindowRequest), errors=("403", "422"),
                        ok_schema=_ref(schemas.DebugWindowOpened)),
            "delete": _op("End your debugging windows now (their bodies are shredded)", "200",
                          ok_schema=_ref(schemas.DebugWindowClosed)),
        },
        "/v1/keys": {
            "post": _op("Create a further API key (shown once)", "201", ok_schema=NEW_KEY,
                        errors=("403",)),
            "get": _op("Your API keys: id, hint, created, last used, revoked (never the key)", "200",
                       ok_schema=KEY_LIST),
        },
        "/v1/keys/{id}": {"delete": _op("Revoke a key now (not your only one); the revoked key's "
                                        "metadata", "200", params=("id",), errors=("404", "409"),
                                        ok_schema=_ref(schemas.KeyView))},
        "/v1/openapi.json": {"get": _op("This document", "200", security=False,
                                         ok_schema=_ref(answers.OpenApiDocument))},
    }
    from engine.http import openapi_billing
    from engine.http.openapi_privacy import customer_paths

    doc = _document("smsroute customer API",
                    {**paths, **customer_paths(), **openapi_billing.customer_paths()},
                    "API key (sk_live_...)", version="3.1.0")
    _, components = msgspec.json.schema_components(STRUCTS,
                                                   ref_template="#/components/schemas/{name}")
    components["BatchAnswer"]["properties"]["results"]["items"] = {
        "oneOf": [_ref(schemas.AcceptedAnswer), ERROR]}
    components.pop("BatchResult", None)
    for name, more in answers.OPEN.items():
        components[name]["additionalProperties"] = more
    doc["components"]["schemas"].update(components)
    doc["info"]["x-business-codes"] = dict(schemas.BUSINESS_CODES)
    doc["webhooks"] = _webhooks()
    return doc


def control_document() -> dict[str, Any]:
    """The control port's document. Its request bodies are the types that decode them
    (:data:`engine.http.control_schemas.BODIES`, referenced with :func:`_ref`), and so are the answers
    automation parses (:data:`engine.http.control_answers.ANSWERS`); the rest are by hand."""
    o = _op
    paths = {
        "/healthz": {"get": o("Liveness", "200", security=False, ok_schema=_ref(ca.Health))},
        "/readyz": {"get": o("Readiness (503 not_ready / actors_down / store_full, naming them, when not)", "200",
                             security=False, errors=("503",), ok_schema=_ref(ca.Readiness))},
        "/metrics": {"get": _with_content(o("Prometheus text exposition", "200"), "200", {
            "text/plain": {"schema": {"type": "string"}}})},
        "/v1/openapi.json": {"get": o("This document", "200", security=False,
                                      ok_schema=_ref(answers.OpenApiDocument))},
        "/v1/carriers": {"get": o("Each carrier: suspended, connected, available, binds (SMPP: "
                                  "index, mode, state, window, last_error), window, counters; "
                                  "in a cluster one row per carrier, each worker's in workers",
                                  "200", ok_schema=_ref(ca.CarrierList))},
        "/v1/carriers/{name}/suspend": {"post": o("Suspend a carrier", "200", params=("name",),
                                                  errors=("403", "404"),
                                                  ok_schema=_ref(ca.CarrierSwitch))},
        "/v1/carriers/{name}/resume": {"post": o("Resume a carrier", "200", params=("name",),
                                                 errors=("403", "404"),
                                                 ok_schema=_ref(ca.CarrierSwitch))},
        "/v1/stats": {"get": o("Engine counters (in flight, queues, POPs, carriers; in a cluster "
                                "each worker's NATS link in worker_transport, and the workers whose "
                                "POP rows did not come within 2 s in pops_missing)", "200",
                                ok_schema=_ref(ca.Stats))},
        "/v1/routing": {
            "get": o("The routing table and rate card", "200", ok_schema=_ref(ca.RoutingView)),
            "put": o("Replace the routing table atomically (validated first); the table now, and "
                     "the price-change notices it mailed (mail: queued, or not_delivered without a "
                     "mail server; null when no price changed). The answer may be sent back as "
                     "the next PUT: its price_notices_queued and mail are read-only, ignored", "200",
                     body=_ref(cs.RoutingTable), errors=("403", "422"),
                     ok_schema=_ref(ca.RoutingReplaced)),
        },
        "/v1/accounts": {"post": o("Create an account; the API key and the webhook signing secret "
                                   "are shown once; mail: what became of its confirmation link "
                                   "(queued, or not_delivered without a mail server)", "201",
                                   body=_ref(cs.AccountCreate), ok_schema=_ref(ca.AccountCreated),
                                   errors=("403", "422"))},
        "/v1/accounts/{id}/keys": {
            "post": o("Create an API key for the account (shown once)", "201", params=("id",),
                      ok_schema=NEW_KEY, errors=("403", "404")),
            "get": o("The account's API keys (never the keys)", "200", params=("id",),
                     ok_schema=KEY_LIST, errors=("403", "404")),
        },
        "/v1/accounts/{id}/keys/{key_id}": {"delete": o(
            "Revoke one of the account's API keys; the revoked key's metadata", "200",
            params=("id", "key_id"), errors=("403", "404"), ok_schema=_ref(schemas.KeyView))},
        "/v1/accounts/{id}": {"get": o("An account's record (no secrets)", "200", params=("id",),
                                       errors=("403", "404"), ok_schema=_ref(ca.AccountView))},
        "/v1/accounts/{id}/deposits": {"post": o(
            "Credit a crypto deposit (a replay of the same transaction is idempotent; the same chain and "
            "tx_hash with another amount, account or from_address is 409 deposit_conflict)", "201",
            params=("id",), errors=("403", "404", "409", "422"), body=_ref(cs.Deposit),
            ok_schema=_ref(ca.DepositAnswer))},
        "/v1/accounts/{id}/senders": {"post": o("Register a sender ID", "201", params=("id",),
                                                body=_ref(cs.SenderRegistration),
                                                errors=("403", "404", "422"),
                                                ok_schema=_ref(schemas.SenderView))},
        "/v1/accounts/{id}/senders/{sender}": {"delete": o(
            "Remove a wrong sender ID (rectification, policy 7.1, e.g. asked by e-mail): submits from "
            "it are refused (403 unknown_sender) from now on; 404 unknown_sender if it is not "
            "registered; audit-logged without the sender", "200", params=("id", "sender"),
            errors=("403", "404"), ok_schema=_ref(schemas.SenderRemoved))},
        "/v1/accounts/{id}/restrict": {"post": o("Restrict or unrestrict processing", "200",
                                                 params=("id",), body=_ref(cs.Restriction),
                                                 errors=("403", "404"),
                                                 ok_schema=_ref(ca.RestrictionAnswer))},
        "/v1/accounts/{id}/close": {"post": o("Close an account", "200", params=("id",),
                                              errors=("403", "404"),
                                              ok_schema=_ref(ca.ClosedAnswer))},
        "/v1/accounts/{id}/export": {"get": o(
            "Access and portability: everything held about the account (no secrets)", "200",
            params=("id",), errors=("403", "404"), ok_schema=_ref(ca.AccountExport))},
        "/v1/accounts/{id}/rectify": {"post": o("Correct the account's email address; a new one is "
                                                "mailed a confirmation link (mail: queued, or "
                                                "not_delivered without a mail server; null for the "
                                                "same address)", "200",
                                                params=("id",), body=_ref(cs.Rectification),
                                                errors=("403", "404", "422"),
                                                ok_schema=_ref(ca.Rectified))},
        "/v1/accounts/{id}/erase": {"post": o(
            "Erase the account: record, keys and message records deleted; ledger rows "
            "pseudonymised (kept 7 years)", "200", params=("id",), errors=("403", "404"),
            ok_schema=_ref(ca.Erased))},
        "/v1/accounts/{id}/objections": {"post": o(
            "Object (or withdraw an objection) to processing for a purpose (analytics)", "200",
            params=("id",), body=_ref(cs.Objection), errors=("400", "403", "404"),
            ok_schema=_ref(ca.ObjectionAnswer))},
        "/v1/analytics": {"get": o("De-identified corridor and carrier aggregates", "200",
                                   ok_schema=_ref(oa.Analytics))},
        "/v1/retention": {"get": o("Retention status: sweeps, counts, exceptions (in a cluster each "
                                   "worker's sweeper in workers; the workers that did not answer "
                                   "within 2 s in workers_missing and holds_missing)", "200",
                                   ok_schema=_ref(oa.RetentionStatus))},
        "/v1/holds": {
            "get": o("Active legal holds and other retention exceptions (in a cluster the workers "
                     "that did not answer within 2 s in holds_missing)", "200",
                     ok_schema=_ref(ca.HoldList)),
            "post": o("Place a hold; idempotent by Idempotency-Key (201 placed, 200 the same request "
                      "again: its holds, nothing placed; 409 hold_conflict: the key with other content)",
                      "201", body=_ref(cs.HoldRequest), errors=("403", "409", "422"),
                      extra_params=IDEMPOTENCY, also_ok=("200",), ok_schema=_ref(ca.HoldsPlaced)),
        },
        "/v1/holds/{id}/release": {"post": o("Release a hold", "200", params=("id",),
                                             body=_ref(cs.HoldRelease),
                                             errors=("403", "404"), ok_schema=_ref(ca.HoldView))},
        "/v1/holds/{id}/disclosures": {"post": o(
            "Disclose one held body (audit-logged); under a lawful order only once the account "
            "holder's notice was sent, recorded as not permitted, or recorded as no_holders (no "
            "holder left to tell; else 409 notice_pending / "
            "holder_not_notified, also when the notice was not_delivered: only logged, no mail "
            "server configured); 409 hold_ended once the hold was released or expired (its "
            "copies are shredded), 404 for an unknown hold", "200", params=("id",), body=_ref(cs.Disclosure),
            errors=("400", "403", "404", "409"), ok_schema=_ref(ca.DisclosureAnswer))},
        "/v1/holds/{id}/notice": {"post": o(
            "Give a stuck lawful order's notice again (it left the outbox unsent, was not_delivered "
            "for want of a mail server, or the order has "
            "none on record), or record notice_not_permitted, for every hold of the order "
            "(audited); with no holder left (accounts erased or gone) the notice is recorded as "
            "no_holders, no mail; 409 mail_not_configured for a notice (not a waiver) while no mail "
            "server is configured; 409 while a notice is queued or was sent, after a waiver or "
            "no_holders, or for a hold "
            "that is not a lawful order; 409 hold_ended once the hold was released or expired, 404 "
            "for an unknown hold", "200", params=("id",), body=_ref(cs.OrderNoticeRequest),
            errors=("400", "403", "404", "409"), ok_schema=_ref(ca.NoticeGiven))},
        "/v1/audit": {"get": o("Every audit trail (control port, data-subject actions, retention "
                               "exceptions), oldest first; in a cluster the workers that did not "
                               "answer within 2 s in workers_missing (their retention-exception "
                               "entries are not in the page)", "200", extra_params=AUDIT_PARAMS,
                               ok_schema=_ref(ca.AuditPage))},
        "/v1/tokens": {
            "post": o("Create an operator token (only roles you hold; unique name, not system:)",
                      "201", body=_ref(cs.TokenRequest), errors=("403", "409", "422"),
                      ok_schema=_ref(ca.TokenCreated)),
            "get": o("Every operator token: name, roles, created, last use (never the token)", "200",
                     ok_schema=_ref(ca.TokenList)),
        },
        "/v1/tokens/{name}": {"delete": o("Revoke an operator token (only one whose roles you hold)",
                                          "200", params=("name",), errors=("403", "404"),
                                          ok_schema=_ref(ca.TokenRevoked))},
    }
    from engine.http import openapi_billing
    from engine.http.openapi_privacy import control_paths

    doc = _document("smsroute control port",
                    {**paths, **control_paths(), **openapi_billing.control_paths()},
                    "operator token (op_...)", version="3.1.0")
    _, components = msgspec.json.schema_components(
        (*cs.BODIES, *ca.ANSWERS, *oa.ANSWERS, answers.OpenApiDocument),
        ref_template="#/components/schemas/{name}")
    for name, more in {**ca.OPEN, **oa.OPEN, **answers.OPEN}.items():
        components[name]["additionalProperties"] = more
    doc["components"]["schemas"].update(components)
    for ops in doc["paths"].values():  # no per-key rate limit here (failed logins are limited apart)
        for op in ops.values():
            for answer in op["responses"].values():
                answer.pop("headers", None)
    return doc
