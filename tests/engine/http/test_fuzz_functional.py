"""Hypothesis throws malformed requests at every endpoint that reads a body, over real sockets.

Malformed JSON, wrong types, huge and empty bodies, bad UTF-8, unknown fields and wrong content types:
the answer is always a 4xx in the one JSON error shape, the servers stay up, and no accepted message is
lost. (Routes that read no body — GETs, rotate-secret, close, suspend/resume — are covered by the path
parameter fuzz instead.)
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.http import control_accounts as acc
from engine.http.jsonio import Field, _type_ok
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "fuzz survivor"}

# the customer API's bodies are msgspec types (engine.http.schemas); their required fields and JSON types:
MESSAGE_FIELDS = {"to": Field((str,)), "from": Field((str,)), "body": Field((str,)),
                  "callback_url": Field((str,), required=False, nullable=True),
                  "validity_seconds": Field((int,), required=False, nullable=True),
                  "client_ref": Field((str,), required=False, nullable=True)}

# (app, method, path, schema) for every endpoint that reads a JSON body
BODY_ENDPOINTS = [
    ("customer", "POST", "/v1/messages", MESSAGE_FIELDS),
    ("customer", "POST", "/v1/messages/batch", {"messages": Field((list,))}),
    ("customer", "POST", "/v1/senders", {"sender": Field((str,))}),
    ("customer", "PUT", "/v1/webhook", {"url": Field((str,), nullable=True),
                                        "receipt_statuses": Field((list,), required=False,
                                                                  nullable=True)}),
    ("control", "PUT", "/v1/routing", {"routes": Field((list,)),
                                       "rates": Field((dict,), required=False)}),
    ("control", "POST", "/v1/accounts", acc.ACCOUNT_SCHEMA),
    ("control", "POST", "/v1/accounts/{id}/deposits", acc.DEPOSIT_SCHEMA),
    ("control", "POST", "/v1/accounts/{id}/senders", acc.SENDER_SCHEMA),
    ("control", "POST", "/v1/accounts/{id}/restrict", acc.RESTRICT_SCHEMA),
    ("control", "POST", "/v1/holds", acc.HOLD_SCHEMA),
    ("control", "POST", "/v1/holds/{id}/release", acc.RELEASE_SCHEMA),
    ("control", "POST", "/v1/tokens", acc.TOKEN_SCHEMA),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


def _wrong_types(schema: dict[str, Field]):
    """An object where every required field has a value of the wrong JSON type."""
    required = [(name, spec) for name, spec in schema.items() if spec.required]
    return st.tuples(*[json_values.filter(lambda v, s=spec: not _type_ok(v, s))
                       for _, spec in required]).map(
        lambda values: dict(zip([n for n, _ in required], values, strict=True)))


def _payloads(schema: dict[str, Field]):
    """(raw bytes, content type) that must all be refused with a 4xx."""
    good = json.dumps({name: "x" for name in schema}).encode()
    return st.one_of(
        st.binary(max_size=200).map(lambda b: (b"{" + b + b"]", "application/json")),
        _wrong_types(schema).map(lambda d: (json.dumps(d).encode(), "application/json")),
        st.just((b"", "application/json")),
        st.integers(70_000, 200_000).map(lambda n: (b'{"a":"' + b"x" * n + b'"}',
                                                    "application/json")),
        st.binary(min_size=1, max_size=50).map(
            lambda b: (b'{"to":"\xff\xfe' + b + b'"}', "application/json")),
        st.text(min_size=1, max_size=10).filter(lambda k: k not in schema).map(
            lambda k: (json.dumps({**json.loads(good), k: 1}).encode(), "application/json")),
        st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/xml",
                         "multipart/form-data; boundary=x", "application/jsonx"]).map(
            lambda ct: (good, ct)),
        json_values.filter(lambda v: not isinstance(v, dict)).map(
            lambda v: (json.dumps(v).encode(), "application/json")),
    )


@pytest.fixture(scope="module")
def world(running):
    account = funded_account(running, "fuzz@example.com")
    customer = Client(running.http.customer_port, account.api_key)
    token = running.http.ctx.tokens.create("fuzzer", {"viewer", "operator", "privacy"})
    control = Client(running.http.control_port, token)
    before = [customer.request("POST", "/v1/messages", MSG)[2]["id"] for _ in range(3)]
    return {"customer": customer, "control": control, "account": account, "before": before}


def _assert_error_shape(status: int, headers: dict, body) -> None:
    assert 400 <= status < 500, (status, body)
    assert headers["Content-Type"].startswith("application/json")
    assert set(body) == {"error"} and isinstance(body["error"]["code"], str)


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(endpoint=st.sampled_from(BODY_ENDPOINTS), data=st.data())
def test_malformed_bodies_always_get_a_4xx_json_error(world, endpoint, data):
    app, method, template, schema = endpoint
    raw, content_type = data.draw(_payloads(schema))
    path = template.replace("{id}", world["account"].id)
    status, headers, body = world[app].request(method, path, raw=raw, content_type=content_type)
    event(f"{status} {body['error']['code'] if isinstance(body, dict) else '?'}")
    _assert_error_shape(status, headers, body)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(ident=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                            exclude_characters="/?#%"), min_size=1, max_size=60),
       template=st.sampled_from(["/v1/messages/{id}", "/v1/accounts/{id}",
                                 "/v1/carriers/{id}/suspend", "/v1/holds/{id}/release"]))
def test_odd_path_parameters_get_a_4xx_json_error(world, ident, template):
    app = "customer" if template.startswith("/v1/messages") else "control"
    method = "GET" if template.count("/") == 3 else "POST"
    body = {"reason": "fuzz"} if "holds" in template else None
    status, headers, answer = world[app].request(method, template.replace("{id}", ident), body)
    if status == 503:  # an engine without holds says so; still the error shape
        assert answer["error"]["code"] == "not_available"
        return
    _assert_error_shape(status, headers, answer)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(credential=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xff),
                          max_size=120),
       app=st.sampled_from(["customer", "control"]))
def test_garbage_credentials_get_a_401_json_error(world, credential, app):
    path = "/v1/balance" if app == "customer" else "/v1/carriers"
    status, headers, answer = world[app].request(
        "GET", path, headers={"Authorization": credential.strip()}, token="")
    _assert_error_shape(status, headers, answer)
    # bytes HTTP forbids in a header value are refused by the parser, still in the JSON shape
    expected = ("malformed_http", 400) if re.search(r"[\x00-\x08\x0a-\x1f\x7f]", credential.strip()) \
        else ("unauthorized", 401)
    assert (answer["error"]["code"], status) == expected


def test_the_servers_are_still_up_and_no_message_was_lost(running, world):
    customer, control = world["customer"], world["control"]
    assert control.request("GET", "/healthz")[0] == 200
    for message_id in world["before"]:
        assert customer.request("GET", f"/v1/messages/{message_id}")[0] == 200
    assert customer.request("POST", "/v1/messages", MSG)[0] == 202


# --- requests the published schema allows -------------------------------------------------------------

SCHEMA_ROUTES = [("POST", "/v1/messages", 60), ("POST", "/v1/messages/batch", 25),
                 ("PUT", "/v1/webhook", 25), ("POST", "/v1/senders", 20),
                 ("POST", "/v1/debug-window", 10)]


def _inline(node, components):
    """The schema with every ``$ref`` to the document's components replaced by its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(components[node["$ref"].rsplit("/", 1)[1]], components)
        return {k: _inline(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, components) for v in node]
    return node


