"""Hypothesis throws malformed requests at every endpoint that reads a body, over real sockets.

Malformed JSON, wrong types, huge and empty bodies, bad UTF-8, unknown fields and wrong content types:
the answer is always a 4xx in the one JSON error shape, the servers stay up, and no accepted message is
lost. (Routes that read no body — GETs, rotate-secret, close, suspend/resume — are covered by the path
parameter fuzz instead.)
"""

from __future__ import annotations

import json
import re

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.http import control_schemas as cs
from engine.http.jsonio import Field, _type_ok
from tests.engine.http.conftest import DE_NUMBER, Client, funded_account
from tests.engine.http.jsonschema_values import from_schema, inline

MSG = {"to": DE_NUMBER, "from": "ACME", "body": "fuzz survivor"}

# the customer API's bodies are msgspec types (engine.http.schemas); their required fields and JSON types:
MESSAGE_FIELDS = {"to": Field((str,)), "from": Field((str,)), "body": Field((str,)),
                  "callback_url": Field((str,), required=False, nullable=True),
                  "validity_seconds": Field((int,), required=False, nullable=True),
                  "client_ref": Field((str,), required=False, nullable=True)}

_JSON_TYPES = {msgspec.inspect.StrType: (str,), msgspec.inspect.LiteralType: (str,),
               msgspec.inspect.BoolType: (bool,), msgspec.inspect.FloatType: (int, float),
               msgspec.inspect.ListType: (list,), msgspec.inspect.DictType: (dict,)}


def _json_types(kind: msgspec.inspect.Type) -> tuple[type, ...]:
    if isinstance(kind, msgspec.inspect.Metadata):
        return _json_types(kind.type)
    if isinstance(kind, msgspec.inspect.UnionType):
        return tuple(t for member in kind.types for t in _json_types(member))
    return () if isinstance(kind, msgspec.inspect.NoneType) else _JSON_TYPES[type(kind)]


def _fields(body: type) -> dict[str, Field]:
    """A control body type's fields as JSON types and required flags (to draw values of other types)."""
    return {f.encode_name: Field(_json_types(f.type), required=f.required)
            for f in msgspec.inspect.type_info(body).fields}


# (app, method, path, schema) for every endpoint that reads a JSON body
BODY_ENDPOINTS = [
    ("customer", "POST", "/v1/messages", MESSAGE_FIELDS),
    ("customer", "POST", "/v1/messages/batch", {"messages": Field((list,))}),
    ("customer", "POST", "/v1/senders", {"sender": Field((str,))}),
    ("customer", "PUT", "/v1/webhook", {"url": Field((str,), nullable=True),
                                        "receipt_statuses": Field((list,), required=False,
                                                                  nullable=True)}),
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
