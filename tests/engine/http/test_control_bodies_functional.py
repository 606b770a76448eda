"""The control port's published request bodies and its validator agree, formats included.

The bodies are msgspec types (``engine.http.control_schemas``) that decode each request and generate the
document's schemas, so names, required fields and types agree by construction; what is tested here,
through real sockets, is that the *formats* the document states are the ones enforced:

* a body drawn from the document (hypothesis, values meeting every pattern, bound and enum) is never
  refused for its form: not by the validator (whose refusals name the field: ``at `$.field```), and not by
  the engine for a format either — an engine refusal must be one of the route's business rules listed in
  :data:`BUSINESS` (a time relative to now, an unknown id, a taken name, ...);
* for each field with a documented format, a value that breaks it (derived from the document) is refused
  with the control port's code for that field (400 ``invalid_request``; ``invalid_id`` for ids, 422
  ``invalid_roles`` / ``invalid_token_name``), and the answer names the field;
* a missing required field is ``missing_field``, an undocumented one ``unknown_field``;
* every string field states a format unless it is free text by design (:data:`FREE_TEXT`), and the enums
  are the engine's own lists.

Paths with an id get a well-formed one (an account's paths the test's real account), so each body is
decoded before the handler looks the object up.
"""

from __future__ import annotations

import time
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings

from engine.accounts import OBJECTABLE
from engine.http import control_schemas as cs
from engine.http import openapi
from engine.http.tokens import ROLES
from engine.privacy.wallets import SCHEMES
from storage.dsar import REQUEST_TYPES
from storage.holds import HoldKind
from tests.engine.http.body_checks import (
    STRUCTURE,
    case_id,
    check_format_refused,
    check_required_and_closed,
    error_of,
    format_cases,
    request_bodies,
)
from tests.engine.http.conftest import Client, funded_account
from tests.engine.http.jsonschema_values import from_schema

FIELD_CODES = {"account_id": (400, "invalid_id"), "message_ids": (400, "invalid_id"),
               "roles": (422, "invalid_roles"), "name": (422, "invalid_token_name")}
OTHER_FIELDS = (400, "invalid_request")
PATH_IDS = {"/v1/holds/": "hold_" + "0" * 16, "/v1/dsar/": "dsr_" + "0" * 16,
            "/v1/incidents/": "inc_" + "0" * 16, "/v1/support/cases/": "sup_" + "0" * 16}
# Engine refusals of a well-formed body that are business rules, not formats: (status, code, message part)
MAIL_SAFE = [(400, "invalid_request", "may not contain")]
BUSINESS: dict[tuple[str, str], list[tuple[int, str, str]]] = {
    ("POST", "/v1/holds"): [(400, "invalid_request", "in the future"),
                            (400, "invalid_request", "lasts at most"),
                            (400, "invalid_request", "legal hold names message_ids"),
                            (400, "invalid_request", "must name messages or an account"),
                            (400, "invalid_request", "covers an account"),
                            # a lawful order: its authority, a waiver's basis, a notice mail-safe
                            (400, "invalid_request", "states its authority"),
                            (400, "invalid_request", "belong to a lawful order"),
                            (400, "invalid_request", "needs a reason and a reference"),
                            # shown to the holder: one bounded line (a rule of the kind, not the field)
                            (400, "invalid_request", "a lawful order's reference is"),
                            *MAIL_SAFE],
    ("POST", "/v1/dsar/{id}/extend"): MAIL_SAFE,
    ("POST", "/v1/dsar/{id}/refuse"): MAIL_SAFE,
    ("POST", "/v1/incidents"): [*MAIL_SAFE, (400, "invalid_request", "not in the future")],
    ("PUT", "/v1/routing"): [(422, "invalid_config", "")],
    ("POST", "/v1/policy-changes"): [*MAIL_SAFE, (422, "notice_too_short", "")],
}
# String fields whose text is free by design (a note, a reference, a table validated by the engine).
FREE_TEXT = {("HoldRelease", "reason"), ("DsarRefusal", "reason"), ("AuthorityNotification", "reference"),
             # read by the engine after it takes the challenge (a malformed one uses it up), like
             # the customer port's SignedPrivacyRequest
             ("DsarSignedRequest", "signature")}


