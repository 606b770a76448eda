"""The customer API's billing and privacy bodies as published, and as enforced, formats included.

The bodies of ``PUT /v1/balance/threshold`` and the privacy routes are msgspec types
(``engine.http.customer_schemas``) that decode each request and generate the document's schemas, so names,
required fields and types agree by construction. What is tested here, through real sockets, as for the
control port (``test_control_bodies_functional``), is that the *formats* the document states are the ones
enforced:

* a body drawn from the document is never refused for its form — not by the validator (whose refusals
  name the field: ``at `$.field```) and not by the engine for a format: a refusal must be one of the
  route's business answers in :data:`BUSINESS` (an account or challenge that does not exist);
* for each field with a documented format, a value that breaks it is refused with the customer API's code
  for that field (:data:`FIELD_CODES`, the codes these routes gave before the types), naming the field;
* a missing required field is ``missing_field``, an undocumented one ``unknown_field``;
* every string field states a format unless it is free by design (the signature: see
  ``SignedPrivacyRequest``), and the enums are the engine's own lists.

The engine here allows many unverified privacy requests per hour, so the rate limit does not answer
instead of the validator or the desk.
"""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings

from engine import Engine
from engine.http import customer_schemas, openapi
from engine.privacy.wallets import SCHEMES
from storage.dsar import REQUEST_TYPES
from tests.engine.http.body_checks import (
    STRUCTURE,
    case_id,
    check_format_refused,
    check_required_and_closed,
    error_of,
    format_cases,
    request_bodies,
)
from tests.engine.http.conftest import Client, funded_account, overrides
from tests.engine.http.jsonschema_values import from_schema

FIELD_CODES = {"usd": (400, "invalid_request"), "type": (400, "invalid_request"),
               "email": (400, "invalid_request"), "scheme": (400, "invalid_request"),
               "account_id": (400, "invalid_id"), "challenge_id": (401, "challenge_invalid")}
# What a well-formed body may still get from the engine: (status, code) — nothing about its form
BUSINESS: dict[tuple[str, str], set[tuple[int, str]]] = {
    ("PUT", "/v1/balance/threshold"): set(),
    ("POST", "/v1/privacy/requests"): set(),
    ("POST", "/v1/privacy/challenges"): {(404, "unknown_account")},
    ("POST", "/v1/privacy/signed-requests"): {(401, "challenge_invalid")},
}
FREE_TEXT = {("SignedPrivacyRequest", "signature")}
TYPED = {body.__name__ for body in customer_schemas.BODIES}


BODIES = request_bodies(openapi.customer_document(), TYPED.__contains__)  # typed in customer_schemas


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    settings = overrides()
    settings["privacy"] = {"unverified_requests_per_hour": 1_000_000}
    engine = Engine.start(tmp_path_factory.mktemp("bodies") / "data", http=True, overrides=settings)
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def client(running):
    account = funded_account(running, "customer-bodies@example.com")
    return Client(running.http.customer_port, account.api_key)


# --- the document and the engine's own lists --------------------------------------------------------


def test_every_typed_body_is_documented_from_its_type():
    routes = {(method, path) for method, path, _ in BODIES}
    assert routes == set(BUSINESS)
    doc = openapi.customer_document()
    for method, path in routes:
        ref = doc["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
        assert set(ref) == {"$ref"}, (method, path)  # not a schema written by hand


def test_every_string_field_states_a_format_unless_it_is_free_text():
    schemas = openapi.customer_document()["components"]["schemas"]
    for body in customer_schemas.BODIES:
        for name, prop in schemas[body.__name__]["properties"].items():
            for member in [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]:
                if member.get("type") == "string" and (body.__name__, name) not in FREE_TEXT:
                    assert {"pattern", "enum", "minLength", "maxLength"} & set(member), (body, name)


def test_the_documented_enums_are_the_engines_lists():
    assert get_args(customer_schemas.Scheme) == SCHEMES
    assert get_args(customer_schemas.DsarType) == REQUEST_TYPES


def test_there_are_formats_to_break():
    broken = {(path, name, keyword) for _, path, _, name, keyword, _ in format_cases(BODIES)}
    assert {("/v1/balance/threshold", "usd", "pattern"), ("/v1/privacy/requests", "email", "pattern"),
            ("/v1/privacy/requests", "email", "maxLength"), ("/v1/privacy/requests", "type", "enum"),
            ("/v1/privacy/challenges", "account_id", "pattern"),
            ("/v1/privacy/challenges", "type", "enum"),
            ("/v1/privacy/signed-requests", "challenge_id", "pattern"),
            ("/v1/privacy/signed-requests", "scheme", "enum")} <= broken


# --- through the sockets ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "schema"), BODIES, ids=case_id)
def test_a_body_drawn_from_the_document_is_not_refused_for_its_form(client, method, path, schema):
    business = BUSINESS[(method, path)]

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=from_schema(schema))
    def check(body):
        status, _, answer = client.request(method, path, body)
        code, message = error_of(answer)
        assert status < 300 or (status, code) in business, (body, answer)
        assert code not in STRUCTURE and "`$." not in message, (body, answer)

    check()


@pytest.mark.parametrize(("method", "path", "schema", "name", "keyword", "value"), format_cases(BODIES),
                         ids=case_id)
def test_a_value_breaking_a_documented_format_is_refused_naming_the_field(
        client, method, path, schema, name, keyword, value):
    check_format_refused(client, method, path, schema, name, keyword, value, FIELD_CODES[name])


@pytest.mark.parametrize(("method", "path", "schema"), BODIES, ids=case_id)
def test_each_required_field_is_required_and_an_undocumented_one_refused(client, method, path, schema):
    check_required_and_closed(client, method, path, schema)
