"""The customer API's message routes: submit one, submit a batch, read one, list them.

* ``POST /v1/messages`` — one message; ``202`` only once the engine reports it durable.
* ``POST /v1/messages/batch`` ``{"messages": [...]}`` — up to 1,000 in one request and ONE hand-off to the
  engine (:meth:`engine.Engine.submit_many`); each message gets its own result, in order: the single
  submit's answer or the error object. Answered ``200`` once every message is durable or refused; an
  entry that fails unexpectedly (a bug, not a refusal) gets ``internal_error`` alone, never a 500 for
  the whole batch, whose other messages may be accepted and billed already.
* ``GET /v1/messages/{id}`` — status and metadata (never the body); another account's id is 404.
* ``GET /v1/messages`` — the account's messages, newest first: ``limit`` (1-200, default 50), ``cursor``
  (the previous page's ``next_cursor``), ``status`` (repeatable), ``since``/``until`` (unix seconds of
  submission).

Both submits honour ``Idempotency-Key`` (:mod:`engine.http.idempotency`): the whole batch is one request,
replayed whole. Bodies are decoded by the msgspec types of :mod:`engine.http.schemas` (the OpenAPI
document is generated from them). Nothing here logs or stores a message body.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.apikeys import PresentedKey
from engine.bridge import wait_all
from engine.errors import InputError, SmsrouteError, StorageError
from engine.http import schemas as s
from engine.http.context import API_KEY, CTX, HttpContext
from engine.http.errors import HttpError, status_for
from engine.http.idempotency import StoredAnswer, key_of, request_hash
from engine.http.jsonio import read_body
from engine.http.middleware import require_account
from engine.http.params import query_value

log = logging.getLogger(__name__)

Submit = Callable[[], Awaitable[tuple[int, bytes, bool]]]  # -> (status, answer body, sent something)

JSON = "application/json"
BATCH_HASH_PREFIX = b"POST /v1/messages/batch\n"  # a batch and a single submit never share a hash
INTERNAL_ERROR = "internal_error"  # a batch entry that failed unexpectedly (a bug), alone
OUTCOME_UNKNOWN = ("internal error; this message's outcome is unknown: check your messages "
                   "(GET /v1/messages) before sending it again")


def _json(body: bytes, status: int) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON)


def _answer(accepted, client_ref: str | None) -> s.AcceptedAnswer:
    return s.AcceptedAnswer(accepted.message_id, accepted.status, accepted.segments,
                            accepted.price_micro_usd, accepted.encoding, accepted.pop, client_ref)


async def post_message(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    raw = await read_body(request)

    async def validate() -> Submit:
        msg = s.decode(raw, s.MessageRequest)
        if msg.callback_url is not None:  # refused now (422) rather than silently dropped at delivery
            await ctx.destinations.check(msg.callback_url, "callback_url")

        async def submit() -> tuple[int, bytes, bool]:
            started = time.perf_counter()
            accepted = await wait_one(ctx.engine.submit_future(
                request[API_KEY], msg.to, msg.sender, msg.body,
                validity_seconds=msg.validity_seconds, callback_url=msg.callback_url,
                client_ref=msg.client_ref))
            ctx.metrics.observe_submit(accepted.pop, accepted.country, time.perf_counter() - started)
            return 202, s.encoder.encode(_answer(accepted, msg.client_ref)), True

        return submit

    return await _once(ctx, request, account_id, raw, validate)


async def wait_one(fut):
    return (await wait_all([fut]))[0].result()


async def post_batch(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    raw = await read_body(request, int(getattr(ctx.http, "max_batch_body_bytes",
                                               ctx.http.max_body_bytes)))

    async def validate() -> Submit:
        results, submits = await _batch_items(ctx, raw)
        return lambda: _submit_batch(ctx, request[API_KEY], results, submits)

    return await _once(ctx, request, account_id, BATCH_HASH_PREFIX + raw, validate)


async def _batch_items(ctx: HttpContext, raw: bytes
                       ) -> tuple[list[s.BatchResult], list[tuple[int, s.MessageRequest]]]:
    """The batch decoded: a result per message (an error object for each refused one) and the
    messages to submit, with their places."""
    envelope = s.decode(raw, s.BatchEnvelope)
    results: list[s.BatchResult] = [s.BatchResult()] * len(envelope.messages)
    valid: list[tuple[int, s.MessageRequest]] = []
    for i, item in enumerate(envelope.messages):
        try:
            valid.append((i, s.decode(bytes(item), s.MessageRequest)))
        except HttpError as exc:
            results[i] = s.BatchResult(error=s.ErrorDetail(exc.code, _at_entry(exc.message, i)))
    checked: dict[str, HttpError | None] = {}
    for url in {m.callback_url for _, m in valid if m.callback_url is not None}:
        try:
            await ctx.destinations.check(url, "callback_url")
            checked[url] = None
        except SmsrouteError as exc:
            checked[url] = HttpError(status_for(exc), exc.code, exc.message)
    submits = []
    for i, msg in valid:
        refused = checked.get(msg.callback_url) if msg.callback_url else None
        if refused is not None:
            results[i] = s.BatchResult(error=s.ErrorDetail(refused.code, refused.message))
        else:
            submits.append((i, msg))
    return results, submits


def _at_entry(message: str, i: int) -> str:
    """An entry's decoding error located in the whole batch body, the way a single submit's names its
    place: `` - at `$.to` `` becomes `` - at `$.messages[3].to` ``, and an error that names no place
    (not an object, an unknown or missing field, a key twice) gets `` - at `$.messages[3]` ``. (Each
    entry is decoded on its own, so the decoder's paths start at the entry.)"""
    where = f"`$.messages[{i}]"
    if message == s.NOT_OBJECT:
        return f"each entry of `messages` must be a JSON object - at {where}`"
    head, at, path = message.rpartition(" - at `$")
    if at:
        return f"{head} - at {where}{path}"
    return f"{message} - at {where}`"


async def _submit_batch(ctx: HttpContext, api_key: PresentedKey, results: list[s.BatchResult],
                        submits: list[tuple[int, s.MessageRequest]]) -> tuple[int, bytes, bool]:
    unknown = 0
    futures = ctx.engine.submit_many(api_key, [
        {"to": m.to, "sender": m.sender, "body": m.body, "validity_seconds": m.validity_seconds,
         "callback_url": m.callback_url, "client_ref": m.client_ref} for _, m in submits])
    for (i, msg), fut in zip(submits, await wait_all(futures), strict=True):
        exc = fut.exception()
        if exc is None:
            a = fut.result()
            results[i] = s.BatchResult(a.message_id, a.status, a.segments, a.price_micro_usd,
                                       a.encoding, a.pop, msg.client_ref)
        elif isinstance(exc, SmsrouteError):
            results[i] = s.BatchResult(error=s.ErrorDetail(exc.code, exc.public_message))
            unknown += exc.maybe_sent  # (no answer in time: it may be accepted)
        else:  # a bug: this entry alone; the others may be accepted and billed already
            log.error("batch entry failed unexpectedly: %s", type(exc).__name__)
            unknown += 1
            results[i] = s.BatchResult(error=s.ErrorDetail(INTERNAL_ERROR, OUTCOME_UNKNOWN))
    accepted = sum(1 for r in results if r.error is None)
    body = s.encoder.encode(s.BatchAnswer(results, accepted, len(results) - accepted))
    return 200, body, accepted + unknown > 0  # an unknown outcome may have sent: keep it


async def _once(ctx: HttpContext, request: web.Request, account_id: str, hashed: bytes,
                validate: Callable[[], Awaitable[Submit]]) -> web.Response:
    """Validate the request and run its submit at most once per ``Idempotency-Key``: a replay gets the
    first answer, a pending record is durable before anything is sent, and only an answer that sent
    something is kept. ``hashed``: the bytes whose keyed hash tells a replay from a reused key.
    ``validate`` (decoding, the callback URL's DNS check) returns the submit; it runs only for a new
    request, after the key's lookup: a replay gets the stored answer whatever the DNS says now."""
    idem = key_of(request.headers)
    if idem is None:
        status, body, _ = await (await validate())()
        return _json(body, status)
    body_hash = request_hash(hashed, ctx.idempotency_secret)
    stored = ctx.idempotency.lookup(account_id, idem, body_hash)
    if stored is not None:
        resp = _json(stored.body, stored.status)
        resp.headers["Idempotent-Replayed"] = "true"
        return resp
    ctx.idempotency.begin(account_id, idem, body_hash)  # before validating: a concurrent one is 409
    try:
        submit = await validate()  # refused: nothing durable yet, the key is simply free again
        await ctx.idempotency.reserve(account_id, idem, body_hash, time.time())
        try:
            status, body, sent = await submit()
        except SmsrouteError as exc:
            if not exc.maybe_sent:  # refused or not durable: nothing was sent, a retry re-evaluates
                await _abandon(ctx, account_id, idem)
            # else (no answer in time, it may be accepted): the pending record stays, so a retry
            # answers 409 idempotency_outcome_unknown instead of sending the message a second time
            raise
        if not sent:  # e.g. a batch whose every message was refused
            await _abandon(ctx, account_id, idem)
            return _json(body, status)
        try:
            await ctx.idempotency.store(account_id, idem,
                                        StoredAnswer(body_hash, status, body, time.time()))
        except StorageError:  # the message is accepted: say so; a retry will get 409 outcome unknown
            log.error("idempotency answer not stored")
        return _json(body, status)
    finally:
        ctx.idempotency.end(account_id, idem)


async def _abandon(ctx: HttpContext, account_id: str, idem: str) -> None:
    try:
        await ctx.idempotency.abandon(account_id, idem)
    except StorageError:
        log.error("pending idempotency record not deleted")


def view(record) -> s.MessageView:
    """The API's view of a message record (never the body, never the account id)."""
    return s.MessageView(
        record.message_id, record.status, record.to, record.sender, record.country, record.pop,
        record.carrier, record.encoding, record.segments, record.price_micro_usd,
        record.submitted_at, record.updated_at, record.carrier_acked_at or None, record.error,
        record.validity_seconds, record.callback_url, record.attempts,
        record.refunded_micro_usd, record.client_ref)


async def get_message(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    # off the loop: in a cluster the lookup asks the account's workers over NATS
    record = await ctx.call(lambda: ctx.engine.status(request.match_info["id"], account_id=account_id))
    if record is None or record.account_id != account_id:  # another account's id looks absent
        raise HttpError(404, "not_found", "no such message")
    return _json(s.encoder.encode(view(record)), 200)


def _query_time(request: web.Request, name: str) -> float | None:
    value = query_value(request, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return -1.0  # (refused by the listing, as any time out of range)


def _page_args(request: web.Request) -> dict:
    """The query's values, typed; their bounds are the listing's own (``engine.listing``), which
    the embedding API gets too."""
    try:
        limit = int(query_value(request, "limit", "50"))
    except ValueError:
        limit = 0
    statuses = [v for value in request.query.getall("status", []) for v in value.split(",") if v]
    return {"limit": limit, "cursor": query_value(request, "cursor"), "statuses": frozenset(statuses) or None,
            "since": _query_time(request, "since"), "until": _query_time(request, "until")}


async def list_messages(request: web.Request) -> web.Response:
    ctx: HttpContext = request.app[CTX]
    account_id = require_account(request)
    args = _page_args(request)
    try:
        records, next_cursor = await ctx.call(lambda: ctx.engine.messages(account_id, **args))
    except InputError as exc:  # a value out of the listing's bounds: the query's fault
        raise HttpError(400, "invalid_query", exc.message) from None
    return _json(s.encoder.encode(s.MessageList([view(r) for r in records], next_cursor)), 200)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/messages", post_message)
    router.add_get("/v1/messages", list_messages, allow_head=False)
    router.add_post("/v1/messages/batch", post_batch)
    router.add_get("/v1/messages/{id}", get_message, allow_head=False)

