"""The OpenAPI documents describe every route of both apps, and nothing that is not a route."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.http import openapi
from engine.http.app_control import build_control_app
from engine.http.app_customer import build_customer_app
from tests.engine.http.jsonschema_values import from_schema

CTX = SimpleNamespace(http=SimpleNamespace(max_body_bytes=1024))


def _routes(app) -> set[tuple[str, str]]:
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD"}


def _described(doc) -> set[tuple[str, str]]:
    return {(method, path) for path, ops in doc["paths"].items() for method in ops}


@pytest.mark.parametrize(("build", "document"), [
    (build_customer_app, openapi.customer_document),
    (build_control_app, openapi.control_document),
])
def test_every_route_is_described_and_every_description_is_a_route(build, document):
    doc = document()
    assert doc["openapi"].startswith("3.")
    assert _routes(build(CTX)) == _described(doc)


@pytest.mark.parametrize("document", [openapi.customer_document, openapi.control_document])
def test_every_operation_documents_its_error_shape_and_path_parameters(document):
    doc = document()
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op["responses"]["400"]["content"]["application/json"]["schema"] == openapi.ERROR
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == {seg[1:-1] for seg in path.split("/") if seg.startswith("{")}


def test_the_submit_operation_lists_every_status_the_issue_requires():
    op = openapi.customer_document()["paths"]["/v1/messages"]["post"]
    assert {"202", "400", "401", "402", "403", "409", "413", "415", "422", "429", "503"} <= set(
        op["responses"])


def _patterned(node, components, found):
    """Every string schema with a pattern in a document (``$ref``s followed once)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and "pattern" in node:
            found[node["pattern"]] = node
        for value in node.values():
            _patterned(value, components, found)
    elif isinstance(node, list):
        for value in node:
            _patterned(value, components, found)
    return found


@pytest.mark.parametrize("document", [openapi.customer_document, openapi.control_document],
                         ids=["customer", "control"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_documented_pattern_lets_a_trailing_newline_through(document, data):
    """Python's ``$`` also matches before a final newline; the validator checks these patterns with
    Python's ``re`` (msgspec), so ``"ACME\\n"`` would pass as a sender or an e-mail address. Every
    documented pattern must refuse a value it allows with a newline appended."""
    doc = document()
    components = doc.get("components", {}).get("schemas", {})
    for pattern, schema in sorted(_patterned(doc, components, {}).items()):
        if "$" not in pattern:
            continue  # (an unanchored "some character is not a space" check)
        value = data.draw(from_schema(schema), label=pattern)
        assert re.search(pattern, value), (pattern, value)
        assert re.search(pattern, value + "\n") is None, pattern


def test_a_refused_format_is_explained_as_the_document_describes_it_not_by_its_regex():
    """A customer cannot act on "Expected `str` matching regex '^\\+…'"; the message says what the
    published document says about the field instead, and still names where (nested fields too)."""
    from engine.http import schemas
    from engine.http.errors import HttpError

    doc = openapi.customer_document()
    props = doc["components"]["schemas"]["MessageRequest"]["properties"]
    for body, where in [(b'{"to": "4915112345678", "from": "ACME", "body": "hi"}', "`$.to`"),
                        (b'{"messages": [{"to": "+4915112345678", "from": "ACME", "body": "hi"}, '
                         b'{"to": "0", "from": "ACME", "body": "hi"}]}', "`$.messages[1].to`")]:
        kind = schemas.BatchRequest if b"messages" in body else schemas.MessageRequest
        with pytest.raises(HttpError) as refused:
            schemas.decode(body, kind)
        assert refused.value.code == "invalid_number"
        message = refused.value.message
        assert message == f"Expected {props['to']['description']} - at {where}"
        assert "regex" not in message and "[0-9]" not in message


@pytest.mark.parametrize("document", [openapi.customer_document, openapi.control_document],
                         ids=["customer", "control"])
def test_every_documented_body_pattern_has_a_description_to_explain_a_refusal(document):
    """(What the test above relies on for every field: without one the regex would be quoted.)"""
    doc = document()
    patterned = _patterned(doc["components"]["schemas"], {}, {})
    assert patterned
    assert [p for p, node in patterned.items() if not node.get("description")] == []


def test_the_customer_document_publishes_every_webhook_the_engine_sends_as_its_type():
    """Receivers generate code from the document: the status event (alone or batched) and the
    low-balance notice are both there, as the types the engine encodes them with."""
    from engine.http import schemas

    hooks = openapi.customer_document()["webhooks"]
    body = {name: hook["post"]["requestBody"]["content"]["application/json"]["schema"]
            for name, hook in hooks.items()}
    assert body["messageStatus"]["oneOf"] == [
        {"$ref": "#/components/schemas/Event"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}]
    assert body["accountLowBalance"] == {"$ref": "#/components/schemas/LowBalanceEvent"}
    # a batch's Smsroute-Event-Id is only a digest of its ids: receivers must dedupe on each event's id
    status_text = hooks["messageStatus"]["post"]["description"]
    assert "deduplicate on it" not in status_text and "Deduplicate on each event's `id`" in status_text
    assert "digest" in status_text
    components = openapi.customer_document()["components"]["schemas"]
    assert components["LowBalanceEvent"]["properties"]["type"]["enum"] == ["account.low_balance"]
    assert set(schemas.LowBalanceEvent.__struct_fields__) == set(components["LowBalanceEvent"]["required"])
