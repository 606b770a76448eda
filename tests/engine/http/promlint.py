"""The rules of ``promtool check metrics`` (Prometheus' promlint), applied to an exposition text.

promtool is a Go binary we cannot install from a package registry, so its rules are restated here:
help text, counters ending in ``_total``, no metric type or non-base / abbreviated unit in a name,
reserved suffixes and labels of histograms, snake_case, no colons (reserved for recording rules), no
duplicate series. The text must also parse with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import re
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

SNAKE = re.compile(r"^[a-z_][a-z0-9_]*$")
TYPES_IN_NAME = ("counter", "gauge", "histogram", "summary")
NON_BASE_UNITS = ("minutes", "hours", "days", "weeks", "milliseconds", "microseconds", "nanoseconds",
                  "millis", "micros", "nanos", "bits", "kilobytes", "megabytes", "gigabytes",
                  "terabytes", "percent", "celsius", "fahrenheit")
ABBREVIATED_UNIT = re.compile(r"_(s|ms|us|ns|sec|secs|b|kb|mb|gb|tb|pb|m|h|d)(_|$)")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def lint(text: str) -> list[str]:
    """Every problem promtool would report (plus gauges named like counters), as sentences."""
    families = list(text_string_to_metric_families(text))  # raises on malformed text
    problems: list[str] = []
    helps = dict(re.findall(r"^# HELP (\S+) ?(.*)$", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name, kind in types.items():
        problems += _name_problems(name, kind)
        if not helps.get(name, "").strip():
            problems.append(f"{name}: no help text")
    for family in families:
        labels = {k for s in family.samples for k in s.labels}
        problems += [f"{family.name}: label {k!r} is not snake_case" for k in labels
                     if not SNAKE.match(k)]
        if family.type != "histogram" and "le" in labels:
            problems.append(f"{family.name}: non-histogram metrics should not have an 'le' label")
        if family.type != "summary" and "quantile" in labels:
            problems.append(f"{family.name}: non-summary metrics should not have a 'quantile' label")
        series = Counter((s.name, tuple(sorted(s.labels.items()))) for s in family.samples)
        problems += [f"{name}{dict(labels)}: duplicate series" for (name, labels), n in series.items()
                     if n > 1]
    return problems


def _name_problems(name: str, kind: str) -> list[str]:
    problems = []
    if ":" in name:
        problems.append(f"{name}: metric names should not contain ':' (reserved for recording rules)")
    if not SNAKE.match(name):
        problems.append(f"{name}: metric name is not snake_case")
    if kind == "counter" and not name.endswith("_total"):
        problems.append(f"{name}: counter metrics should have a '_total' suffix")
    if kind == "gauge" and name.endswith("_total") and not name.endswith("_created"):
        problems.append(f"{name}: a gauge named like a counter")
    for t in TYPES_IN_NAME:
        if f"_{t}_" in name or name.endswith(f"_{t}"):
            problems.append(f"{name}: metric name should not include the type '{t}'")
    for unit in NON_BASE_UNITS:
        if f"_{unit}_" in name or name.endswith(f"_{unit}"):
            problems.append(f"{name}: use base unit instead of '{unit}'")
    if ABBREVIATED_UNIT.search(name):
        problems.append(f"{name}: metric name should not contain abbreviated units")
    if kind not in ("histogram", "summary") and name.endswith(HISTOGRAM_SUFFIXES):
        problems.append(f"{name}: non-histogram metrics should not end in _bucket/_count/_sum")
    return problems
