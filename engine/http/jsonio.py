"""Reading JSON request bodies strictly, and writing JSON answers.

A request body must be ``application/json``, valid UTF-8, one JSON object, with only known fields of the
right types; anything else is refused with a 4xx in the one error shape before a handler sees it. The body
size limit is aiohttp's ``client_max_size`` (the read stops at the limit, answered 413), and a declared
``Content-Length`` over the limit is refused before a single byte of the body is read. A body that does not
arrive within the app's body timeout is answered 408 and the connection closed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine.http.context import BODY_TIMEOUT, MAX_BODY
from engine.http.errors import HttpError

DEFAULT_BODY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Field:
    """One allowed field of a request object: its JSON type(s) and whether it must be present."""

    types: tuple[type, ...]
    required: bool = True
    nullable: bool = False


def _type_ok(value: Any, spec: Field) -> bool:
    if value is None:
        return spec.nullable
    if isinstance(value, bool) and bool not in spec.types:
        return False  # JSON true/false is never an integer here
    return isinstance(value, spec.types)


def _type_name(spec: Field) -> str:
    names = {str: "string", int: "integer", float: "number", list: "array", dict: "object",
             bool: "boolean"}
    return " or ".join(names.get(t, t.__name__) for t in spec.types)


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
    if request.content.is_eof():  # the whole body is already here (the usual case): no timer needed
        raw = await request.read()
    else:
        try:
            async with asyncio.timeout(request.app.get(BODY_TIMEOUT, DEFAULT_BODY_TIMEOUT_S)):
                raw = await request.read()  # aiohttp refuses past client_max_size with 413
        except TimeoutError:
            raise HttpError(408, "body_timeout", "the request body did not arrive in time",
                            close=True) from None
    if len(raw) > limit:  # a body without Content-Length (chunked) over this route's limit
        raise HttpError(413, "body_too_large", f"request body over {limit} bytes")
    return raw


def parse_json(raw: bytes, schema: dict[str, Field]) -> dict[str, Any]:
    """Decode UTF-8 JSON into one object and validate it against ``schema`` (400 otherwise)."""
    if not raw:
        raise HttpError(400, "invalid_json", "request body is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_json", "request body is not valid UTF-8") from None
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise HttpError(400, "invalid_json", "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise HttpError(400, "invalid_json", "request body must be a JSON object")
    return validate(data, schema)


async def read_json(request: web.Request, schema: dict[str, Field]) -> dict[str, Any]:
    """Read, parse and validate a JSON object body; raise ``HttpError`` (4xx) otherwise."""
    return parse_json(await read_body(request), schema)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _encodable(value: Any) -> bool:
    """False when a string (or a string in a list) holds an unpaired surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, list):
        return all(_encodable(v) for v in value)
    return True


def validate(data: dict[str, Any], schema: dict[str, Field]) -> dict[str, Any]:
    """Check fields of an already parsed object: no unknown ones, required present, types right."""
    unknown = sorted(set(data) - set(schema))
    if unknown:
        raise HttpError(400, "unknown_field", f"unknown field {unknown[0][:64]!r}")
    for name, spec in schema.items():
        if name not in data:
            if spec.required:
                raise HttpError(400, "missing_field", f"field {name!r} is required")
            continue
        if not _type_ok(data[name], spec):
            raise HttpError(400, "invalid_type", f"field {name!r} must be {_type_name(spec)}")
        if not _encodable(data[name]):
            raise HttpError(400, "invalid_json", f"field {name!r} holds an unpaired surrogate")
    return data


def json_response(data: Any, status: int = 200) -> web.Response:
    """A compact JSON answer."""
    return web.Response(status=status, body=json.dumps(data, separators=(",", ":")).encode(),
                        content_type="application/json")