@pytest.fixture(scope="module")
def published(world):
    status, _, doc = world["customer"].request("GET", "/v1/openapi.json", token="")
    assert status == 200 and doc["openapi"].startswith("3.1")
    return doc


def from_schema(schema: dict):
    """Values a JSON Schema allows (the subset the published document uses: objects, strings with
    patterns and lengths, bounded numbers, arrays, enums, anyOf, null). Patterns are matched whole, as
    JSON Schema's (ECMA-262) ``$`` means the end of the string."""
    if "anyOf" in schema:
        return st.one_of([from_schema(s) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
        base = st.from_regex(schema["pattern"], fullmatch=True) if "pattern" in schema else \
            st.text(min_size=low, max_size=high)
        return base.filter(lambda v: low <= len(v) <= high)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        values = st.floats(low, high, allow_nan=False, allow_infinity=False)
        if "exclusiveMinimum" in schema:
            values = values.filter(lambda v: v > schema["exclusiveMinimum"])
        return values
    if kind == "array":
        return st.lists(from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=schema.get("maxItems", 5))
    if kind == "object":
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        return st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required})
    raise AssertionError(f"the published schema uses {schema!r}: teach this generator")


def _request_strategy(doc, method: str, path: str):
    op = doc["paths"][path][method.lower()]
    body = _inline(op["requestBody"]["content"]["application/json"]["schema"],
                   doc["components"]["schemas"])
    if path == "/v1/messages/batch":
        body["properties"]["messages"]["maxItems"] = 4  # the same schema, smaller (1000 is tested apart)
    headers = st.just({})
    for param in op.get("parameters", []):
        if param["in"] == "header":
            headers = st.one_of(st.just({}), from_schema(param["schema"]).map(
                lambda v, n=param["name"]: {n: v}))
    return st.tuples(from_schema(body), headers)


@pytest.mark.parametrize(("method", "path", "examples"), SCHEMA_ROUTES)
def test_every_request_the_published_schema_allows_is_accepted_or_refused_for_a_business_reason(
        world, published, method, path, examples):
    business = set(published["info"]["x-business-codes"])

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=_request_strategy(published, method, path))
    def check(request):
        body, headers = request
        status, _, answer = world["customer"].request(method, path, body, headers=headers)
        event(f"{status} {answer['error']['code'] if status >= 300 else ''}")
        if status >= 300:
            assert answer["error"]["code"] in business, (status, answer, body, headers)
            return
        assert 200 <= status < 300
        for result in answer.get("results", []):  # a batch: each refusal a business reason too
            if "error" in result:
                assert result["error"]["code"] in business, (result, body)

    check()
