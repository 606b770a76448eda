"""The control port's published request bodies and its validator agree (names, required fields, types).

The control routes validate bodies with field tables (``engine.http.jsonio.Field``) while their OpenAPI
document is written by hand (``engine.http.openapi``); the customer API had five disagreements of this kind
before its bodies became msgspec types. For every documented body, through real sockets: all documented
fields with values of the documented types pass the field check, leaving out any required field is
``missing_field``, and an undocumented field is ``unknown_field``. (A value's own rules — an e-mail address,
an amount string — are the handler's, answered 400 ``invalid_request`` or 422; they are not checked here.)
Operations whose path names another object than an account (a hold, a request, an incident, a case) answer
404 for an invented id before reading the body; their bodies are exercised by their own functional tests.
"""

from __future__ import annotations

import re

import pytest

from engine.http import openapi
from tests.engine.http.conftest import Client, funded_account

FIELD_CHECKS = {"unknown_field", "invalid_type", "missing_field"}
SAMPLE = {"string": "x", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}


def _bodies() -> list[tuple[str, str, dict]]:
    doc = openapi.control_document()
    out = []
    for path, ops in doc["paths"].items():
        if set(re.findall(r"\{([^}]+)\}", path)) - {"id"} or ("{id}" in path and
                                                                not path.startswith("/v1/accounts/")):
            continue  # another object's id (see the module docstring)
        for method, op in ops.items():
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema and schema.get("properties"):
                out.append((method.upper(), path, schema))
    return out


def _sample(prop: dict) -> object:
    return prop["enum"][0] if "enum" in prop else SAMPLE[prop.get("type", "string")]


def _code(answer: object) -> str | None:
    return answer.get("error", {}).get("code") if isinstance(answer, dict) else None


@pytest.fixture(scope="module")
def client(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("bodies", {"viewer", "operator", "privacy"}))


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, "bodies@example.com")


def test_there_are_documented_bodies_to_check():
    assert len(_bodies()) >= 10


@pytest.mark.parametrize(("method", "path", "schema"), _bodies(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_documented_body_passes_the_field_check_and_each_required_field_is_required(
        client, account, method, path, schema):
    url = path.replace("{id}", account.id)
    full = {name: _sample(prop) for name, prop in schema["properties"].items()}
    status, _, answer = client.request(method, url, full)
    assert _code(answer) not in FIELD_CHECKS, (status, answer)
    for name in schema.get("required", []):
        status, _, answer = client.request(method, url, {k: v for k, v in full.items() if k != name})
        assert (status, _code(answer)) == (400, "missing_field"), (name, answer)
    status, _, answer = client.request(method, url, {**full, "undocumented_field": 1})
    assert (status, _code(answer)) == (400, "unknown_field"), answer