def _document() -> dict:
    return openapi.control_document()


BODIES = request_bodies(_document())


def _url(path: str, account_id: str) -> str:
    if path.startswith("/v1/accounts/{id}"):
        return path.replace("{id}", account_id)
    prefix = next((p for p in PATH_IDS if path.startswith(p)), None)
    return path.replace("{id}", PATH_IDS[prefix]) if prefix else path


def _names_a_field(message: str) -> bool:
    """The validator's refusals name the field they are about (msgspec's ``- at `$.field```)."""
    return "`$." in message


@pytest.fixture(scope="module")
def client(running):
    return Client(running.http.control_port,
                  running.http.ctx.tokens.create("bodies", {"viewer", "operator", "privacy"}))


@pytest.fixture(scope="module")
def account(running):
    return funded_account(running, "bodies@example.com")


# --- the document and the engine's own lists --------------------------------------------------------


def test_every_control_body_is_documented_from_its_type():
    doc = _document()
    assert doc["openapi"].startswith("3.1")
    refs = {op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for ops in doc["paths"].values() for op in ops.values() if "requestBody" in op}
    assert refs == {body.__name__ for body in cs.BODIES}


def test_every_string_field_states_a_format_unless_it_is_free_text():
    schemas = _document()["components"]["schemas"]
    for body in cs.BODIES:
        for name, prop in schemas[body.__name__]["properties"].items():
            members = [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]
            for member in members:
                if member.get("type") == "string" and (body.__name__, name) not in FREE_TEXT:
                    assert {"pattern", "enum", "minLength", "maxLength"} & set(member), (body, name)


def test_the_documented_enums_are_the_engines_lists():
    assert set(get_args(cs.Role)) == set(ROLES)
    assert set(get_args(cs.HoldKind)) == {k.value for k in HoldKind}
    assert get_args(cs.DsarType) == REQUEST_TYPES
    assert get_args(cs.Purpose) == OBJECTABLE
    assert get_args(cs.Scheme) == SCHEMES


# --- through the sockets ------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "schema"), BODIES, ids=case_id)
def test_a_body_drawn_from_the_document_is_not_refused_for_its_form(client, account, method, path,
                                                                       schema):
    url = _url(path, account.id)
    business = BUSINESS.get((method, path), [])

    @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=from_schema(schema))
    def check(body):
        if "until" in body:  # keep a hold's time near now, so its refusals are about the body's form
            body["until"] = time.time() + 3600
        status, _, answer = client.request(method, url, body)
        code, message = error_of(answer)
        assert status < 500, (status, answer)
        assert code not in STRUCTURE and not _names_a_field(message), (body, answer)
        if status in (400, 422):
            assert any(status == s and code == c and part in message for s, c, part in business), \
                (body, answer)

    check()


@pytest.mark.parametrize(("method", "path", "schema", "name", "keyword", "value"), format_cases(BODIES),
                         ids=case_id)
def test_a_value_breaking_a_documented_format_is_refused_naming_the_field(
        client, account, method, path, schema, name, keyword, value):
    check_format_refused(client, method, _url(path, account.id), schema, name, keyword, value,
                         FIELD_CODES.get(name, OTHER_FIELDS))


@pytest.mark.parametrize(("method", "path", "schema"), BODIES, ids=case_id)
def test_each_required_field_is_required_and_an_undocumented_one_refused(client, account, method,
                                                                         path, schema):
    check_required_and_closed(client, method, _url(path, account.id), schema)


def test_there_are_formats_to_break():
    assert len(format_cases(BODIES)) >= 30
