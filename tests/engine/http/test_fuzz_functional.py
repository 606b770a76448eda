"""Hypothesis throws malformed requests at every endpoint that reads a body, over real sockets.

Malformed JSON, wrong types, huge and empty bodies, bad UTF-8, unknown fields and wrong content types:
the answer is always a 4xx in the one JSON error shape, the servers stay up, and no accepted message is
lost. (Routes that read no body — GETs, rotate-secret, close, suspend/resume — are covered by the path
parameter fuzz instead.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.http import control_schemas as cs
from engine.http import customer_schemas, openapi
from engine.http import schemas as s
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account
from tests.engine.http.jsonschema_values import from_schema, inline

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "fuzz survivor"}


@dataclass(frozen=True)
class JsonField:
    """One field of a body type as JSON sees it: its JSON types, whether it is required and whether
    null is allowed (to draw values of other types for it)."""

    types: tuple[type, ...]
    required: bool
    nullable: bool


_JSON_TYPES = {msgspec.inspect.StrType: (str,), msgspec.inspect.LiteralType: (str,),
               msgspec.inspect.BoolType: (bool,), msgspec.inspect.IntType: (int,),
               msgspec.inspect.FloatType: (int, float), msgspec.inspect.ListType: (list,),
               msgspec.inspect.DictType: (dict,), msgspec.inspect.StructType: (dict,)}


def _json_types(kind: msgspec.inspect.Type) -> tuple[type, ...]:
    if isinstance(kind, msgspec.inspect.Metadata):
        return _json_types(kind.type)
    if isinstance(kind, msgspec.inspect.UnionType):
        return tuple(t for member in kind.types for t in _json_types(member))
    return () if isinstance(kind, msgspec.inspect.NoneType) else _JSON_TYPES[type(kind)]


def _nullable(kind: msgspec.inspect.Type) -> bool:
    if isinstance(kind, msgspec.inspect.Metadata):
        return _nullable(kind.type)
    if isinstance(kind, msgspec.inspect.UnionType):
        return any(_nullable(member) for member in kind.types)
    return isinstance(kind, msgspec.inspect.NoneType)


def _fields(body: type) -> dict[str, JsonField]:
    """A body type's fields as JSON types and required flags (both APIs' bodies are msgspec types)."""
    return {f.encode_name: JsonField(_json_types(f.type), f.required, _nullable(f.type))
            for f in msgspec.inspect.type_info(body).fields}


def _type_ok(value: Any, spec: JsonField) -> bool:
    if value is None:
        return spec.nullable
    if isinstance(value, bool) and bool not in spec.types:
        return False  # JSON true/false is never an integer here
    return isinstance(value, spec.types)


# (app, method, path, fields) for every endpoint that reads a JSON body
BODY_ENDPOINTS = [
    ("customer", "POST", "/v1/messages", _fields(s.MessageRequest)),
    ("customer", "POST", "/v1/messages/batch", _fields(s.BatchRequest)),
    ("customer", "POST", "/v1/senders", _fields(s.SenderRequest)),
    ("customer", "PUT", "/v1/webhook", _fields(s.WebhookRequest)),
    ("customer", "POST", "/v1/debug-window", _fields(s.DebugWindowRequest)),
    ("customer", "PUT", "/v1/balance/threshold", _fields(customer_schemas.ThresholdRequest)),
    ("customer", "POST", "/v1/privacy/requests", _fields(customer_schemas.PrivacyEmailRequest)),
    ("customer", "POST", "/v1/privacy/challenges", _fields(customer_schemas.PrivacyChallengeRequest)),
    ("customer", "POST", "/v1/privacy/signed-requests", _fields(customer_schemas.SignedPrivacyRequest)),
    ("control", "PUT", "/v1/routing", _fields(cs.RoutingTable)),
    ("control", "POST", "/v1/accounts", _fields(cs.AccountCreate)),
    ("control", "POST", "/v1/accounts/{id}/deposits", _fields(cs.Deposit)),
    ("control", "POST", "/v1/accounts/{id}/senders", _fields(cs.SenderRegistration)),
    ("control", "POST", "/v1/accounts/{id}/restrict", _fields(cs.Restriction)),
    ("control", "POST", "/v1/holds", _fields(cs.HoldRequest)),
    ("control", "POST", "/v1/holds/{id}/release", _fields(cs.HoldRelease)),
    ("control", "POST", "/v1/tokens", _fields(cs.TokenRequest)),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=8)


def _wrong_types(schema: dict[str, JsonField]):
    """An object where every required field has a value of the wrong JSON type."""
    required = [(name, spec) for name, spec in schema.items() if spec.required]
    return st.tuples(*[json_values.filter(lambda v, s=spec: not _type_ok(v, s))
                       for _, spec in required]).map(
        lambda values: dict(zip([n for n, _ in required], values, strict=True)))


def _payloads(schema: dict[str, JsonField]):
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

def _documented_bodies(document: dict) -> set[tuple[str, str]]:
    """(method, path) of every operation of a document that reads a request body."""
    return {(method.upper(), path) for path, ops in document["paths"].items()
            for method, op in ops.items() if "requestBody" in op}


# how many requests each route gets (10 unless named); every documented customer body is included
EXAMPLES = {("POST", "/v1/messages"): 60, ("POST", "/v1/messages/batch"): 25, ("PUT", "/v1/webhook"): 25,
            ("POST", "/v1/senders"): 20}
SCHEMA_ROUTES = [(method, path, EXAMPLES.get((method, path), 10))
                 for method, path in sorted(_documented_bodies(openapi.customer_document()))]


def test_every_documented_customer_body_is_fuzzed():
    """Every customer route the document says reads a body gets malformed bodies (BODY_ENDPOINTS) and
    requests drawn from the document (SCHEMA_ROUTES); a new route cannot be left out."""
    documented = _documented_bodies(openapi.customer_document())
    assert {(m, p) for app, m, p, _ in BODY_ENDPOINTS if app == "customer"} == documented
    assert {(m, p) for m, p, _ in SCHEMA_ROUTES} == documented
    assert {("PUT", "/v1/balance/threshold"), ("POST", "/v1/privacy/requests"),
            ("POST", "/v1/privacy/challenges"), ("POST", "/v1/privacy/signed-requests")} <= documented


@pytest.fixture(scope="module")
def published(world):
    status, _, doc = world["customer"].request("GET", "/v1/openapi.json", token="")
    assert status == 200 and doc["openapi"].startswith("3.1")
    return doc


def _request_strategy(doc, method: str, path: str):
    op = doc["paths"][path][method.lower()]
    body = inline(op["requestBody"]["content"]["application/json"]["schema"],
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
