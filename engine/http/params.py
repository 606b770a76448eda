"""Every id in a path is checked for its shape before a handler sees it; a query parameter read as one
value is refused when given twice (:func:`query_value`).

An id that cannot exist — empty, too long, wrong characters — is answered ``404 not_found`` at once,
so no handler passes it on to a store (an empty LMDB key used to surface as a 500). Each path parameter
of each route names its kind in :data:`PATH_IDS`; a route with a parameter missing there is refused with
404 as well (and ``tests/engine/http/test_params.py`` fails), so a new route cannot skip the check.
Ids in request bodies are checked by the body types that decode them (their patterns are these shapes,
:mod:`engine.http.control_schemas`; 400 ``invalid_id``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.http.errors import HttpError
from engine.http.tokens import NAME as TOKEN_NAME

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SHAPES: dict[str, re.Pattern[str]] = {
    "message": re.compile(r"^msg_[0-9a-f]{32}$"),
    "account": re.compile(r"^acc_[0-9a-f]{16}$"),
    "hold": re.compile(r"^hold_[0-9a-f]{16}$"),
    "api key": re.compile(r"^key_[0-9a-f]{24}$"),
    "carrier": re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
    "token": TOKEN_NAME,
    "data-subject request": re.compile(r"^dsr_[0-9a-f]{16}$"),
    "incident": re.compile(r"^inc_[0-9a-f]{16}$"),
    "support case": re.compile(r"^sup_[0-9a-f]{16}$"),
    "challenge": re.compile(r"^chl_[0-9a-f]{32}$"),  # storage.verification.Challenges.issue (body only)
    # engine.accounts.validate_sender: 1-11 letters/digits (some letter), or 3-15 digits
    "sender": re.compile(r"(?=.{1,11}$)[0-9 .\-&]*[A-Za-z][A-Za-z0-9 .\-&]*|\+?[0-9]{3,15}"),
}

# (route template, parameter) -> the kind of id it holds
PATH_IDS: dict[tuple[str, str], str] = {
    ("/v1/messages/{id}", "id"): "message",
    ("/v1/keys/{id}", "id"): "api key",
    ("/v1/senders/{sender}", "sender"): "sender",
    ("/v1/accounts/{id}/senders/{sender}", "sender"): "sender",
    ("/v1/carriers/{name}/suspend", "name"): "carrier",
    ("/v1/carriers/{name}/resume", "name"): "carrier",
    ("/v1/holds/{id}/release", "id"): "hold",
    ("/v1/holds/{id}/disclosures", "id"): "hold",
    ("/v1/holds/{id}/notice", "id"): "hold",
    ("/v1/tokens/{name}", "name"): "token",
    ("/v1/accounts/{id}/keys/{key_id}", "key_id"): "api key",
}
_PREFIXES = {"/v1/dsar/{id}": "data-subject request", "/v1/incidents/{id}": "incident",
             "/v1/support/cases/{id}": "support case"}


def kind_of(template: str, param: str) -> str | None:
    """The kind of id a route's path parameter holds (every ``/v1/accounts/{id}…`` is an account)."""
    if template.startswith("/v1/accounts/{id}") and param == "id":
        return "account"
    for prefix, kind in _PREFIXES.items():
        if param == "id" and (template == prefix or template.startswith(prefix + "/")):
            return kind
    return PATH_IDS.get((template, param))


def query_value(request: web.Request, name: str, default: str | None = None) -> str | None:
    """The one value of a single-value query parameter, or ``default`` when absent.

    ``?limit=1&limit=500`` is ambiguous — which did the client mean? — as a key twice in a JSON body is
    (400 ``duplicate_key``): refused 400 ``duplicate_parameter`` instead of reading the first. Parameters
    that may repeat by design (``status``, ``kind``) are read with ``getall`` instead."""
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise HttpError(400, "duplicate_parameter",
                        f"the query parameter {name} is given {len(values)} times; give it once")
    return values[0] if values else default


def well_formed(kind: str, value: object) -> bool:
    return isinstance(value, str) and bool(SHAPES[kind].fullmatch(value))


def check_path_ids(request: web.Request) -> None:
    """404 for a path id of the wrong shape (or a parameter without a declared kind). A route without
    path parameters (the hot ones: submit, batch) costs one truthiness test of its match info."""
    match_info = request.match_info
    if not match_info:  # no parameters (an unmatched route has none either)
        return
    resource = match_info.route.resource
    if resource is None:
        return
    for param, value in match_info.items():
        kind = kind_of(resource.canonical, param)
        if kind is None or not well_formed(kind, value):
            raise HttpError(404, "not_found", f"no such {kind or 'resource'}")


@web.middleware
async def path_ids_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """404 for a path id of the wrong shape (or a parameter without a declared kind)."""
    check_path_ids(request)
    return await handler(request)
