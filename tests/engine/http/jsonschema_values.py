"""Values from the JSON Schemas of a published OpenAPI document, and a check of a value against one.

Shared by the tests that build requests from the documents (``test_fuzz_functional`` and
``test_customer_bodies_functional``: the customer API; ``test_control_bodies_functional``: the control
port); :func:`violations` gives, for each format a field's schema states, a value that breaks it. Both understand the subset the documents use:
objects, strings with patterns and lengths, bounded numbers, arrays, enums, ``anyOf``, null. Patterns are
searched as JSON Schema (ECMA-262) does, unanchored; the documents anchor theirs with ``^...$``.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st


def inline(node: Any, components: dict) -> Any:
    """The schema with every ``$ref`` to the document's components replaced by its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            return inline(components[node["$ref"].rsplit("/", 1)[1]], components)
        return {k: inline(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(v, components) for v in node]
    return node


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values a JSON Schema allows. A pattern's values are drawn to match it whole (a subset of what
    the unanchored pattern allows)."""
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


def allows(schema: dict, value: Any) -> bool:
    """Whether ``value`` meets ``schema`` (the same subset as :func:`from_schema`)."""
    if "anyOf" in schema:
        return any(allows(s, value) for s in schema["anyOf"])
    if "enum" in schema:
        return value in schema["enum"]
    kind = schema.get("type")
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return (isinstance(value, str) and schema.get("minLength", 0) <= len(value)
                <= schema.get("maxLength", len(value))
                and ("pattern" not in schema or re.search(schema["pattern"], value) is not None))
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (
                kind == "integer" and not isinstance(value, int)):
            return False
        return (value >= schema.get("minimum", value) and value <= schema.get("maximum", value)
                and ("exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]))
    if kind == "array":
        return (isinstance(value, list)
                and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
                and all(allows(schema.get("items", {}), v) for v in value))
    if kind == "object":
        props = schema.get("properties", {})
        return (isinstance(value, dict) and set(schema.get("required", [])) <= set(value)
                and all(allows(props[k], v) for k, v in value.items() if k in props))
    return kind is None  # no type: anything


def violations(schema: dict) -> list[tuple[str, Any]]:
    """(documented keyword, a value that breaks it) for each format keyword of a field's schema; every
    value is checked against the schema, so a keyword whose violation this cannot build is a failure.
    A value that breaks a length is chosen to meet the field's pattern where it can, so it is refused
    for its length alone (and a test of the length fails if the length bound is dropped)."""
    out: list[tuple[str, Any]] = []
    members = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    for member in members:
        if "enum" in member:
            out.append(("enum", "not-" + str(member["enum"][0])))
        if "pattern" in member:
            bad = next((v for v in (" ", "x", "-1", "0", "a b@c", "\t") if not
                        re.search(member["pattern"], v)), None)
            out.append(("pattern", bad))
        if member.get("minLength", 0) > 0:
            out.append(("minLength", ""))
        if "maxLength" in member:
            n = member["maxLength"] + 1
            candidates = ["x" * n, "@" + "x" * (n - 1), "0" * n]
            out.append(("maxLength", next(
                (v for v in candidates if re.search(member.get("pattern", ""), v)), candidates[0])))
        if "exclusiveMinimum" in member:
            out.append(("exclusiveMinimum", member["exclusiveMinimum"]))
        if "minimum" in member:
            out.append(("minimum", member["minimum"] - 1))
        if member.get("minItems", 0) > 0:
            out.append(("minItems", []))
        items = member.get("items", {})
        if member.get("type") == "array" and violations(items):
            out += [(f"items.{k}", [v]) for k, v in violations(items)]
    for keyword, value in out:
        assert value is not None and not allows(schema, value), (keyword, value, schema)
    return out


_JSON_TYPES: dict[str, Any] = {"null": type(None), "boolean": bool, "string": str, "array": list,
                               "object": dict, "integer": int, "number": int | float}


def mismatches(schema: dict, value: Any, where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema`` (an inlined answer schema), empty when it meets it. The subset
    the answers' schemas use: ``type`` (one or a list), ``enum``, ``anyOf``/``oneOf``, ``properties``,
    ``required``, ``additionalProperties`` (false or a schema), ``items``, string ``pattern``."""
    for key in ("anyOf", "oneOf"):
        if key in schema:
            fits = [not mismatches(s, value, where) for s in schema[key]]
            ok = any(fits) if key == "anyOf" else fits.count(True) == 1
            return [] if ok else [f"{where}: {value!r:.80} fits no single {key} member"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r:.80} not in {schema['enum']}"]
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(isinstance(value, _JSON_TYPES[k]) and not (
                isinstance(value, bool) and k in ("integer", "number")) for k in kinds):
            return [f"{where}: {type(value).__name__} is not {'/'.join(kinds)}"]
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        return [f"{where}: does not match {schema['pattern']}"]
    out: list[str] = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            out += mismatches(schema.get("items", {}), item, f"{where}[{i}]")
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties", True)
        out += [f"{where}.{k}: required, missing" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                out += mismatches(props[k], v, f"{where}.{k}")
            elif extra is False:
                out.append(f"{where}.{k}: not documented (additionalProperties: false)")
            elif isinstance(extra, dict):
                out += mismatches(extra, v, f"{where}.{k}")
    return out
