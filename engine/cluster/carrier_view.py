"""A cluster's carriers as one process shows them: one row per carrier, the workers' rows nested.

Every worker runs every carrier (its own binds, window and counters: ``engine.cluster.placement``), so
the cluster asks each for its rows. Listing them side by side made ``GET /v1/carriers`` (and the metrics
built from it) show each carrier once per worker, unlike one process; :func:`merge_carrier_rows` folds
them into one row per carrier in the one-process shape, with ``workers`` holding each worker's row.
"""

from __future__ import annotations

from typing import Any

ALL_OF = frozenset({"suspended"})  # true only if every worker's is: out of service everywhere


def merge_carrier_rows(per_worker: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """One row per carrier from ``(worker node, its carrier rows)`` pairs, in the first worker's order.

    Numbers (counters, windows, throughput) and numeric maps (outcomes, errors, bind refusals) are
    summed; ``suspended`` holds when every worker's carrier is suspended, other flags (``connected``,
    ``available``) when any worker's is; ``binds`` lists every worker's binds, each with its
    ``worker``; a text field (the kind, the POP, an error) is the first worker's that has it."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for node, rows in per_worker:
        for row in rows:
            grouped.setdefault(str(row.get("carrier")), []).append(dict(row, worker=node))
    return [_merge(rows) for rows in grouped.values()]


def _merge(rows: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(k for row in rows for k in row if k != "worker"):
        values = [row[key] for row in rows if key in row]
        merged[key] = _fold(key, values, [row["worker"] for row in rows if key in row])
    merged["workers"] = rows
    return merged


def _fold(key: str, values: list[Any], nodes: list[str]) -> Any:
    first = values[0]
    if isinstance(first, bool):
        return all(values) if key in ALL_OF else any(values)
    if isinstance(first, int | float):
        return sum(v for v in values if isinstance(v, int | float) and not isinstance(v, bool))
    if isinstance(first, dict):
        out: dict[str, Any] = {}
        for value in values:
            for k, v in value.items():
                out[k] = (out.get(k, 0) + v) if isinstance(v, int | float) else out.get(k, v)
        return out
    if isinstance(first, list):
        return [dict(item, worker=node) if isinstance(item, dict) else item
                for value, node in zip(values, nodes, strict=True) for item in value]
    return next((v for v in values if v not in ("", None)), first)
