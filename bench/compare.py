"""``smsroute bench --compare``: is B faster than A, or is the difference run-to-run noise?

Each side is one or more result files of repeated runs (``--compare A1.json,A2.json B1.json,B2.json``).
The ratio B/A is taken between the sides' medians; a side's *noise* is the spread of its runs,
``(max - min) / median``. A change no larger than the larger of the two noises is reported as
"within noise"; with one run per side the noise is unknown and the report says so.

Only runs of the same experiment are compared: every file must name the same scenario (its digest when
the files have one: the scenario's corridors, mix, carriers and load after command-line overrides), mode,
path and carriers. Otherwise :class:`DifferentScenarios` is raised, unless the caller allows it, and
then the differences head the report as warnings. A different host or offered rate is a warning only.
"""

from __future__ import annotations

import statistics
from typing import Any

KINDS = ("accepted", "carrier_ack", "final")
IDENTITY = ("scenario", "scenario_digest", "mode", "path", "carriers")
CIRCUMSTANCES = ("offered_rate", "arrival", "host")
OVERALL = ("messages_per_second", "cpu_s_per_1000", "peak_rss_mb")


class DifferentScenarios(ValueError):
    """The result files are not runs of one experiment."""


def differences(docs: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    """``key: value1 | value2`` for every key whose value is not the same in all ``docs``."""
    out = []
    for key in keys:
        values = [d.get(key) for d in docs]
        if key == "scenario_digest" and None in values:
            continue  # files from before digests: the name has to do
        if any(v != values[0] for v in values):
            out.append(f"{key}: {' | '.join(str(v) for v in values)}")
    return out


def compare(a: list[dict[str, Any]] | dict[str, Any], b: list[dict[str, Any]] | dict[str, Any], *,
            allow_different: bool = False) -> dict[str, Any]:
    """Ratios B/A of the medians of the overall figures and of each shared corridor's percentiles,
    each with both sides' noise; ``warnings`` lists what differs between the runs."""
    a_runs, b_runs = (x if isinstance(x, list) else [x] for x in (a, b))
    mismatch = differences(a_runs + b_runs, IDENTITY)
    if mismatch and not allow_different:
        raise DifferentScenarios("the runs are not of the same scenario (" + "; ".join(mismatch)
                                 + "); compare like with like, or pass --allow-different-scenarios")
    warnings = [f"different {m}" for m in mismatch + differences(a_runs + b_runs, CIRCUMSTANCES)]
    overall = {key: _change([d.get(key) for d in a_runs], [d.get(key) for d in b_runs])
               for key in OVERALL}
    corridors = []
    for cb in b_runs[0]["corridors"]:
        key = (cb["pop"], cb["country"])
        a_rows = [c for d in a_runs for c in d["corridors"] if (c["pop"], c["country"]) == key]
        b_rows = [c for d in b_runs for c in d["corridors"] if (c["pop"], c["country"]) == key]
        if not a_rows:
            continue
        row: dict[str, Any] = {"pop": key[0], "country": key[1]}
        for kind in KINDS:
            row[kind] = {p: _change([c[kind].get(p) for c in a_rows], [c[kind].get(p) for c in b_rows])
                         for p in ("p50_ms", "p99_ms", "max_ms")}
        row["throughput"] = _change([c.get("throughput") for c in a_rows],
                                    [c.get("throughput") for c in b_rows])
        corridors.append(row)
    return {"runs": [len(a_runs), len(b_runs)], "warnings": warnings, "overall": overall,
            "corridors": corridors}


def _change(a_values: list[Any], b_values: list[Any]) -> dict[str, Any]:
    """``{ratio, noise_a, noise_b, within_noise}`` for one figure (None where it cannot be told)."""
    a_nums, b_nums = _numbers(a_values), _numbers(b_values)
    ratio = None
    if a_nums and b_nums and statistics.median(a_nums) != 0:
        ratio = round(statistics.median(b_nums) / statistics.median(a_nums), 3)
    noise_a, noise_b = _noise(a_nums), _noise(b_nums)
    within = None
    if ratio is not None and noise_a is not None and noise_b is not None:
        within = abs(ratio - 1.0) <= max(noise_a, noise_b)
    return {"ratio": ratio, "noise_a": noise_a, "noise_b": noise_b, "within_noise": within}


def _numbers(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _noise(values: list[float]) -> float | None:
    """Relative spread of repeated runs; None with fewer than two runs (unknown, not zero)."""
    if len(values) < 2 or statistics.median(values) == 0:
        return None
    return round((max(values) - min(values)) / statistics.median(values), 3)


def format_compare(cmp: dict[str, Any], name_a: str, name_b: str) -> str:
    lines = [f"WARNING: {w}" for w in cmp["warnings"]]
    runs_a, runs_b = cmp["runs"]
    lines.append(f"ratios B/A of the medians   A = {name_a} ({runs_a} run{'s' * (runs_a > 1)})"
                 f"   B = {name_b} ({runs_b} run{'s' * (runs_b > 1)})")
    if min(runs_a, runs_b) < 2:
        lines.append("run-to-run noise: unknown with one run per side; repeat each run and pass "
                     "the files comma-separated (A1.json,A2.json B1.json,B2.json)")
    for key, change in cmp["overall"].items():
        lines.append(f"  {key:<22} {_fmt(change)}")
    lines.append(f"  {'POP':<4} {'CC':<3} {'msg/s':>7} │ "
                 + " │ ".join(f"{k:>11} p50   p99" for k in KINDS))
    for row in cmp["corridors"]:
        cells = " │ ".join(f"{'':>11}{_ratio(row[k]['p50_ms']):>5} {_ratio(row[k]['p99_ms']):>5}"
                          for k in KINDS)
        lines.append(f"  {row['pop']:<4} {row['country']:<3} {_ratio(row['throughput']):>7} │ {cells}")
    return "\n".join(lines)


def _ratio(change: dict[str, Any]) -> str:
    r = change["ratio"]
    return "n/a" if r is None else f"{r:.2f}x"


def _fmt(change: dict[str, Any]) -> str:
    text = _ratio(change)
    if change["noise_a"] is None or change["noise_b"] is None:
        return text
    verdict = "within noise" if change["within_noise"] else "beyond noise"
    return (f"{text}  (run-to-run spread A {change['noise_a'] * 100:.1f}%, "
            f"B {change['noise_b'] * 100:.1f}%: {verdict})")
