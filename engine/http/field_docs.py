"""A request body field's documented description, found by the path msgspec names in an error.

Why: msgspec refuses a value that breaks a pattern with "Expected `str` matching regex '^(?=[0-9.]*[1-9])…'
- at `$.usd`": right, but a regular expression is not an explanation a customer can act on. Every field
with a pattern also has a description (the one the OpenAPI document publishes), so the error can say what
the document says instead: "Expected a positive amount in USD as a decimal string … - at `$.usd`".
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec.inspect as mi

_SEQUENCES = (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def description_at(kind: Any, path: str) -> str | None:
    """The description of the field at ``path`` (msgspec's ``$.messages[3].to`` form, without the ``$``)
    in the body type ``kind``, or None if it has none."""
    node: Any = _info(kind)
    for name, _index in _STEP.findall(path):
        node = _unwrap(node)[0]
        if isinstance(node, mi.UnionType):  # e.g. a list of ids or "all": the member the step enters
            wanted = mi.StructType if name else _SEQUENCES
            node = next((_unwrap(t)[0] for t in node.types if isinstance(_unwrap(t)[0], wanted)), None)
        if name:
            if not isinstance(node, mi.StructType):
                return None
            field = next((f for f in node.fields if f.encode_name == name), None)
            if field is None:
                return None
            node = field.type
        else:
            if not isinstance(node, _SEQUENCES):
                return None
            node = node.item_type
    return _unwrap(node)[1]


@functools.cache
def _info(kind: Any) -> Any:
    return mi.type_info(kind)


def _unwrap(node: Any) -> tuple[Any, str | None]:
    """The type under any Metadata and Optional wrappers, and the innermost description among them."""
    description = None
    while True:
        if isinstance(node, mi.Metadata):
            description = (node.extra_json_schema or {}).get("description", description)
            node = node.type
        elif isinstance(node, mi.UnionType):
            types = [t for t in node.types if not isinstance(t, mi.NoneType)]
            if len(types) != 1:
                return node, description
            node = types[0]
        else:
            return node, description
