"""Checks of the request bodies an API publishes, through the running API (the customer API's and the
control port's body tests share them).

Each body's schema is read from the published OpenAPI document (:func:`request_bodies`); bodies are drawn
from it (``jsonschema_values.from_schema``), varied, sent, and the answers checked: a value breaking one
documented format is refused with the field's code and names the field (a broken pattern explained by
the field's description, never by the regex); a missing required field is
``missing_field`` and an undocumented one ``unknown_field``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings

from tests.engine.http.jsonschema_values import from_schema, inline, violations

# The codes that say a body's structure is wrong (never the answer to a well-formed body)
STRUCTURE = {"unknown_field", "missing_field", "invalid_type", "invalid_json"}


def request_bodies(doc: dict, wanted: Callable[[str], bool] = lambda name: True
                   ) -> list[tuple[str, str, dict]]:
    """(method, path, inlined schema) of every JSON request body of ``doc`` whose component name is
    ``wanted``."""
    out = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if schema is not None and wanted(schema.get("$ref", "").rsplit("/", 1)[-1]):
                out.append((method.upper(), path, inline(schema, doc["components"]["schemas"])))
    return out


def format_cases(bodies: list[tuple[str, str, dict]]) -> list[tuple[str, str, dict, str, str, Any]]:
    """(method, path, schema, field, keyword, a value breaking it) for each documented format."""
    return [(method, path, schema, name, keyword, value)
            for method, path, schema in bodies
            for name, prop in schema.get("properties", {}).items()
            for keyword, value in violations(prop)]


def error_of(answer: Any) -> tuple[str, str]:
    """The (code, message) of an API error answer ("", "" for anything else)."""
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    return error.get("code", ""), error.get("message", "")


def case_id(value: Any) -> str:
    """pytest ids: the method, path and names of a case; its schemas and values left out."""
    return value if isinstance(value, str) else ""


def check_format_refused(client: Any, method: str, url: str, schema: dict, name: str, keyword: str,
                         value: Any, expected: tuple[int, str]) -> None:
    """Bodies drawn from ``schema`` with ``name`` set to ``value`` (breaking ``keyword``) are answered
    ``expected`` (status, code), naming the field."""

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=from_schema(schema))
    def check(body):
        status, _, answer = client.request(method, url, {**body, name: value})
        code, message = error_of(answer)
        assert (status, code) == expected, (keyword, value, answer)
        assert f"$.{name}" in message, answer
        assert "regex" not in message, answer  # explained by the field's description instead

    check()


def check_required_and_closed(client: Any, method: str, url: str, schema: dict) -> None:
    """Bodies drawn from ``schema`` without one of its required fields are ``missing_field``; with an
    undocumented field, ``unknown_field``."""

    @settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=from_schema(schema))
    def check(body):
        for name in schema.get("required", []):
            status, _, answer = client.request(method, url,
                                               {k: v for k, v in body.items() if k != name})
            assert (status, error_of(answer)[0]) == (400, "missing_field"), (name, answer)
        status, _, answer = client.request(method, url, {**body, "undocumented_field": 1})
        assert (status, error_of(answer)[0]) == (400, "unknown_field"), answer

    check()
