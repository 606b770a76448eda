"""The OpenAPI documents describe every route of both apps, and nothing that is not a route."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.http import openapi
from engine.http.app_control import build_control_app
from engine.http.app_customer import build_customer_app

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
