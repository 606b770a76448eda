"""Reading JSON request bodies (content type, size, timeout), and writing JSON answers.

A request body must be ``application/json`` and within the size limit, else it is refused with a 4xx in the
one error shape before a byte of it is decoded. What it must hold — valid UTF-8, one JSON object, only known
fields of the right types and formats — is checked while it is decoded, by the msgspec type of its route
(:func:`engine.http.schemas.decode`; the types are in :mod:`engine.http.schemas`,
:mod:`engine.http.customer_schemas` and :mod:`engine.http.control_schemas`), so the OpenAPI documents
generated from those types and the validation cannot disagree.

The body size limit is aiohttp's ``client_max_size`` (the read stops at the limit, answered 413), and a
declared ``Content-Length`` over the limit is refused before a single byte of the body is read. A body that
does not arrive within the app's body timeout is answered 408 and the connection closed. aiohttp decodes a
``Content-Encoding: gzip`` or ``deflate`` body as it reads it (the size limit counts decoded bytes); one
that does not decode as it says is the client's error, ``400 invalid_content_encoding`` (it was a 500, and
a traceback in the log, telling the client to retry a request that can never succeed).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from engine.http.context import BODY_TIMEOUT, MAX_BODY
from engine.http.errors import HttpError

DEFAULT_BODY_TIMEOUT_S = 30.0
CORRUPT_ENCODING = "request body does not decode as its Content-Encoding (gzip or deflate) says"


def check_content_length(request: web.Request, limit: int | None = None) -> int:
    """413 before reading when the declared body length is over the limit (the app's by default)."""
    limit = request.app[MAX_BODY] if limit is None else limit
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, "body_too_large", f"request body over {limit} bytes")
    return limit


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The raw body of a JSON request: 415 unless ``application/json``, 413 over the size limit (the
    app's ``max_body_bytes``, or ``limit`` for a route that allows more, e.g. a batch)."""
    if request.content_type != "application/json":
        raise HttpError(415, "unsupported_media_type", "Content-Type must be application/json")
    limit = check_content_length(request, limit)
    try:
        if request.content.is_eof():  # the whole body is already here (the usual case): no timer needed
            raw = await request.read()
        else:
            try:
                async with asyncio.timeout(request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)):
                    raw = await request.read()  # aiohttp refuses past client_max_size with 413
            except TimeoutError:
                raise HttpError(408, "body_timeout", "the request body did not arrive in time",
                                close=True) from None
    except web.RequestPayloadError as exc:
        if isinstance(exc.__cause__, ContentEncodingError):
            raise HttpError(400, "invalid_content_encoding", CORRUPT_ENCODING) from None
        raise
    if len(raw) > limit:  # a body without Content-Length (chunked) over this route's limit
        raise HttpError(413, "body_too_large", f"request body over {limit} bytes")
    return raw


def json_response(data: Any, status: int = 200) -> web.Response:
    """A compact JSON answer."""
    return web.Response(status=status, body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json")
